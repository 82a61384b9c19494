"""Issue-level acceptance on the running local stack: billing emails, delivery reports, and the
card update that settles everything at once."""

from __future__ import annotations

import html
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from devstack.stack import LocalStack
from tests.e2e.conftest import new_account, wait_until


def view(api: str, account_id: str) -> dict[str, Any]:
    return dict(requests.get(f"{api}/accounts/{account_id}", timeout=10).json())


def mail_to(stack: LocalStack, account_id: str) -> list[dict[str, Any]]:
    got = requests.get(f"{stack.email_url}/messages", timeout=10).json()
    return [m for m in got if m["headers"].get("X-Billing-Account") == account_id]


def fail(send_event: Callable[..., str], acc: str, charge: str, sub: str, amount: str, cur: str = "USD") -> None:
    send_event("billing.charge.failed", {"accountId": acc, "subscriptionId": sub, "chargeId": charge,
                                         "amount": amount, "currency": cur, "reason": "insufficient_funds"})


def test_failed_charge_mails_each_contact_once_in_their_language_and_bounces_show(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    contacts = ("zhang@contoso.example", "li@contoso.example")
    acc = new_account(api, locale="zh-CN", contacts=contacts)
    event_id = send_event("billing.charge.failed", {"accountId": acc, "subscriptionId": "s1", "chargeId": "c1",
                                                    "amount": "1000", "currency": "JPY", "reason": "card_declined"})
    send_event("billing.charge.failed", {"accountId": acc, "subscriptionId": "s1", "chargeId": "c1",
                                         "amount": "1000", "currency": "JPY", "reason": "card_declined"},
               event_id=event_id)  # redelivered
    mails = wait_until(lambda: len(m := mail_to(stack, acc)) >= 2 and m, "two failure notices")
    entries = wait_until(lambda: [e for e in requests.get(f"{api}/accounts/{acc}/timeline", timeout=10)
                                  .json()["entries"] if e["kind"] == "email_sent"], "sends recorded")
    assert len(entries) >= 1
    assert sorted(m["to"][0]["address"] for m in mails) == sorted(contacts)
    assert all("付款" in m["subject"] and "JP¥1,000" in m["plainText"] for m in mails)
    inbox = requests.get(f"{stack.email_url}/", timeout=10).text
    assert all(html.escape(m["subject"]) in inbox for m in mails)
    # Delivery reports come back through Event Grid: a bounce raises an alert, a later delivery clears it.
    report = mails[0]

    def deliver(status: str, at: str) -> None:
        r = requests.post(f"{stack.functions_url}/runtime/webhooks/eventgrid",
                          params={"functionName": "email_delivery_reports"},
                          headers={"aeg-event-type": "Notification"}, timeout=10,
                          json=[{"id": str(uuid.uuid4()), "topic": "/acs", "subject": "sender/recipient",
                                 "eventType": "Microsoft.Communication.EmailDeliveryReportReceived",
                                 "eventTime": at, "dataVersion": "1.0",
                                 "data": {"sender": "billing@contoso.example", "recipient": report["to"][0]["address"],
                                          "messageId": report["operationId"], "status": status,
                                          "deliveryStatusDetails": {"statusMessage": "550 mailbox unavailable"},
                                          "deliveryAttemptTimeStamp": at}}])
        assert r.status_code == 200, r.text

    deliver("Bounced", "2026-12-01T10:00:00Z")
    alerts = view(api, acc)["alerts"]
    unreachable = [a for a in alerts if a["code"] == "contact_unreachable"]
    assert len(unreachable) == 1 and report["to"][0]["address"] in unreachable[0]["message"]
    deliver("Delivered", "2026-12-02T10:00:00Z")
    assert "contact_unreachable" not in [a["code"] for a in view(api, acc)["alerts"]]
    assert len(mail_to(stack, acc)) == 2  # and no further mail for the redelivered event


def gateway_charges(stack: LocalStack, acc: str) -> list[dict[str, Any]]:
    return list(requests.get(f"{stack.gateway_url}/charges", params={"accountId": acc}, timeout=10).json())


def test_card_update_settles_every_subscription_in_two_currencies_once(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    acc = new_account(api, subscriptions=3, token="tok_chargeDeclinedExpiredCard")
    fail(send_event, acc, "c1", "s1", "10.00")
    fail(send_event, acc, "c2", "s2", "1500", "JPY")
    fail(send_event, acc, "c3", "s3", "2.50")
    wait_until(lambda: view(api, acc)["balance"] == {"JPY": "1500", "USD": "12.50"}, "three failures")
    r = requests.put(f"{api}/accounts/{acc}/payment-method", json={"token": "tok_visa"}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["settled"] is True and sorted(p["chargeId"] for p in body["paid"]) == ["c1", "c2", "c3"]
    assert body["totals"] == {"JPY": "1500", "USD": "12.50"} and sorted(body["reactivated"]) == ["s1", "s2", "s3"]
    v = view(api, acc)
    assert v["balance"] == {} and {s["state"] for s in v["subscriptions"]} == {"active"}
    assert v["paymentMethod"]["last4"] == "4242"
    assert sorted((c["currency"], c["amount"]) for c in gateway_charges(stack, acc)) == [("JPY", "1500"),
                                                                                         ("USD", "12.50")]
    again = requests.put(f"{api}/accounts/{acc}/payment-method", json={"token": "tok_visa"}, timeout=60)
    assert again.status_code == 200 and again.json()["paid"] == []
    assert len(gateway_charges(stack, acc)) == 2


def test_a_declined_card_answers_402_and_changes_nothing_but_the_card(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    acc = new_account(api, subscriptions=2)
    fail(send_event, acc, "c1", "s1", "10.00")
    wait_until(lambda: view(api, acc)["balance"] == {"USD": "10.00"}, "the failure")
    r = requests.put(f"{api}/accounts/{acc}/payment-method", json={"token": "tok_chargeDeclinedInsufficientFunds"},
                     timeout=60)
    assert r.status_code == 402 and r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json()["declineCode"] == "insufficient_funds" and r.json()["paid"] == []
    v = view(api, acc)
    assert v["balance"] == {"USD": "10.00"} and v["subscriptions"][0]["state"] == "past_due"
    assert v["paymentMethod"]["last4"] == "9995"


def test_twenty_concurrent_card_updates_charge_once_per_currency(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    acc = new_account(api, subscriptions=2)
    fail(send_event, acc, "c1", "s1", "10.00")
    fail(send_event, acc, "c2", "s2", "300", "JPY")
    wait_until(lambda: view(api, acc)["balance"] == {"JPY": "300", "USD": "10.00"}, "two failures")

    def update(_: int) -> requests.Response:
        return requests.put(f"{api}/accounts/{acc}/payment-method", json={"token": "tok_visa"}, timeout=120)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(update, range(20)))
    assert {a.status_code for a in answers} <= {200, 409}
    paid = sorted(p["chargeId"] for a in answers if a.status_code == 200 for p in a.json()["paid"])
    assert paid == ["c1", "c2"]
    assert sorted(c["currency"] for c in gateway_charges(stack, acc)) == ["JPY", "USD"]


def test_card_data_is_refused_and_never_echoed(api: str) -> None:
    acc = new_account(api)
    for body in ({"token": "4242424242424242"}, {"token": "tok_visa", "cvc": "123"},
                 {"number": "4242 4242 4242 4242"}):
        r = requests.put(f"{api}/accounts/{acc}/payment-method", json=body, timeout=10)
        assert r.status_code == 400, r.text
        assert "4242424242424242" not in r.text and "4242 4242" not in r.text and "123" not in r.text
    r = requests.put(f"{api}/accounts/{acc}/payment-method", json={"token": "tok_nope"}, timeout=10)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "token"


def test_issue_acceptance_two_past_due_and_one_disabled_settle_in_one_click(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    """Three subscriptions in two currencies: one disabled by the dunning sweep after 30 days, two
    freshly past due; saving `tok_visa` settles all of them with one charge per currency."""
    acc = new_account(api, subscriptions=3, token="tok_chargeDeclinedExpiredCard")
    start = "2027-03-01T09:00:00Z"
    try:
        requests.put(f"{api}/testing/clock", json={"now": start}, timeout=10).raise_for_status()
        fail(send_event, acc, "c3", "s3", "7.25")
        wait_until(lambda: view(api, acc)["subscriptions"][2]["state"] == "past_due", "s3 past due")
        requests.put(f"{api}/testing/clock", json={"now": "2027-04-01T09:00:00Z"}, timeout=10).raise_for_status()
        r = requests.post(f"{stack.functions_url}/admin/functions/dunning_sweep", json={"input": ""}, timeout=10)
        assert r.status_code == 202
        wait_until(lambda: view(api, acc)["subscriptions"][2]["state"] == "disabled", "s3 disabled by the sweep")
        assert "service_disabled" in [a["code"] for a in view(api, acc)["alerts"]]
        fail(send_event, acc, "c1", "s1", "10.00")
        fail(send_event, acc, "c2", "s2", "800", "JPY")
        v = wait_until(lambda: (x := view(api, acc))["balance"] == {"JPY": "800", "USD": "17.25"} and x, "owing")
        assert [s["state"] for s in v["subscriptions"]] == ["past_due", "past_due", "disabled"]
        r = requests.put(f"{api}/accounts/{acc}/payment-method", json={"token": "tok_visa"}, timeout=60)
        assert r.status_code == 200, r.text
        assert sorted(p["chargeId"] for p in r.json()["paid"]) == ["c1", "c2", "c3"]
        assert sorted(r.json()["reactivated"]) == ["s1", "s2", "s3"]
        v = view(api, acc)
        assert [s["state"] for s in v["subscriptions"]] == ["active"] * 3 and v["alerts"] == []
        assert sorted((c["currency"], c["amount"]) for c in gateway_charges(stack, acc)) == [("JPY", "800"),
                                                                                             ("USD", "17.25")]
        again = requests.put(f"{api}/accounts/{acc}/payment-method", json={"token": "tok_visa"}, timeout=60)
        assert again.json()["paid"] == [] and len(gateway_charges(stack, acc)) == 2
    finally:
        requests.delete(f"{api}/testing/clock", timeout=10)
