"""Issue 24 point 1 on the running stack: an identifier that matches contract §1's pattern is an
identifier, whatever digits it holds. A wire payment numbered by date and sequence whose 16 digits
pass Luhn (`pay-20261201-…`, about one in ten) is applied, so the next day's retry charges nothing;
a `charge.succeeded` under such a charge id pays the charge; ids of that kind are kept whole on
every route."""

from __future__ import annotations

import string
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from devstack.stack import LocalStack
from shared.inbound.card_data import contains_card_number, luhn
from tests.e2e.card_scan import declare_identifier
from tests.e2e.conftest import new_account, wait_until


def _luhn_id(prefix: str, digits: str) -> str:
    """`prefix` + `digits` + one check digit such that every digit of the id together passes Luhn."""
    head = "".join(ch for ch in prefix if ch.isdigit()) + digits
    check = next(d for d in string.digits if luhn(head + d))
    return declare_identifier(f"{prefix}{digits}{check}")


def _dated_payment_id() -> str:
    """`pay-20261201-00000001`-style: a date, then a sequence, 16 digits passing Luhn."""
    return _luhn_id("pay-20261201-", f"{uuid.uuid4().int % 10**7:07d}")


def _view(api: str, acc: str) -> dict[str, Any]:
    return dict(requests.get(f"{api}/accounts/{acc}", timeout=10).json())


def _timeline(api: str, acc: str) -> list[dict[str, Any]]:
    return list(requests.get(f"{api}/accounts/{acc}/timeline", timeout=10).json()["entries"])


def _charges_for(stack: LocalStack, acc: str) -> list[dict[str, Any]]:
    return [c for c in requests.get(f"{stack.gateway_url}/charges", timeout=10).json() if c.get("accountId") == acc]


def _failed(acc: str, charge_id: str) -> dict[str, str]:
    return {"accountId": acc, "subscriptionId": "s1", "chargeId": charge_id, "amount": "40.00", "currency": "USD",
            "reason": "card_declined"}


def test_a_wire_under_a_luhn_valid_payment_id_is_applied_and_no_card_is_charged_the_next_day(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    paid, control = new_account(api, token="tok_visa"), new_account(api, token="tok_visa")
    pay_id, charge_id = _dated_payment_id(), _luhn_id("inv-", f"{uuid.uuid4().int % 10**15:015d}")
    assert contains_card_number(pay_id) and contains_card_number(charge_id)  # what the detector once refused
    start = datetime.now(UTC) - timedelta(days=5)
    try:
        requests.put(f"{api}/testing/clock", json={"now": start.isoformat()}, timeout=10).raise_for_status()
        send_event("billing.charge.failed", _failed(paid, charge_id))
        send_event("billing.charge.failed", _failed(control, "c1"))
        for acc in (paid, control):
            wait_until(lambda a=acc: _view(api, a)["subscriptions"][0]["state"] == "past_due", "past due")
        send_event("billing.payment.received", {"accountId": paid, "paymentId": pay_id, "amount": "40.00",
                                                "currency": "USD", "method": "wire"}, event_id=pay_id)
        wait_until(lambda: _view(api, paid)["subscriptions"][0]["state"] == "active", "the wire applied")
        requests.put(f"{api}/testing/clock", json={"now": (start + timedelta(days=1, hours=1)).isoformat()},
                     timeout=10).raise_for_status()
        assert requests.post(f"{stack.functions_url}/admin/functions/dunning_sweep", json={"input": ""},
                             timeout=10).status_code == 202
        # The same sweep retries the control account's card: once that charge is made, the sweep has run.
        wait_until(lambda: _charges_for(stack, control), "the control account's day-1 retry", timeout=90)
        wait_until(lambda: _view(api, control)["subscriptions"][0]["state"] == "active", "the control settled")
    finally:
        requests.delete(f"{api}/testing/clock", timeout=10)
    assert _charges_for(stack, paid) == []  # the wire paid the bill: the card is not charged for it again
    view = _view(api, paid)
    assert view["balance"] == {} and view["subscriptions"][0]["outstanding"] in ({}, None, [])
    details = " ".join(e["detail"] for e in _timeline(api, paid))
    assert pay_id in details and charge_id in details  # kept whole, not masked
    dead = requests.get(f"{api}/deadletters", params={"limit": 50}, timeout=10).json()["items"]
    assert not [d for d in dead if pay_id in d["text"] or charge_id in d["text"]]


def test_a_charge_succeeded_under_a_luhn_valid_charge_id_pays_the_charge(
        api: str, send_event: Callable[..., str]) -> None:
    acc = new_account(api)
    charge_id = _luhn_id("", f"{uuid.uuid4().int % 10**15:015d}")  # a bare 16-digit database sequence
    send_event("billing.charge.failed", _failed(acc, charge_id))
    wait_until(lambda: _view(api, acc)["subscriptions"][0]["state"] == "past_due", "past due")
    send_event("billing.charge.succeeded", {k: v for k, v in _failed(acc, charge_id).items() if k != "reason"})
    wait_until(lambda: _view(api, acc)["subscriptions"][0]["state"] == "active", "the charge paid")
    assert _view(api, acc)["balance"] == {}
    assert [e["kind"] for e in _timeline(api, acc) if charge_id in e["detail"]] == ["charge_failed", "charge_paid"]


def test_account_and_subscription_ids_with_card_like_digits_are_kept_whole(api: str) -> None:
    account_id = _luhn_id("", f"{uuid.uuid4().int % 10**15:015d}")
    sub_id = _luhn_id("s", f"{uuid.uuid4().int % 10**15:015d}")
    body = {"displayName": "Contoso", "billingContacts": ["billing@contoso.example"],
            "subscriptions": [{"id": sub_id, "name": "Service 1"}]}
    r = requests.put(f"{api}/accounts/{account_id}", json=body, timeout=10)
    assert r.status_code == 200, r.text
    view = _view(api, account_id)
    assert view["accountId"] == account_id and [s["id"] for s in view["subscriptions"]] == [sub_id]
