"""Issue 14 on the running local stack: settlement never charges what is not owed, a refused
charge never leaves the account stuck, and what the gateway took is always recorded."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from devstack.stack import LocalStack
from tests.e2e.conftest import new_account, wait_until
from tests.e2e.test_billing_page import link_from_email, owing_account, submit


def view(api: str, account_id: str) -> dict[str, Any]:
    return dict(requests.get(f"{api}/accounts/{account_id}", timeout=10).json())


def timeline_kinds(api: str, account_id: str) -> list[str]:
    entries = requests.get(f"{api}/accounts/{account_id}/timeline", timeout=10).json()["entries"]
    return [e["kind"] for e in entries]


def gateway_charges(stack: LocalStack, acc: str) -> list[dict[str, Any]]:
    return list(requests.get(f"{stack.gateway_url}/charges", params={"accountId": acc}, timeout=10).json())


def lookups(stack: LocalStack) -> int:
    """How often the sandbox was asked to read a charge back by its key."""
    by_route = requests.get(f"{stack.gateway_url}/stats", timeout=10).json()["byRoute"]
    return int(by_route.get("GET /v1/charges/{idempotencyKey}", 0))


def fault(stack: LocalStack, **body: Any) -> None:
    requests.post(f"{stack.gateway_url}/faults", json=body, timeout=10).raise_for_status()


@pytest.fixture(autouse=True)
def _no_faults_left(stack: LocalStack) -> Iterator[None]:
    yield
    requests.delete(f"{stack.gateway_url}/faults", timeout=10).raise_for_status()


def fail(send_event: Callable[..., str], acc: str, charge: str, sub: str, amount: str) -> None:
    send_event("billing.charge.failed", {"accountId": acc, "subscriptionId": sub, "chargeId": charge,
                                         "amount": amount, "currency": "USD", "reason": "insufficient_funds"})


def wire(send_event: Callable[..., str], acc: str, amount: str, *charge_ids: str) -> None:
    data: dict[str, Any] = {"accountId": acc, "paymentId": f"wire-{amount}", "amount": amount, "currency": "USD",
                            "method": "wire"}
    if charge_ids:
        data["chargeIds"] = list(charge_ids)
    send_event("billing.payment.received", data)


def card_update(api: str, acc: str, token: str) -> requests.Response:
    return requests.put(f"{api}/accounts/{acc}/payment-method", json={"token": token}, timeout=120)


def test_a_retry_that_never_reached_the_gateway_is_not_charged_once_a_wire_paid(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    """Input 1: the day-1 retry meets four 503s, a wire pays the charge by name, then a card update
    finds nothing owed: nothing is charged, the stale plan is dropped after reading it back."""
    acc = new_account(api, token="tok_visa")
    try:
        requests.put(f"{api}/testing/clock", json={"now": "2027-06-01T09:00:00Z"}, timeout=10).raise_for_status()
        fail(send_event, acc, "c1", "s1", "50.00")
        wait_until(lambda: view(api, acc)["balance"] == {"USD": "50.00"}, "the failure")
        requests.put(f"{api}/testing/clock", json={"now": "2027-06-02T09:30:00Z"}, timeout=10).raise_for_status()
        fault(stack, mode="fail_next", count=4, status=503)
        read_backs = lookups(stack)
        r = requests.post(f"{stack.functions_url}/admin/functions/dunning_sweep", json={"input": ""}, timeout=10)
        assert r.status_code == 202
        # The retry is over once it got four 503s and read its key back (finding nothing).
        wait_until(lambda: lookups(stack) > read_backs, "the day-1 retry and its read-back", timeout=60)
        assert "charge_attempt" in timeline_kinds(api, acc)
        assert gateway_charges(stack, acc) == []  # it never reached the gateway
        wire(send_event, acc, "50.00", "c1")
        wait_until(lambda: view(api, acc)["balance"] == {}, "the wire")
        answer = card_update(api, acc, "tok_mastercard")
        assert answer.status_code == 200, answer.text
        assert answer.json()["paid"] == [] and answer.json()["charged"] == {} and answer.json()["settled"] is True
        assert gateway_charges(stack, acc) == []
        v = view(api, acc)
        assert v["balance"] == {} and v["credit"] == {} and v["subscriptions"][0]["state"] == "active"
        assert "charge_abandoned" in timeline_kinds(api, acc)
    finally:
        requests.delete(f"{api}/testing/clock", timeout=10)


def test_a_balance_above_the_processor_limit_is_paid_in_charges_within_it(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    """Input 2: two charges of 600,000.00 USD, the sandbox's limit is 999,999.99 a charge."""
    acc = new_account(api, subscriptions=2, token="tok_chargeDeclinedExpiredCard")
    fail(send_event, acc, "c1", "s1", "600000.00")
    fail(send_event, acc, "c2", "s2", "600000.00")
    wait_until(lambda: view(api, acc)["balance"] == {"USD": "1200000.00"}, "two failures")
    answer = card_update(api, acc, "tok_visa")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["settled"] is True and body["charged"] == {"USD": "1200000.00"}
    assert sorted(p["chargeId"] for p in body["paid"]) == ["c1", "c2"] and sorted(body["reactivated"]) == ["s1", "s2"]
    assert [(c["amount"], c["status"]) for c in gateway_charges(stack, acc)] == [("600000.00", "succeeded")] * 2
    assert view(api, acc)["balance"] == {}


