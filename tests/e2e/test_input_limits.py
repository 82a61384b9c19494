"""Issue 13, points 1, 2, 5, 6, 7 on the running local stack: money at its limits booked, shown,
charged and paid exactly; foreign digits, rounding, ambiguous and pathological JSON refused at
once with the real reason; identifiers with a trailing newline answered 400, never 500."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from azure.data.tables import TableServiceClient

from devstack.stack import LocalStack
from shared.domain.money import Money
from tests.e2e.conftest import all_dead_letters, new_account, wait_until
from tests.e2e.test_billing_page import link_from_email, page_form_token

BILLION_DONG = "2500000000"


def view(api: str, account_id: str) -> dict[str, Any]:
    r = requests.get(f"{api}/accounts/{account_id}", timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def failed(acc: str, charge: str, sub: str, amount: str, currency: str) -> dict[str, Any]:
    return {"accountId": acc, "subscriptionId": sub, "chargeId": charge, "amount": amount, "currency": currency,
            "reason": "card_declined"}


def event_text(data: dict[str, Any], type_: str = "billing.charge.failed") -> str:
    return json.dumps({"specversion": "1.0", "id": f"evt-{uuid.uuid4().hex}", "type": type_, "source": "/tests",
                       "time": "2026-12-01T09:00:00Z", "data": data})


def test_two_and_a_half_billion_dong_booked_shown_charged_and_wired_exactly(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    acc = new_account(api, subscriptions=2, token="tok_chargeDeclinedExpiredCard")
    send_event("billing.charge.failed", failed(acc, "c1", "s1", BILLION_DONG, "VND"))
    wait_until(lambda: view(api, acc)["balance"] == {"VND": BILLION_DONG}, "the charge booked")
    assert view(api, acc)["subscriptions"][0]["outstanding"] == {"VND": BILLION_DONG}

    def emailed() -> list[dict[str, Any]]:
        mails = requests.get(f"{stack.email_url}/messages", timeout=10).json()
        return [m for m in mails if m["headers"].get("X-Billing-Account") == acc]

    mail = wait_until(emailed, "the payment_failed email")[0]
    assert "₫2,500,000,000" in mail["plainText"] and "₫2,500,000,000" in mail["html"]
    page = requests.get(link_from_email(stack, acc), timeout=10)
    assert page.status_code == 200 and "₫2,500,000,000" in page.text

    r = requests.put(f"{api}/accounts/{acc}/payment-method", json={"token": "tok_visa"}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["totals"] == {"VND": BILLION_DONG} and r.json()["charged"] == {"VND": BILLION_DONG}
    charges = requests.get(f"{stack.gateway_url}/charges", params={"accountId": acc}, timeout=10).json()
    assert {(c["currency"], c["status"]) for c in charges} == {("VND", "succeeded")}
    # Charged exactly: the processor's per-charge limit may split the balance, never round it.
    assert sum(Money.parse(c["amount"], "VND").minor for c in charges) == int(BILLION_DONG)

    send_event("billing.charge.failed", failed(acc, "c2", "s2", BILLION_DONG, "VND"))
    wait_until(lambda: view(api, acc)["balance"] == {"VND": BILLION_DONG}, "the second charge booked")
    send_event("billing.payment.received", {"accountId": acc, "paymentId": "wire-1", "amount": BILLION_DONG,
                                            "currency": "VND", "method": "wire"})
    v = wait_until(lambda: (x := view(api, acc))["balance"] == {} and x, "the wire applied")
    assert v["credit"] == {} and {s["state"] for s in v["subscriptions"]} == {"active"}


def _dead_letter(api: str, text: str) -> dict[str, Any]:
    return dict(wait_until(lambda: next((i for i in all_dead_letters(api)
                                         if i["text"] == text), None), "the dead letter"))


@pytest.mark.parametrize(("name", "amount", "currency", "type_"), [
    ("full-width digits", "１２.３４", "USD", "billing.charge.failed"),
    ("Arabic-Indic digits", "١٢.٣٤", "USD", "billing.charge.failed"),
    ("past the largest amount", "1000000000000000000", "VND", "billing.charge.failed"),
    ("past Decimal's precision", "1234567890123456789012345678.91", "USD", "billing.payment.received"),
])
def test_amounts_that_cannot_be_money_are_dead_lettered_at_once_and_never_booked(
        api: str, send_event: Callable[..., str], name: str, amount: str, currency: str, type_: str) -> None:
    acc = new_account(api)
    data = (failed(acc, "c-bad", "s1", amount, currency) if type_ == "billing.charge.failed" else
            {"accountId": acc, "paymentId": "p-bad", "amount": amount, "currency": currency, "method": "wire"})
    text = event_text(data, type_)
    send_event("", {}, raw=text)
    item = _dead_letter(api, text)
    assert "data.amount" in item["reason"] and item["source"] == "payment-events", (name, item)
    send_event("billing.charge.failed", failed(acc, "c-after", "s1", "1.00", "USD"))
    v = wait_until(lambda: (x := view(api, acc))["balance"] == {"USD": "1.00"} and x, "the next event alone")
    assert v["credit"] == {}


def test_ambiguous_and_pathological_json_is_dead_lettered_at_once_with_the_real_reason(
        api: str, send_event: Callable[..., str]) -> None:
    acc = new_account(api)
    base = event_text(failed(acc, "c-bad", "s1", "1.00", "USD"))
    cases = {
        "duplicate amount": (base.replace('"amount": "1.00"', '"amount": "1.00", "amount": "900.00"'), "data.amount"),
        "duplicate accountId": (base.replace(f'"accountId": "{acc}"',
                                             f'"accountId": "{acc}", "accountId": "acc-other"'), "data.accountId"),
        "5,000-deep nesting": (base[:-1] + ', "ext": ' + "[" * 5000 + "]" * 5000 + "}", "nested"),
        "5,000-digit number": (base[:-1] + ', "ext": ' + "9" * 5000 + "}", "number of 5000"),
    }
    for text, _ in cases.values():
        send_event("", {}, raw=text)
    for name, (text, expected) in cases.items():
        item = _dead_letter(api, text)
        assert expected in item["reason"] and item["source"] == "payment-events", (name, item)
    assert view(api, acc)["balance"] == {}


def _problem_fields(r: requests.Response) -> list[str]:
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/problem+json")
    return [e["field"] for e in r.json()["errors"]]


def test_identifiers_with_a_trailing_newline_answer_400_naming_the_field(api: str) -> None:
    body = {"displayName": "X", "billingContacts": ["a@b.example"]}
    assert _problem_fields(requests.put(f"{api}/accounts/acct-1%0A", json=body, timeout=10)) == ["accountId"]
    assert _problem_fields(requests.get(f"{api}/accounts/acct-1%0A", timeout=10)) == ["accountId"]
    assert _problem_fields(requests.get(f"{api}/accounts/acct-1%0A/timeline", timeout=10)) == ["accountId"]
    assert _problem_fields(requests.put(f"{api}/accounts/acct-1%0A/payment-method", json={"token": "tok_visa"},
                                        timeout=10)) == ["accountId"]
    assert requests.get(f"{api}/accounts/acct-1", timeout=10).status_code == 404  # nothing registered as acct-1
    assert requests.get(f"{api}/billing/acct-1%0A", timeout=10).status_code == 403


def test_an_identifier_with_an_encoded_slash_answers_400_and_never_acts_on_another_account(api: str) -> None:
    # The local host decoded `%2F` before routing: `PUT /accounts/acc-x%2F` updated `acc-x`.
    acc = new_account(api)
    body = {"displayName": "Renamed", "billingContacts": ["a@b.example"]}
    for suffix in ("%2F", "%2f", "%2Fx"):
        assert _problem_fields(requests.put(f"{api}/accounts/{acc}{suffix}", json=body, timeout=10)) == ["accountId"]
        assert _problem_fields(requests.get(f"{api}/accounts/{acc}{suffix}/timeline", timeout=10)) == ["accountId"]
    assert _problem_fields(requests.put(f"{api}/accounts/{acc}%2Fpayment-method", json={"token": "tok_visa"},
                                        timeout=10)) == ["accountId"]
    assert requests.get(f"{api}/accounts/{acc}", timeout=10).json()["displayName"] == "Contoso Ltd"


def test_ambiguous_and_pathological_http_bodies_answer_400(api: str) -> None:
    acc = f"acc-{uuid.uuid4().hex[:12]}"
    dup = '{"displayName": "A", "displayName": "B", "billingContacts": ["a@b.example"]}'
    r = requests.put(f"{api}/accounts/{acc}", data=dup, timeout=10)
    assert _problem_fields(r) == ["displayName"] and "more than once" in r.text
    r = requests.put(f"{api}/accounts/{acc}", data='{"displayName": ' + "[" * 5000 + "]" * 5000 + "}", timeout=10)
    assert _problem_fields(r) == ["body"] and "nested" in r.text
    r = requests.put(f"{api}/accounts/{acc}", data='{"displayName": ' + "9" * 5000 + "}", timeout=10)
    assert _problem_fields(r) == ["body"] and "number" in r.text
    r = requests.put(f"{api}/accounts/{acc}/payment-method", data='{"token": "tok_visa", "token": "tok_x"}',
                     timeout=10)
    assert _problem_fields(r) == ["token"]
    assert requests.get(f"{api}/accounts/{acc}", timeout=10).status_code == 404


def test_times_and_query_numbers_in_foreign_digits_are_refused(api: str, stack: LocalStack,
                                                              send_event: Callable[..., str]) -> None:
    r = requests.put(f"{api}/testing/clock", json={"now": "２０２６-12-01T09:00:00Z"}, timeout=10)
    assert _problem_fields(r) == ["now"]
    assert _problem_fields(requests.put(f"{api}/testing/clock", json={"now": "2026-12-01T09:00:00+24:00"},
                                        timeout=10)) == ["now"]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.1234567Z")  # Azure's seven digits are read
    try:
        r = requests.put(f"{api}/testing/clock", json={"now": now}, timeout=10)
        assert r.status_code == 200 and r.json()["now"].endswith(".123456Z"), r.text
    finally:
        requests.delete(f"{api}/testing/clock", timeout=10)
    acc = new_account(api)
    send_event("billing.charge.failed", failed(acc, "c1", "s1", "10.00", "USD"))
    link = link_from_email(stack, acc)
    assert requests.get(link, timeout=10).status_code == 200
    expires = link.split("expires=")[1].split("&")[0]
    wide = expires.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    assert requests.get(link.replace(f"expires={expires}", f"expires={wide}"), timeout=10).status_code == 403
    twice = requests.post(link, data=[("token", "tok_visa"), ("token", "tok_mastercard"),
                                       ("form_token", page_form_token(link))], timeout=30)
    assert twice.status_code == 400  # which card is meant is ambiguous: neither is saved or charged
    assert view(api, acc)["balance"] == {"USD": "10.00"} and view(api, acc)["paymentMethod"]["last4"] == "4242"


def test_every_integer_in_every_table_is_int64(stack: LocalStack) -> None:
    """The whole kind, after the flows above (and any before them in the session): no table row the
    app, the sandbox gateway or the local host wrote holds an Edm.Int32, which a sum outgrows."""
    service = TableServiceClient.from_connection_string(stack.connection_string)
    bare = [(t.name, e["PartitionKey"], e["RowKey"], name)
            for t in service.list_tables() for e in service.get_table_client(t.name).list_entities()
            for name, value in e.items() if isinstance(value, int) and not isinstance(value, bool)]
    assert bare == []
