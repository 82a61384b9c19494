"""Issue 23 on the running stack and the test clock: a pause moves every later date, a card that
expires this month is announced once and not retried once expired, an episode keeps the policy it
began under across a restart with other settings, credit meets a later failure, and a hard
decline dated before a new card was saved leaves that card's retries alone."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from devstack.stack import LocalStack
from tests.e2e.conftest import new_account, wait_until


@pytest.fixture
def clock(api: str) -> Iterator[Callable[[datetime], None]]:
    def set_to(at: datetime) -> None:
        requests.put(f"{api}/testing/clock", json={"now": at.isoformat()}, timeout=10).raise_for_status()
        time.sleep(1.2)  # every process reads the stored clock at most once a second

    yield set_to
    requests.delete(f"{api}/testing/clock", timeout=10)


def _view(api: str, acc: str) -> dict[str, Any]:
    return dict(requests.get(f"{api}/accounts/{acc}", timeout=10).json())


def _timeline(api: str, acc: str) -> list[dict[str, Any]]:
    return list(requests.get(f"{api}/accounts/{acc}/timeline", timeout=10).json()["entries"])


def _mails(stack: LocalStack, acc: str, kind: str) -> list[dict[str, Any]]:
    got = requests.get(f"{stack.email_url}/messages", timeout=30).json()
    return [m for m in got if m["headers"].get("X-Billing-Account") == acc
            and m["headers"].get("X-Billing-Email-Kind") == kind]


def _charges(stack: LocalStack, acc: str) -> list[dict[str, Any]]:
    return [c for c in requests.get(f"{stack.gateway_url}/charges", timeout=30).json() if c.get("accountId") == acc]


def _sweep(stack: LocalStack, api: str, acc: str, settle: float = 3.0) -> None:
    """Run the dunning sweep and wait until the account has nothing due before the clock's now
    (its steps taken), or `settle` seconds when nothing was due."""
    before = len(_timeline(api, acc))
    r = requests.post(f"{stack.functions_url}/admin/functions/dunning_sweep", json={"input": ""}, timeout=10)
    assert r.status_code == 202
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline and len(_timeline(api, acc)) == before:
        time.sleep(0.2)
    time.sleep(1.0)  # the emails and lifecycle events the step left in the outbox


def _event(type_: str, data: dict[str, Any], at: datetime) -> str:
    return json.dumps({"specversion": "1.0", "id": f"evt-{uuid.uuid4().hex}", "type": type_, "source": "/tests",
                       "time": at.isoformat().replace("+00:00", "Z"), "data": data})


def _failed(acc: str, charge: str = "c1", reason: str = "card_declined", amount: str = "25.00") -> dict[str, Any]:
    return {"accountId": acc, "subscriptionId": "s1", "chargeId": charge, "amount": amount, "currency": "USD",
            "reason": reason}


def _start() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)


def test_a_pause_from_day_10_to_24_moves_the_disabling_to_day_44_and_the_reminders_with_it(
        api: str, stack: LocalStack, send_event: Callable[..., str], clock: Callable[[datetime], None]) -> None:
    t0 = _start()
    acc = new_account(api, token="tok_chargeDeclined")

    def at(n: float) -> datetime:
        return t0 + timedelta(days=n)

    clock(at(0))
    send_event("billing.charge.failed", _failed(acc))
    wait_until(lambda: _view(api, acc)["subscriptions"][0]["state"] == "past_due", "past due", timeout=60)
    for n in (1, 3, 5, 7):
        clock(at(n))
        _sweep(stack, api, acc)
    wait_until(lambda: len(_mails(stack, acc, "payment_reminder")) == 1, "the day-7 reminder", timeout=60)
    retries = len(_charges(stack, acc))
    clock(at(10))
    r = requests.put(f"{api}/accounts/{acc}/dunning", json={"pausedUntil": at(24).isoformat()}, timeout=10)
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["dunning"]["pausedUntil"] == at(24).isoformat().replace("+00:00", "Z")
    assert view["subscriptions"][0]["disableAt"] == at(44).isoformat().replace("+00:00", "Z")
    assert view["subscriptions"][0]["nextReminderAt"] == at(28).isoformat().replace("+00:00", "Z")
    for n in (14, 21, 23):
        clock(at(n))
        _sweep(stack, api, acc)
    assert len(_mails(stack, acc, "payment_reminder")) == 1 and len(_charges(stack, acc)) == retries
    for n, reminders in ((24, 1), (28, 2), (35, 3)):
        clock(at(n))
        _sweep(stack, api, acc)
        wait_until(lambda r=reminders: len(_mails(stack, acc, "payment_reminder")) == r, f"reminders by day {n}",
                   timeout=60)
    clock(at(43.9))
    _sweep(stack, api, acc)
    assert _view(api, acc)["subscriptions"][0]["state"] == "past_due"
    # day 27 moved to day 41: the warning leaves through the email queue, after the sweep's commit
    wait_until(lambda: len(_mails(stack, acc, "disable_warning")) == 1, "the disable warning", timeout=60)
    clock(at(44))
    _sweep(stack, api, acc)
    wait_until(lambda: _view(api, acc)["subscriptions"][0]["state"] == "disabled", "disabled on day 44", timeout=60)
    kinds = [e["kind"] for e in _timeline(api, acc)]
    assert "dunning_paused" in kinds and "dunning_resumed" in kinds
    assert len(_charges(stack, acc)) == retries  # no retry after day 7


def test_a_pause_in_the_past_or_too_far_ahead_is_a_400(api: str, clock: Callable[[datetime], None]) -> None:
    acc = new_account(api)
    t0 = _start()
    clock(t0)
    for until in (t0 - timedelta(hours=1), t0 + timedelta(days=91)):
        r = requests.put(f"{api}/accounts/{acc}/dunning", json={"pausedUntil": until.isoformat()}, timeout=10)
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == "pausedUntil"
    r = requests.put(f"{api}/accounts/{acc}/dunning", json={"pausedUntil": None}, timeout=10)
    assert r.status_code == 200 and r.json()["dunning"]["pausedUntil"] is None


def test_a_card_expiring_this_month_gets_one_notice_and_no_retry_once_expired(
        api: str, stack: LocalStack, send_event: Callable[..., str], clock: Callable[[datetime], None]) -> None:
    clock(datetime(2030, 12, 5, 9, tzinfo=UTC))  # tok_visa is good through December 2030
    acc = new_account(api, token="tok_visa", locale="zh-CN")
    _sweep(stack, api, acc, settle=60)
    [mail] = wait_until(lambda: _mails(stack, acc, "card_expiring"), "the card_expiring email", timeout=90)
    assert "/api/billing/" in mail["plainText"] and "4242" in mail["plainText"]
    _sweep(stack, api, acc)
    assert len(_mails(stack, acc, "card_expiring")) == 1
    assert [a["code"] for a in _view(api, acc)["alerts"]] == ["card_expiring"]
    clock(datetime(2031, 1, 5, 9, tzinfo=UTC))
    assert [(a["code"], a["severity"]) for a in _view(api, acc)["alerts"]] == [("card_expired", "error")]
    send_event("billing.charge.failed", _failed(acc))
    wait_until(lambda: _view(api, acc)["subscriptions"][0]["state"] == "past_due", "past due", timeout=60)
    clock(datetime(2031, 1, 6, 10, tzinfo=UTC))
    _sweep(stack, api, acc, settle=60)
    wait_until(lambda: "retry_skipped" in [e["kind"] for e in _timeline(api, acc)], "the retry skipped", timeout=120)
    assert _charges(stack, acc) == []


def test_an_episode_keeps_its_policy_across_a_restart_with_other_settings(
        api: str, stack: LocalStack, send_event: Callable[..., str], clock: Callable[[datetime], None]) -> None:
    t0 = _start()
    old, new = new_account(api, token=None), new_account(api, token=None)
    clock(t0)
    send_event("billing.charge.failed", _failed(old))
    wait_until(lambda: _view(api, old)["subscriptions"][0]["state"] == "past_due", "past due", timeout=60)
    version = _view(api, old)["subscriptions"][0]["policyVersion"]

    def restart(env: dict[str, str]) -> None:
        stack.extra_env = env
        stack.restart("functions")
        wait_until(lambda: _health(stack), "the functions host after its restart", timeout=90)

    restart({**stack.extra_env, "DUNNING_DISABLE_DAY": "10", "DUNNING_DISABLE_WARNING_DAY": "7"})
    saved = {k: v for k, v in stack.extra_env.items() if not k.startswith("DUNNING_")}
    try:
        clock(t0)
        send_event("billing.charge.failed", _failed(new))
        wait_until(lambda: _view(api, new)["subscriptions"][0]["state"] == "past_due", "past due", timeout=60)
        assert _view(api, new)["subscriptions"][0]["policyVersion"] != version
        assert _view(api, old)["subscriptions"][0]["policyVersion"] == version
        assert _view(api, old)["subscriptions"][0]["disableAt"] == (t0 + timedelta(days=30)).isoformat().replace(
            "+00:00", "Z")
        clock(t0 + timedelta(days=10))
        _sweep(stack, api, new)
        wait_until(lambda: _view(api, new)["subscriptions"][0]["state"] == "disabled", "new episode on day 10",
                   timeout=60)
        assert _view(api, old)["subscriptions"][0]["state"] == "past_due"
        clock(t0 + timedelta(days=30))
        _sweep(stack, api, old)
        wait_until(lambda: _view(api, old)["subscriptions"][0]["state"] == "disabled", "old episode on day 30",
                   timeout=60)
    finally:
        restart(saved)


def _health(stack: LocalStack) -> bool:
    try:
        return requests.get(f"{stack.functions_url}/api/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def test_a_payment_without_charge_ids_before_its_failure_leaves_the_subscription_active(
        api: str, send_event: Callable[..., str]) -> None:
    acc = new_account(api, token=None)
    send_event("billing.payment.received", {"accountId": acc, "paymentId": "pay-early", "amount": "30.00",
                                            "currency": "USD", "method": "wire"})
    wait_until(lambda: _view(api, acc)["credit"] == {"USD": "30.00"}, "the credit", timeout=60)
    send_event("billing.charge.failed", _failed(acc))
    wait_until(lambda: _view(api, acc)["credit"] == {"USD": "5.00"}, "the credit paying the charge", timeout=60)
    view = _view(api, acc)
    assert view["balance"] == {} and view["subscriptions"][0]["state"] == "active"
    assert any("paid by account credit" in e["detail"] for e in _timeline(api, acc))


def test_a_hard_decline_dated_before_a_new_card_was_saved_does_not_stop_its_retries(
        api: str, stack: LocalStack, clock: Callable[[datetime], None]) -> None:
    from azure.storage.queue import QueueClient

    t0 = _start()
    clock(t0)
    acc = new_account(api, token="tok_chargeDeclinedExpiredCard")
    clock(t0 + timedelta(hours=2))
    r = requests.put(f"{api}/accounts/{acc}/payment-method", json={"token": "tok_visa"}, timeout=30)
    assert r.status_code == 200, r.text
    queue = QueueClient.from_connection_string(stack.connection_string, "payment-events")
    queue.send_message(_event("billing.charge.failed", _failed(acc, reason="card_expired"), t0 + timedelta(hours=1)))
    wait_until(lambda: _view(api, acc)["subscriptions"][0]["state"] == "past_due", "past due", timeout=60)
    assert "payment_method_required" not in [a["code"] for a in _view(api, acc)["alerts"]]
    clock(t0 + timedelta(days=1, hours=3))
    _sweep(stack, api, acc, settle=60)
    wait_until(lambda: _view(api, acc)["subscriptions"][0]["state"] == "active", "paid by the retry", timeout=60)
    assert [c["status"] for c in _charges(stack, acc)] == ["succeeded"]
