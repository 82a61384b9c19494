"""Payment events through the real queue and the running host, observed through the HTTP API."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import requests
from azure.storage.queue import QueueClient

from devstack.stack import LocalStack
from tests.e2e.conftest import all_dead_letters, new_account, wait_until
from tests.malformed_cases import CASES


def lifecycle_events(stack: LocalStack) -> list[dict[str, Any]]:
    """Every message on `subscription-lifecycle`, oldest first: received (hidden for a minute, so
    each is read once here) rather than peeked, which stops at 32 while other tests add theirs."""
    queue = QueueClient.from_connection_string(stack.connection_string, "subscription-lifecycle")
    return [json.loads(m.content) for m in queue.receive_messages(messages_per_page=32, visibility_timeout=60)]


def view(api: str, account_id: str) -> dict[str, Any]:
    r = requests.get(f"{api}/accounts/{account_id}", timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def failed(account_id: str, charge: str, amount: str = "42.00", sub: str = "s1") -> dict[str, Any]:
    return {"accountId": account_id, "subscriptionId": sub, "chargeId": charge, "amount": amount,
            "currency": "USD", "reason": "card_declined"}


def test_failed_charge_then_payment_round_trip(api: str, send_event: Callable[..., str], stack: LocalStack) -> None:
    acc = new_account(api)
    send_event("billing.charge.failed", failed(acc, "ch-1"))
    v = wait_until(lambda: (x := view(api, acc))["subscriptions"][0]["state"] == "past_due" and x, "past due")
    assert v["balance"] == {"USD": "42.00"}
    assert [a["code"] for a in v["alerts"]] == ["payment_failed"]
    assert "update your payment information" in v["alerts"][0]["message"]
    assert v["subscriptions"][0]["disableAt"] is not None
    send_event("billing.payment.received", {"accountId": acc, "paymentId": "p-1", "amount": "42.00",
                                            "currency": "USD", "method": "wire"})
    v = wait_until(lambda: (x := view(api, acc))["subscriptions"][0]["state"] == "active" and x, "active again")
    assert v["balance"] == {} and v["alerts"] == []
    kinds = [e["kind"] for e in requests.get(f"{api}/accounts/{acc}/timeline", timeout=10).json()["entries"]]
    assert kinds.index("charge_failed") < kinds.index("payment_received") < kinds.index("charge_paid")
    ours: list[dict[str, Any]] = []  # events leave just after the commit the view shows: collect until both are in
    wait_until(lambda: ours.extend(e for e in lifecycle_events(stack) if e["data"]["accountId"] == acc)
               or len(ours) >= 2, "both lifecycle events")
    assert [e["type"] for e in ours] == ["subscription.past_due", "subscription.reactivated"]
    assert all(e["specversion"] == "1.0" and e["data"]["effectiveAt"] for e in ours)


def test_a_redelivered_event_has_no_second_effect(api: str, send_event: Callable[..., str]) -> None:
    acc = new_account(api)
    event_id = send_event("billing.charge.failed", failed(acc, "ch-1", "10.00"))
    send_event("billing.charge.failed", failed(acc, "ch-1", "10.00"), event_id=event_id)
    send_event("billing.charge.failed", failed(acc, "ch-2", "1.00"))  # a marker that both were processed
    wait_until(lambda: view(api, acc)["balance"] == {"USD": "11.00"}, "both charges")
    entries = requests.get(f"{api}/accounts/{acc}/timeline", timeout=10).json()["entries"]
    assert [e["kind"] for e in entries].count("charge_failed") == 2


def test_every_malformed_message_is_dead_lettered_and_the_host_keeps_going(
        api: str, send_event: Callable[..., str]) -> None:
    for _, text, _ in CASES:
        send_event("", {}, raw=text)
    acc = new_account(api)
    send_event("billing.charge.failed", failed(acc, "after-the-bad-ones"))
    wait_until(lambda: view(api, acc)["balance"] == {"USD": "42.00"}, "the good event after the bad ones")

    def listed() -> list[dict[str, Any]] | None:
        items = all_dead_letters(api)
        texts = {i["text"] for i in items}
        return items if all(text in texts for _, text, _ in CASES) else None

    items = wait_until(listed, "every malformed message in the dead-letter list")
    by_text = {i["text"]: i for i in items}
    for name, text, expected in CASES:
        item = by_text[text]
        assert expected.lower() in item["reason"].lower(), (name, item["reason"])
        assert item["receivedAt"]


def test_bad_http_input_gets_problem_json_naming_the_field(api: str) -> None:
    cases: list[tuple[str, str, Any, str]] = [
        ("PUT", "/accounts/acc-x", {"displayName": "X", "billingContacts": ["not-an-email"]}, "billingContacts.0"),
        ("PUT", "/accounts/acc-x", {"displayName": "X", "billingContacts": []}, "billingContacts"),
        ("PUT", "/accounts/acc-x", {"displayName": "X", "billingContacts": ["a@b.example"], "locale": "fr"},
         "locale"),
        ("PUT", "/accounts/acc-x", {"displayName": "X", "billingContacts": ["a@b.example"],
                                    "paymentMethod": {"type": "card", "number": "4242424242424242"}},
         "paymentMethod.number"),
        ("PUT", "/accounts/acc-x", {"displayName": "X", "billingContacts": ["a@b.example"],
                                    "paymentMethod": {"type": "card", "token": "tok_unknown"}},
         "paymentMethod.token"),
        ("PUT", "/accounts/bad%20id", {"displayName": "X", "billingContacts": ["a@b.example"]}, "accountId"),
        ("PUT", "/testing/clock", {"now": "tomorrow"}, "now"),
    ]
    for method, path, body, field in cases:
        r = requests.request(method, f"{api}{path}", json=body, timeout=10)
        assert r.status_code == 400, (path, body, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/problem+json")
        problem = r.json()
        assert problem["status"] == 400 and problem["title"]
        assert field in [e["field"] for e in problem["errors"]], (field, problem)
        assert "4242424242424242" not in r.text
    r = requests.put(f"{api}/accounts/acc-x", data=b"{not json", timeout=10)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "body"
    assert requests.get(f"{api}/accounts/acc-never-registered", timeout=10).status_code == 404


def test_health_and_view_hide_the_card_token(api: str) -> None:
    assert requests.get(f"{api}/health", timeout=10).json() == {"status": "ok"}
    acc = new_account(api, token="tok_mastercard")
    text = requests.get(f"{api}/accounts/{acc}", timeout=10).text
    assert "tok_mastercard" not in text
    assert json.loads(text)["paymentMethod"] == {"type": "card", "brand": "mastercard", "last4": "4444",
                                                 "expMonth": 11, "expYear": 2029}


def test_a_poison_message_is_kept_and_an_operator_can_replay_it(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    """A valid event that failed maxDequeueCount times for a passing reason (storage down) lands on
    `payment-events-poison`; it is listed, and once the outage is over, replayed and applied once."""
    acc = new_account(api)
    event_id = f"evt-{uuid.uuid4().hex}"
    text = json.dumps({"specversion": "1.0", "id": event_id, "type": "billing.charge.failed", "source": "/tests",
                       "time": "2026-12-01T09:00:00Z", "data": failed(acc, "ch-poison")})
    QueueClient.from_connection_string(stack.connection_string, "payment-events-poison").send_message(text)
    item = wait_until(lambda: next((i for i in all_dead_letters(api)
                                    if i["text"] == text), None), "the poison message in the dead-letter list")
    assert "maxDequeueCount" in item["reason"] and item["replayedAt"] is None
    r = requests.post(f"{api}/deadletters/{item['id']}/replay", timeout=10)
    assert r.status_code == 200 and r.json()["replayedAt"]
    wait_until(lambda: view(api, acc)["balance"] == {"USD": "42.00"}, "the replayed event applied")
    requests.post(f"{api}/deadletters/{item['id']}/replay", timeout=10)  # twice: the event id guards
    send_event("billing.charge.failed", failed(acc, "ch-marker", "1.00"))
    wait_until(lambda: view(api, acc)["balance"] == {"USD": "43.00"}, "a later event, after the second replay")
    assert requests.post(f"{api}/deadletters/no-such-item/replay", timeout=10).status_code == 404
