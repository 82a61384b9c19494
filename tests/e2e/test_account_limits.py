"""Issue 24 (3), through the contract: an account holds at most 200 subscriptions however they
arrive (contract §1). An event that would add a 201st is dead-lettered at once, on its first
delivery, with a reason naming the limit, and another account's event sent right after it lands
within seconds; a replay is refused the same way; a `PUT` that would pass 200 is a 400."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import requests
from azure.storage.queue import QueueClient

from devstack.stack import LocalStack
from tests.e2e.conftest import all_dead_letters, new_account, wait_until

LIMIT = 200


def charge_failed(account_id: str, subscription_id: str, charge_id: str) -> tuple[str, str]:
    """A `billing.charge.failed` of 10.00 USD as its producer sends it, and its event id."""
    event_id = f"evt-{uuid.uuid4().hex}"
    return json.dumps({"specversion": "1.0", "id": event_id, "type": "billing.charge.failed", "source": "/tests",
                       "time": "2026-12-01T09:00:00Z",
                       "data": {"accountId": account_id, "subscriptionId": subscription_id, "chargeId": charge_id,
                                "amount": "10.00", "currency": "USD", "reason": "card_declined"}}), event_id


def view(api: str, account_id: str) -> dict[str, Any]:
    r = requests.get(f"{api}/accounts/{account_id}", timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def dead_letter_of(api: str, event_id: str) -> dict[str, Any] | None:
    return next((d for d in all_dead_letters(api) if event_id in d["text"] and d["replayedAt"] is None), None)


def deliveries(stack: LocalStack, message_id: str) -> list[str]:
    """The functions host's log lines for each run of the queue function on this message."""
    text = (stack.log_dir / "functions.log").read_text(encoding="utf-8", errors="replace")
    return [line for line in text.splitlines() if "Functions.payment_events'" in line and message_id in line]


def test_the_201st_subscription_by_event_is_dead_lettered_at_once_and_other_accounts_go_on(
        stack: LocalStack, api: str) -> None:
    full = new_account(api, subscriptions=LIMIT, token=None)
    other = new_account(api, token=None)
    queue = QueueClient.from_connection_string(stack.connection_string, "payment-events")
    text, event_id = charge_failed(full, "s201", "c-201")
    started = time.monotonic()
    message = queue.send_message(text)
    queue.send_message(charge_failed(other, "s1", "c-other")[0])

    wait_until(lambda: view(api, other)["balance"] == {"USD": "10.00"}, "the other account's charge", timeout=15)
    item = wait_until(lambda: dead_letter_of(api, event_id), "the dead letter", timeout=15)
    assert time.monotonic() - started < 15  # a retry comes back after 5 s, the poison queue after 4 of them
    assert item["id"] == f"msg-payment-events-{message.id}" and item["source"] == "payment-events"
    assert "at most 200 subscriptions" in item["reason"] and "200-subscription limit" in item["reason"]
    assert item["text"] == text and not item["redacted"]
    runs = wait_until(lambda: deliveries(stack, message.id), "the host's log line")
    assert len(runs) == 1 and "Succeeded" in runs[0] and "dequeue count 1)" in runs[0], runs

    v = view(api, full)
    assert len(v["subscriptions"]) == LIMIT and "s201" not in {s["id"] for s in v["subscriptions"]}
    assert v["balance"] == {}
    assert view(api, other)["subscriptions"][0]["state"] == "past_due"

    replay = requests.post(f"{api}/deadletters/{item['id']}/replay", timeout=10)
    assert replay.status_code == 200, replay.text
    again = wait_until(lambda: dead_letter_of(api, event_id), "the replay's dead letter", timeout=15)
    assert again["id"] != item["id"] and again["reason"] == item["reason"]
    assert len(view(api, full)["subscriptions"]) == LIMIT


def test_an_event_for_a_subscription_the_full_account_has_still_applies(api: str, send_event: Any) -> None:
    full = new_account(api, subscriptions=LIMIT, token=None)
    event_id = send_event("billing.charge.failed", {"accountId": full, "subscriptionId": "s200", "chargeId": "c1",
                                                    "amount": "10.00", "currency": "USD", "reason": "card_declined"})
    wait_until(lambda: view(api, full)["balance"] == {"USD": "10.00"}, "the charge on s200", timeout=15)
    assert dead_letter_of(api, event_id) is None


def test_a_registration_that_would_pass_200_subscriptions_is_a_400_naming_subscriptions(api: str) -> None:
    account_id = new_account(api, subscriptions=150, token=None)
    body = {"displayName": "Contoso Ltd", "billingContacts": ["billing@contoso.example"],
            "subscriptions": [{"id": f"t{i}", "name": f"Other {i}"} for i in range(51)]}
    r = requests.put(f"{api}/accounts/{account_id}", json=body, timeout=30)
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/problem+json"), r.text
    [error] = r.json()["errors"]
    assert error["field"] == "subscriptions" and "200-subscription limit" in error["message"]
    assert len(view(api, account_id)["subscriptions"]) == 150
    body["subscriptions"] = body["subscriptions"][:50]
    assert requests.put(f"{api}/accounts/{account_id}", json=body, timeout=30).status_code == 200
    assert len(view(api, account_id)["subscriptions"]) == LIMIT