def test_a_refused_charge_answers_422_and_the_next_one_charges_what_is_owed_then(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    """Input 2, the refusal itself: the gateway refuses the amount; the answer is a 4xx naming the
    reason, the pending charge is closed, and after a wire paid half only the rest is charged."""
    acc = new_account(api, subscriptions=2, token="tok_chargeDeclinedExpiredCard")
    fail(send_event, acc, "c1", "s1", "600.00")
    fail(send_event, acc, "c2", "s2", "600.00")
    wait_until(lambda: view(api, acc)["balance"] == {"USD": "1200.00"}, "two failures")
    fault(stack, mode="fail_next", count=1, status=400, code="invalid_amount", route="POST /v1/charges")
    refused = card_update(api, acc, "tok_visa")
    assert refused.status_code == 422, refused.text
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert refused.json()["reason"] == "invalid_amount" and refused.json()["paid"] == []
    assert gateway_charges(stack, acc) == [] and view(api, acc)["balance"] == {"USD": "1200.00"}
    assert "charge_refused" in timeline_kinds(api, acc)
    wire(send_event, acc, "600.00", "c1")
    wait_until(lambda: view(api, acc)["balance"] == {"USD": "600.00"}, "the wire")
    answer = card_update(api, acc, "tok_visa")
    assert answer.status_code == 200, answer.text
    assert answer.json()["charged"] == {"USD": "600.00"} and [p["chargeId"] for p in answer.json()["paid"]] == ["c2"]
    assert [c["amount"] for c in gateway_charges(stack, acc)] == ["600.00"]


@pytest.mark.parametrize("mode", [{"mode": "timeout_after_charge", "count": 4, "seconds": 11},
                                  {"mode": "malformed_next", "afterCharge": True}])
def test_charged_then_no_usable_answer_is_read_back_and_recorded_once(
        api: str, stack: LocalStack, send_event: Callable[..., str], mode: dict[str, Any]) -> None:
    acc = new_account(api, token="tok_chargeDeclinedExpiredCard")
    fail(send_event, acc, "c1", "s1", "75.00")
    wait_until(lambda: view(api, acc)["balance"] == {"USD": "75.00"}, "the failure")
    fault(stack, **mode)
    answer = card_update(api, acc, "tok_visa")
    assert answer.status_code == 200, answer.text
    assert answer.json()["charged"] == {"USD": "75.00"} and [p["chargeId"] for p in answer.json()["paid"]] == ["c1"]
    assert [c["amount"] for c in gateway_charges(stack, acc)] == ["75.00"]
    again = card_update(api, acc, "tok_visa")
    assert again.status_code == 200 and again.json()["paid"] == [] and len(gateway_charges(stack, acc)) == 1


def test_a_charge_paying_120_subscriptions_is_recorded_whole_and_never_asked_for_again(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    """Input 3: 120 subscriptions, each with a failed 10.00 charge. The card update charges
    1,200.00 once, and the outcome (120 charges paid, 120 reactivations) is recorded whole even
    though it does not fit one storage transaction."""
    acc = new_account(api, subscriptions=120, token="tok_chargeDeclinedExpiredCard")
    for n in range(1, 121):
        fail(send_event, acc, f"c{n}", f"s{n}", "10.00")
    wait_until(lambda: view(api, acc)["balance"] == {"USD": "1200.00"}, "120 failures", timeout=300)
    answer = card_update(api, acc, "tok_visa")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["settled"] is True and body["charged"] == {"USD": "1200.00"} and body["totals"] == {"USD": "1200.00"}
    assert len(body["paid"]) == 120 and len(body["reactivated"]) == 120
    v = view(api, acc)
    assert v["balance"] == {} and v["credit"] == {} and {s["state"] for s in v["subscriptions"]} == {"active"}
    assert [(c["amount"], c["status"]) for c in gateway_charges(stack, acc)] == [("1200.00", "succeeded")]
    again = card_update(api, acc, "tok_visa")
    assert again.status_code == 200 and again.json()["paid"] == [] and again.json()["charged"] == {}
    assert len(gateway_charges(stack, acc)) == 1


def test_a_refusal_is_told_on_the_billing_page_and_the_other_currency_is_still_paid(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    acc = owing_account(api, send_event)  # 500 JPY and 10.00 USD; JPY is charged first
    link = link_from_email(stack, acc)
    fault(stack, mode="fail_next", count=1, status=422, code="amount_too_small", route="POST /v1/charges")
    page = submit(link, "tok_visa")
    assert page.status_code == 200 and "refused this payment" in page.text, page.text
    assert view(api, acc)["balance"] == {"JPY": "500"}
    assert [(c["currency"], c["status"]) for c in gateway_charges(stack, acc)] == [("USD", "succeeded")]
