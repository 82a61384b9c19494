"""Issue 24 point 2 on the running stack: once an account's customer data is erased, no route
names an address or card the account ever held, whatever the case a record wrote it in."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from devstack.stack import LocalStack
from tests.e2e.conftest import all_dead_letters, new_account, wait_until
from tests.e2e.test_billing_page import swept
from tests.e2e.test_timeline_pages import pages

T0 = datetime(2027, 2, 1, 9, 0, tzinfo=UTC)
REPORT = "Microsoft.Communication.EmailDeliveryReportReceived"


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _set_clock(api: str, at: datetime) -> None:
    requests.put(f"{api}/testing/clock", json={"now": _stamp(at)}, timeout=10).raise_for_status()


def _view(api: str, acc: str) -> dict[str, Any]:
    return dict(requests.get(f"{api}/accounts/{acc}", timeout=10).json())


def _charge_failed(send_event: Callable[..., str], acc: str, at: datetime) -> None:
    """A hard decline made at `at`, after the mastercard was saved: it is about that card, never retried."""
    send_event("", {}, raw=json.dumps({
        "specversion": "1.0", "id": f"evt-{uuid.uuid4().hex}", "type": "billing.charge.failed", "source": "/tests",
        "time": _stamp(at), "data": {"accountId": acc, "subscriptionId": "s1", "chargeId": "c1", "amount": "42.00",
                                     "currency": "USD", "reason": "card_expired"}}))


def _mailed(stack: LocalStack, acc: str, to: str, kind: str) -> bool:
    return any(m["headers"].get("X-Billing-Account") == acc and m["to"][0]["address"] == to
               and m["headers"].get("X-Billing-Email-Kind") == kind
               for m in requests.get(f"{stack.email_url}/messages", timeout=10).json())


def _bounce(stack: LocalStack, recipient: str, quoted: str, at: datetime) -> None:
    """A bounce for `recipient` whose status message quotes `quoted`, through the Event Grid webhook."""
    event: dict[str, Any] = {
        "id": str(uuid.uuid4()), "topic": "/subscriptions/x/resourceGroups/y/providers/acs", "subject": "s",
        "eventType": REPORT, "eventTime": _stamp(at), "dataVersion": "1.0",
        "data": {"sender": "billing@contoso.example", "recipient": recipient, "status": "Bounced",
                 "messageId": str(uuid.uuid4()), "deliveryAttemptTimeStamp": _stamp(at),
                 "deliveryStatusDetails": {"statusMessage": f"550 5.1.1 <{quoted}>: mailbox unavailable"}}}
    r = requests.post(f"{stack.functions_url}/runtime/webhooks/eventgrid",
                      params={"functionName": "email_delivery_reports"},
                      headers={"aeg-event-type": "Notification"}, json=[event], timeout=30)
    assert r.status_code == 200, r.text


def _a_past(api: str, stack: LocalStack, send_event: Callable[..., str], old: str, new: str) -> str:
    """The issue's setup: registered with `old`, a mastercard saved, a failed charge mailed to
    `old`, a bounce quoting `old` in capitals, then `new` as the contact and another card."""
    _set_clock(api, T0)
    acc = new_account(api, token=None, contacts=(old,))
    card = requests.put(f"{api}/accounts/{acc}/payment-method", json={"token": "tok_mastercard"}, timeout=60)
    assert card.status_code == 200 and card.json()["paid"] == [], card.text
    _charge_failed(send_event, acc, T0 + timedelta(minutes=1))
    wait_until(lambda: _mailed(stack, acc, old, "payment_failed"), "the failure email to the old address")
    local, _, domain = old.partition("@")
    _bounce(stack, f"{local}@{domain.upper()}", old.upper(), T0 + timedelta(minutes=2))
    wait_until(lambda: any(a["code"] == "contact_unreachable" for a in _view(api, acc)["alerts"]), "the bounce")
    r = requests.put(f"{api}/accounts/{acc}", json={"displayName": "Contoso Ltd", "billingContacts": [new],
                                                    "subscriptions": [{"id": "s1", "name": "Service 1"}]}, timeout=30)
    assert r.status_code == 200, r.text
    r = requests.put(f"{api}/accounts/{acc}/payment-method", json={"token": "tok_chargeDeclinedExpiredCard"},
                     timeout=60)
    assert r.status_code == 402, r.text
    return acc


def test_erasure_leaves_no_former_address_or_card_on_any_route(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    tag = uuid.uuid4().hex[:8]
    old, new = f"Old.Payer+{tag}@Contoso.example", f"new-ap-{tag}@contoso.example"
    personal = (old.lower(), new.lower(), f"payer+{tag}", f"ap-{tag}", "ending 4444", "mastercard ending",
                "ending 0069", "visa ending")
    try:
        acc = _a_past(api, stack, send_event, old, new)
        before = json.dumps(pages(api, acc, limit=5))
        assert old.upper() in before and before.lower().count(old.lower()) >= 4
        assert "mastercard ending 4444" in before

        _set_clock(api, T0 + timedelta(days=90, hours=1))
        wait_until(swept(stack, "dunning_sweep", api, acc, lambda v: v["subscriptions"][0]["state"] == "canceled"),
                   "canceled at day 90", timeout=60)
        _set_clock(api, T0 + timedelta(days=180, hours=2))
        wait_until(swept(stack, "retention_sweep", api, acc, lambda v: v["billingContacts"] == []),
                   "the account's customer data erased", timeout=120)

        view = requests.get(f"{api}/accounts/{acc}", timeout=10)
        assert view.status_code == 404 or view.json()["subscriptions"][0]["state"] == "deleted"
        routes = {
            "account": view.text,
            "timeline, oldest first": json.dumps(pages(api, acc, limit=5)),
            "timeline, newest first": json.dumps(pages(api, acc, limit=7, order="newest")),
            "dead letters": json.dumps(all_dead_letters(api)),
        }
        left = {route: [p for p in personal if p in text.lower()] for route, text in routes.items()}
        assert left == {route: [] for route in routes}, left
        timeline = [e for page in pages(api, acc, limit=500) for e in page["entries"]]
        assert [e["kind"] for e in timeline].count("charge_failed") == 1, "the financial records stay"
        assert any("42.00" in e["detail"] for e in timeline if e["kind"] == "charge_failed")
        assert sum("[deleted]" in e["detail"] for e in timeline) >= 6
    finally:
        requests.delete(f"{api}/testing/clock", timeout=10)
