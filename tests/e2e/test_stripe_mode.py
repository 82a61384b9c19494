"""The local stack with `--gateway stripe` (contract §2, §5; issue 25): the app charges through the
Stripe-compatible sandbox with the official SDK, and receives its signed webhooks."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import stripe
from azure.storage.queue import QueueClient

from devstack.stack import STRIPE_TEST_KEY, STRIPE_WEBHOOK_SECRET, LocalStack, StackPorts
from devstack.stripe_sandbox import sign
from tests.e2e.cdp import Browser
from tests.e2e.conftest import new_account, wait_until


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    logs: Path = tmp_path_factory.mktemp("stripe-stack-logs")
    with LocalStack(StackPorts.free(), log_dir=logs, gateway="stripe") as s:
        yield s


@pytest.fixture(scope="module")
def api(stack: LocalStack) -> str:
    return f"{stack.functions_url}/api"


@pytest.fixture(scope="module")
def send_event(stack: LocalStack) -> Callable[..., None]:
    queue = QueueClient.from_connection_string(stack.connection_string, "payment-events")

    def send(type_: str, data: dict[str, Any]) -> None:
        queue.send_message(json.dumps({"specversion": "1.0", "id": f"evt-{uuid.uuid4().hex}", "type": type_,
                                       "source": "/tests", "time": "2026-12-01T09:00:00Z", "data": data}))

    return send


@pytest.fixture(autouse=True)
def _sandbox_defaults(stack: LocalStack) -> Iterator[None]:
    yield
    requests.delete(f"{stack.stripe_url}/faults", timeout=5)
    requests.put(f"{stack.stripe_url}/settings", json={"webhook": {"repeat": 0, "delaySeconds": 0}}, timeout=5)


def sdk(stack: LocalStack) -> stripe.StripeClient:
    return stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": stack.stripe_url})


def owing(api: str, send_event: Callable[..., None]) -> str:
    """Failed charges in USD and JPY on two subscriptions (the seed's story), no card saved yet."""
    acc = new_account(api, subscriptions=2, token=None)
    for cid, sub, amount, cur in (("c1", "s1", "10.00", "USD"), ("c2", "s2", "500", "JPY")):
        send_event("billing.charge.failed", {"accountId": acc, "subscriptionId": sub, "chargeId": cid,
                                             "amount": amount, "currency": cur, "reason": "card_declined"})
    wait_until(lambda: requests.get(f"{api}/accounts/{acc}", timeout=10).json()["balance"] == {"JPY": "500",
                                                                                              "USD": "10.00"},
               "the balance")
    return acc


def put_card(api: str, acc: str, token: str) -> requests.Response:
    return requests.put(f"{api}/accounts/{acc}/payment-method", json={"token": token}, timeout=60)


def intents_of(stack: LocalStack, acc: str) -> list[stripe.PaymentIntent]:
    """The account's PaymentIntents as the official SDK lists them."""
    listed = sdk(stack).v1.payment_intents.list(params={"limit": 100})
    return [pi for pi in listed.auto_paging_iter() if pi.metadata.to_dict().get("accountId") == acc]


def view(api: str, acc: str) -> dict[str, Any]:
    body: dict[str, Any] = requests.get(f"{api}/accounts/{acc}", timeout=10).json()
    return body


def timeline(api: str, acc: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = requests.get(f"{api}/accounts/{acc}/timeline", params={"limit": 500},
                                               timeout=10).json()["entries"]
    return items


def test_a_card_update_with_pm_card_visa_pays_everything_with_one_payment_intent_per_currency(
        api: str, stack: LocalStack, send_event: Callable[..., None]) -> None:
    acc = owing(api, send_event)
    r = put_card(api, acc, "pm_card_visa")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["settled"] is True and body["totals"] == {"JPY": "500", "USD": "10.00"}
    assert sorted(body["reactivated"]) == ["s1", "s2"]
    v = view(api, acc)
    assert v["balance"] == {} and {s["state"] for s in v["subscriptions"]} == {"active"}
    assert v["paymentMethod"]["brand"] == "visa" and v["paymentMethod"]["last4"] == "4242"
    assert "token" not in v["paymentMethod"]
    succeeded = [pi for pi in intents_of(stack, acc) if pi.status == "succeeded"]
    assert sorted((pi.currency, pi.amount) for pi in succeeded) == [("jpy", 500), ("usd", 1000)]
    assert all(pi.metadata.to_dict()["idempotencyKey"].startswith("stl-") and pi.customer for pi in succeeded)
    again = put_card(api, acc, "pm_card_visa")
    assert again.status_code == 200 and again.json()["paid"] == []


@pytest.mark.parametrize(("token", "code"), [("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
                                             ("pm_card_chargeCustomerFail", "generic_decline")])
def test_a_decline_answers_402_with_stripes_decline_code(api: str, stack: LocalStack,
                                                         send_event: Callable[..., None], token: str,
                                                         code: str) -> None:
    acc = owing(api, send_event)
    r = put_card(api, acc, token)
    assert r.status_code == 402 and r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json()["declineCode"] == code
    assert view(api, acc)["balance"] == {"JPY": "500", "USD": "10.00"}
    assert not [pi for pi in intents_of(stack, acc) if pi.status == "succeeded"]


def test_a_card_needing_authentication_completes_through_the_confirm_step_in_chromium(
        api: str, stack: LocalStack, send_event: Callable[..., None]) -> None:
    acc = owing(api, send_event)
    r = put_card(api, acc, "pm_card_authenticationRequired")
    assert r.status_code == 402, r.text
    problem = r.json()
    assert problem["declineCode"] == "authentication_required"
    confirm = problem["confirmUrl"]
    assert confirm.startswith(f"{api}/billing/{acc}/confirm?") and "sig=" in confirm
    with Browser() as browser:
        browser.goto(confirm)  # our page sends the customer on to the bank's
        assert browser.evaluate("location.href").startswith(f"{stack.stripe_url}/3ds/")
        assert "3-D Secure" in browser.evaluate("document.body.innerText")
        banks = 0
        while browser.evaluate("location.href").startswith(f"{stack.stripe_url}/3ds/"):
            # this test card asks for authentication on every payment: one bank page per currency
            banks += 1
            current = browser.evaluate("location.href")
            browser.evaluate("document.querySelector('#complete').click()")
            browser.wait_for(f"location.href != {json.dumps(current)} && document.readyState == 'complete'")
            browser.settle()
        assert banks == 2
        assert browser.evaluate("location.href").startswith(f"{api}/billing/{acc}/confirm?")
        text = browser.wait_for("document.body.innerText.includes('Payment received') && document.body.innerText")
    assert "nothing outstanding" in text  # "active again" too, unless the webhook recorded the last charge first
    v = view(api, acc)
    assert v["balance"] == {} and v["credit"] == {} and {s["state"] for s in v["subscriptions"]} == {"active"}
    succeeded = [pi for pi in intents_of(stack, acc) if pi.status == "succeeded"]
    assert sorted(pi.currency for pi in succeeded) == ["jpy", "usd"]
    # the webhooks of those intents come too, and record nothing twice
    time.sleep(1.5)
    assert sum(1 for e in timeline(api, acc) if e["kind"] == "charge_succeeded") == 2


def test_a_forged_or_stale_webhook_is_a_400_and_changes_nothing(api: str, stack: LocalStack,
                                                                send_event: Callable[..., None]) -> None:
    acc = owing(api, send_event)

    def settled_timeline() -> list[dict[str, Any]] | None:
        # the two payment_failed emails may leave after the balance shows: wait for them to be recorded
        entries = timeline(api, acc)
        return entries if sum(e["kind"] == "email_sent" for e in entries) >= 2 else None

    before = wait_until(settled_timeline, "the payment_failed emails")
    event = json.dumps({"id": "evt_forged", "object": "event", "type": "payment_intent.succeeded",
                        "data": {"object": {"id": "pi_forged", "object": "payment_intent", "amount": 1000,
                                            "currency": "usd", "status": "succeeded", "created": int(time.time()),
                                            "metadata": {"accountId": acc, "idempotencyKey": "stl-forged"}}}})
    url = f"{api}/webhooks/stripe"
    for headers in ({}, {"Stripe-Signature": sign(event, "whsec_someone_elses")},
                    {"Stripe-Signature": sign(event, STRIPE_WEBHOOK_SECRET, int(time.time()) - 3600)}):
        r = requests.post(url, data=event, headers={"Content-Type": "application/json", **headers}, timeout=10)
        assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/problem+json"), r.text
    assert view(api, acc)["balance"] == {"JPY": "500", "USD": "10.00"} and timeline(api, acc) == before
    other = json.dumps({"id": "evt_other", "object": "event", "type": "customer.created", "data": {"object": {}}})
    r = requests.post(url, data=other, headers={"Stripe-Signature": sign(other, STRIPE_WEBHOOK_SECRET)}, timeout=10)
    assert r.status_code == 200 and timeline(api, acc) == before


def test_a_genuine_webhook_racing_the_settlement_records_the_charge_once(
        api: str, stack: LocalStack, send_event: Callable[..., None]) -> None:
    acc = owing(api, send_event)
    # The sandbox holds its answer 2 s after charging, and sends every event three times: the
    # webhooks arrive while the settlement that made the charges still waits for its answers.
    requests.put(f"{stack.stripe_url}/settings", json={"webhook": {"repeat": 2}}, timeout=5).raise_for_status()
    requests.post(f"{stack.stripe_url}/faults", json={"mode": "timeout_after_charge", "count": 2, "seconds": 2},
                  timeout=5).raise_for_status()
    r = put_card(api, acc, "pm_card_visa")
    assert r.status_code == 200, r.text
    assert r.json()["totals"] == {"JPY": "500", "USD": "10.00"}
    intents = [pi.id for pi in intents_of(stack, acc) if pi.status == "succeeded"]

    events = {e["id"] for e in requests.get(f"{stack.stripe_url}/events", timeout=5).json()
              if e["data"]["object"]["id"] in intents and e["type"] == "payment_intent.succeeded"}
    assert len(events) == 2

    def delivered() -> bool:
        rows = requests.get(f"{stack.stripe_url}/webhooks/deliveries", timeout=5).json()
        ours = [d for d in rows if d["eventId"] in events]
        return len(ours) >= 6 and all(d.get("status") == 200 for d in ours)

    wait_until(delivered, "every delivery of the two succeeded events answered 200", timeout=60)
    v = view(api, acc)
    assert v["balance"] == {} and v["credit"] == {}
    assert sum(1 for e in timeline(api, acc) if e["kind"] == "charge_succeeded") == 2


def test_a_card_given_at_registration_is_checked_and_saved_on_the_accounts_customer(
        api: str, stack: LocalStack, send_event: Callable[..., None]) -> None:
    """Stripe checks a card as it saves it on a Customer: a card declined there is a 402 and no
    account is registered; a good one is saved on the account's Customer, so the saved card pays
    a later card update's settlement (before, a registered card was never attached, and a declined
    one was accepted and failed at every charge)."""
    declined = f"acc-{uuid.uuid4().hex[:12]}"
    r = requests.put(f"{api}/accounts/{declined}", json={
        "displayName": "Contoso Ltd", "billingContacts": ["billing@contoso.example"],
        "subscriptions": [{"id": "s1", "name": "Service 1"}],
        "paymentMethod": {"type": "card", "token": "tok_chargeDeclined"}}, timeout=30)
    assert r.status_code == 402 and r.headers["Content-Type"].startswith("application/problem+json"), r.text
    assert r.json()["declineCode"]
    assert requests.get(f"{api}/accounts/{declined}", timeout=10).status_code == 404
    acc = new_account(api, token="tok_visa")
    assert view(api, acc)["paymentMethod"]["last4"] == "4242"
    client = sdk(stack)
    [customer] = wait_until(  # Search lags behind writes, as Stripe's does
        lambda: client.v1.customers.search(params={"query": f"metadata['accountId']:'{acc}'"}).data,
        "the account's customer in Search")
    default = customer.invoice_settings.default_payment_method if customer.invoice_settings else None
    assert isinstance(default, str), customer
    card = client.v1.payment_methods.retrieve(default).card
    assert card is not None and card.last4 == "4242"


def test_a_genuine_webhook_for_an_intent_the_product_did_not_make_changes_nothing(
        api: str, stack: LocalStack, send_event: Callable[..., None]) -> None:
    """Contract §2: intents the product did not make change nothing, even signed with the
    endpoint's secret and naming the account (another system charging the same Customer). Before,
    one with `metadata[accountId]` and any key paid the debt."""
    acc = owing(api, send_event)
    event = json.dumps({"id": "evt_order77", "object": "event", "type": "payment_intent.succeeded",
                        "data": {"object": {"id": "pi_order77", "object": "payment_intent", "amount": 1000,
                                            "amount_received": 1000, "currency": "usd", "status": "succeeded",
                                            "created": int(time.time()),
                                            "metadata": {"accountId": acc, "idempotencyKey": "order-77"}}}})
    signed = {"Content-Type": "application/json", "Stripe-Signature": sign(event, STRIPE_WEBHOOK_SECRET)}
    r = requests.post(f"{api}/webhooks/stripe", data=event, timeout=10, headers=signed)
    assert r.status_code == 200 and r.json()["recorded"] is False, r.text
    v = view(api, acc)
    assert v["balance"] == {"JPY": "500", "USD": "10.00"} and v["credit"] == {}
    assert not [e for e in timeline(api, acc) if e["kind"] == "charge_succeeded"]


def test_an_old_confirm_link_does_not_send_the_customer_to_pay_again_once_paid(
        api: str, stack: LocalStack, send_event: Callable[..., None]) -> None:
    """A card needing authentication leaves a `confirmUrl`; another card then pays everything.
    Opening the old link must not send the customer to the bank to pay the same charges again
    (before, completing it took the money a second time, as credit)."""
    acc = owing(api, send_event)
    r = put_card(api, acc, "pm_card_authenticationRequired")
    assert r.status_code == 402, r.text
    confirm = r.json()["confirmUrl"]
    paid = put_card(api, acc, "pm_card_visa")
    assert paid.status_code == 200 and paid.json()["settled"] is True, paid.text
    page = requests.get(confirm, allow_redirects=False, timeout=30)
    assert page.status_code == 200 and "Location" not in page.headers, page.status_code
    assert "Nothing is waiting for your bank" in page.text
    succeeded = [pi for pi in intents_of(stack, acc) if pi.status == "succeeded"]
    assert sorted((pi.currency, pi.amount) for pi in succeeded) == [("jpy", 500), ("usd", 1000)]
    assert view(api, acc)["credit"] == {}
