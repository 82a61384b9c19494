"""Issue 21: throttled is not failed, pacing to a known quota, what matters goes first. On the
in-memory twins (`in_memory_unit_of_work`, `FakeMailer`, `InMemoryEmailBudget`)."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.mailer.acs import DEFAULT_RETRY_AFTER, MAX_RETRY_AFTER, retry_after
from shared.adapters.store.email_budget import HOLD_SLACK, SEND_DELAY, BudgetState, hold_until, pace_for, reserve
from shared.domain.facts import ChargeFailed, PaymentReceived
from shared.domain.mail import ROUTINE_KINDS, time_critical
from shared.domain.mail_retry import RETRY_CAP, RETRY_FLOOR, transient_retry_in
from shared.domain.model import Profile
from shared.domain.money import Money
from shared.domain.payments import Registration
from shared.services.dispatch import read_email_handoff
from shared.services.email import give_up_email, send_email
from shared.services.unit_of_work import UnitOfWork, apply_event, register_account
from shared.services.views import account_view
from shared.settings import Settings
from tests.fakes.email_budget import InMemoryEmailBudget
from tests.fakes.mailer import FakeMailer
from tests.fakes.queues import InMemoryQueues
from tests.fakes.unit_of_work import in_memory_unit_of_work

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CONTACTS = ("ap@contoso.example", "cfo@contoso.example")
SETTINGS = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})


def _uow() -> UnitOfWork:
    uow = in_memory_unit_of_work(NOW)
    register_account(uow, "acc-1", Registration(Profile("Contoso", "en", CONTACTS), (("s1", "Website"),)))
    return uow


def _queues(uow: UnitOfWork) -> InMemoryQueues:
    assert isinstance(uow.queues, InMemoryQueues)
    return uow.queues


def _fail(uow: UnitOfWork, n: int = 1) -> list[str]:
    apply_event(uow, ChargeFailed(f"e-{n}", "acc-1", "s1", f"c{n}", Money.parse("10.00", "USD"), "card_expired"),
                "billing.charge.failed")
    return [r.key for r in uow.accounts.pending_outbox("acc-1") if r.kind == "email"]


def _handoffs(uow: UnitOfWork) -> list[tuple[dict[str, object], datetime]]:
    return [(json.loads(m.text), m.visible_at) for m in _queues(uow).sent if m.role == "email-outbox"]


def _alerts(uow: UnitOfWork) -> list[dict[str, object]]:
    account = uow.accounts.load("acc-1").account
    return [a for a in account_view(account, uow.policy)["alerts"] if a["code"] == "email_undelivered"]


# -- reading the wait the service names ------------------------------------------------------------


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"Retry-After": "7"}, 7.0),
    ({"retry-after": "1.5"}, 1.5),
    ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
    ({"x-ms-retry-after-ms": "1200"}, 1.2),
    ({"Retry-After": "Tue, 01 Dec 2026 09:00:30 GMT"}, 30.0),
    ({"Retry-After": "Tue, 01 Dec 2026 08:00:00 GMT"}, 0.0),  # a date passed: no wait
    ({"Retry-After": "999999"}, MAX_RETRY_AFTER.total_seconds()),
    ({"Retry-After": "soon"}, None),
    ({"Retry-After": "nan"}, None),
    ({}, None),
])
def test_the_wait_is_read_from_every_header_acs_and_azure_core_know(headers: dict[str, str],
                                                                     seconds: float | None) -> None:
    got = retry_after(headers, NOW)
    assert (None if got is None else got.total_seconds()) == seconds


def test_a_429_naming_no_wait_waits_about_a_minute() -> None:
    assert timedelta(seconds=60) == DEFAULT_RETRY_AFTER


# -- throttled is not failed --------------------------------------------------------------------------


def test_a_throttled_send_is_put_back_for_the_time_named_and_sent_once_then() -> None:
    uow, mailer = _uow(), FakeMailer()
    [first, _] = _fail(uow)
    _queues(uow).sent.clear()
    mailer.throttle_next, mailer.retry_after = 1, timedelta(seconds=4.2)
    assert send_email(uow, mailer, SETTINGS, "acc-1", first) == "throttled"
    [(body, visible_at)] = _handoffs(uow)
    assert body == {"accountId": "acc-1", "key": first}  # a new hand-off: the invocation ends well
    assert visible_at == NOW + timedelta(seconds=5)  # whole seconds, rounded up
    assert mailer.sent == {} and first in [r.key for r in uow.accounts.pending_outbox("acc-1")]
    assert send_email(uow, mailer, SETTINGS, "acc-1", first) == "sent"
    assert list(mailer.sent) == [first]  # under the email's own operation id
    assert send_email(uow, mailer, SETTINGS, "acc-1", first) == "gone"


def test_throttling_for_days_never_gives_up_before_the_give_up_time() -> None:
    uow, mailer = _uow(), FakeMailer()
    [first, _] = _fail(uow)
    mailer.throttle_next = 10_000
    for hours in (1, 24, 48, 71):
        uow.clock.advance_to(NOW + timedelta(hours=hours))  # type: ignore[attr-defined]
        assert send_email(uow, mailer, SETTINGS, "acc-1", first) == "throttled"
    assert [e["kind"] for e in uow.accounts.timeline("acc-1")].count("email_failed") == 0
    assert _alerts(uow) == []


def test_after_the_give_up_time_the_timeline_and_an_alert_say_so_and_a_later_email_clears_it() -> None:
    uow, mailer = _uow(), FakeMailer()
    [first, second] = _fail(uow)
    recipient = uow.accounts.open_email("acc-1", first).email.recipient  # type: ignore[union-attr]
    mailer.throttle_next = 1
    uow.clock.advance_to(NOW + timedelta(hours=72))  # type: ignore[attr-defined]
    assert send_email(uow, mailer, SETTINGS, "acc-1", first) == "failed"
    failed = [e for e in uow.accounts.timeline("acc-1") if e["kind"] == "email_failed"]
    assert len(failed) == 1 and "throttled by the email service for 72 hours" in failed[0]["detail"]
    [alert] = _alerts(uow)
    assert alert["severity"] == "warning" and recipient in str(alert["message"])
    assert "contact_unreachable" not in [a["code"] for a in account_view(
        uow.accounts.load("acc-1").account, uow.policy)["alerts"]]  # not the address's fault
    assert send_email(uow, mailer, SETTINGS, "acc-1", first) == "gone"
    # The other contact's email still goes out; the alert stays, it is about the first contact.
    assert send_email(uow, mailer, SETTINGS, "acc-1", second) == "sent"
    assert len(_alerts(uow)) == 1
    for key in _fail(uow, 2):  # a later failure emails both contacts again: the alert clears
        assert send_email(uow, mailer, SETTINGS, "acc-1", key) == "sent"
    assert _alerts(uow) == []


def test_the_give_up_time_is_a_setting_counted_from_when_the_email_was_due() -> None:
    uow, mailer = _uow(), FakeMailer()
    [first, _] = _fail(uow)
    payload = next(r.payload for r in uow.accounts.pending_outbox("acc-1") if r.key == first)
    assert payload["dueAt"] == NOW.isoformat()
    settings = replace(SETTINGS, email_give_up_after=timedelta(hours=2))
    mailer.throttle_next = 2
    uow.clock.advance_to(NOW + timedelta(hours=1, minutes=59))  # type: ignore[attr-defined]
    assert send_email(uow, mailer, settings, "acc-1", first) == "throttled"
    uow.clock.advance_to(NOW + timedelta(hours=2))  # type: ignore[attr-defined]
    assert send_email(uow, mailer, settings, "acc-1", first) == "failed"


def test_settings_read_the_quota_and_the_give_up_time() -> None:
    base = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    assert (SETTINGS.email_quota_per_minute, SETTINGS.email_quota_per_hour) == (None, None)
    assert SETTINGS.email_give_up_after == timedelta(hours=72)
    s = Settings.from_env({**base, "EMAIL_QUOTA_PER_MINUTE": "30", "EMAIL_QUOTA_PER_HOUR": "",
                           "EMAIL_GIVE_UP_AFTER_HOURS": "24"})
    assert (s.email_quota_per_minute, s.email_quota_per_hour, s.email_give_up_after) == (
        30, None, timedelta(hours=24))
    for bad in ({"EMAIL_QUOTA_PER_MINUTE": "0"}, {"EMAIL_QUOTA_PER_HOUR": "-5"},
                {"EMAIL_GIVE_UP_AFTER_HOURS": "1e3"}):
        with pytest.raises(ValueError):
            Settings.from_env({**base, **bad})


def test_an_email_given_up_by_the_poison_queue_shows_the_alert_too() -> None:
    uow = _uow()
    [first, _] = _fail(uow)
    assert give_up_email(uow, "acc-1", first, "the send kept failing until the retries ran out")
    assert len(_alerts(uow)) == 1
    assert not give_up_email(uow, "acc-1", first, "again")


# -- pacing to a known quota -----------------------------------------------------------------------


def test_the_pace_keeps_every_window_within_the_quota_even_for_sends_that_come_late() -> None:
    rng = random.Random(21)
    for per_minute, per_hour in ((600, None), (30, None), (20, 100), (None, 100), (1, None)):
        pace = pace_for(per_minute, per_hour)
        assert pace is not None
        state, now, sends = BudgetState(), 0.0, []
        for _ in range(300):
            now += rng.choice((0.0, 0.0, rng.uniform(0, 3 * pace.interval)))
            state, at, reserved = reserve(state, pace, now, critical=True)
            assert reserved and at >= now
            sends.append(at + rng.uniform(0, SEND_DELAY))  # sent up to SEND_DELAY after its slot
        sends.sort()
        for limit, window in ((per_minute, 60.0), (per_hour, 3600.0)):
            if limit is not None:
                most = max(sum(1 for t in sends if s <= t < s + window) for s in sends)
                assert most <= limit, (per_minute, per_hour, window)
    assert pace_for(None, None) is None
    fast = pace_for(600, None)
    assert fast is not None and 60 / fast.interval >= 0.95 * 600  # the pace stays close to the quota


def test_a_paced_email_waits_for_its_slot_and_then_goes_without_asking_again() -> None:
    uow, mailer = _uow(), FakeMailer()
    pace = pace_for(20, None)
    assert pace is not None
    budget = InMemoryEmailBudget(pace, uow.clock.now)
    [first, second] = _fail(uow)
    _queues(uow).sent.clear()
    assert send_email(uow, mailer, SETTINGS, "acc-1", first, budget=budget) == "sent"
    assert send_email(uow, mailer, SETTINGS, "acc-1", second, budget=budget) == "paced"
    [(body, visible_at)] = _handoffs(uow)
    handoff = read_email_handoff(json.dumps(body))
    assert handoff.slot == NOW + timedelta(seconds=pace.interval)
    assert visible_at == NOW + timedelta(seconds=4)  # 3.26 s, in whole seconds
    uow.clock.advance_to(visible_at)  # type: ignore[attr-defined]
    assert send_email(uow, mailer, SETTINGS, "acc-1", second, budget=budget, slot=handoff.slot) == "sent"
    assert len(budget.reservations) == 2 and set(mailer.sent) == {first, second}


def test_under_a_backlog_time_critical_emails_go_before_routine_ones() -> None:
    assert time_critical("payment_failed") and time_critical("deletion_warning") and time_critical("card_expiring")
    assert not any(time_critical(k) for k in ROUTINE_KINDS)
    uow, mailer = _uow(), FakeMailer()
    pace = pace_for(30, None)
    assert pace is not None
    budget = InMemoryEmailBudget(pace, uow.clock.now)
    for _ in range(20):  # a backlog: 20 critical emails took the next 40 s of slots
        budget.reserve(critical=True)
    _fail(uow)
    apply_event(uow, PaymentReceived("p-1", "acc-1", "pay-1", Money.parse("10.00", "USD"), "card"),
                "billing.payment.received")
    _fail(uow, 2)
    rows = [r for r in uow.accounts.pending_outbox("acc-1") if r.kind == "email"]
    routine = [r.key for r in rows if r.payload["kind"] == "payment_settled"]
    critical = [r.key for r in rows
                if r.payload["kind"] == "payment_failed" and r.payload["facts"]["chargeId"] == "c2"]
    assert routine and critical
    _queues(uow).sent.clear()
    assert send_email(uow, mailer, SETTINGS, "acc-1", routine[0], budget=budget) == "paced"
    assert send_email(uow, mailer, SETTINGS, "acc-1", critical[0], budget=budget) == "paced"
    [(r_body, r_at), (c_body, _c_at)] = _handoffs(uow)
    assert "slot" not in r_body  # no slot taken: it asks again when the backlog has drained
    assert "slot" in c_body and r_at >= NOW + timedelta(seconds=20 * pace.interval - pace.routine_horizon)
    critical_slot = read_email_handoff(json.dumps(c_body)).slot
    assert critical_slot is not None
    body, at = r_body, r_at
    for _ in range(20):  # the routine email comes back and asks again until it has a slot, then goes
        _queues(uow).sent.clear()
        uow.clock.advance_to(at)  # type: ignore[attr-defined]
        slot = read_email_handoff(json.dumps(body)).slot
        if send_email(uow, mailer, SETTINGS, "acc-1", routine[0], budget=budget, slot=slot) == "sent":
            break
        [(body, at)] = _handoffs(uow)
    assert routine[0] in mailer.sent and uow.clock.now() > critical_slot  # the critical one went first


def test_with_headroom_a_routine_email_takes_a_slot_at_once() -> None:
    pace = pace_for(30, None)
    assert pace is not None
    state, at, reserved = reserve(BudgetState(), pace, 1000.0, critical=False)
    assert reserved and at == 1000.0 and state.tat == 1000.0 + pace.interval
    turns = []
    state = BudgetState(tat=1000.0 + 100 * pace.interval)
    for _ in range(3):
        state, at, reserved = reserve(state, pace, 1000.0, critical=False)
        assert not reserved
        turns.append(at)
    assert turns[1] - turns[0] == pytest.approx(pace.interval)  # spread out: no herd coming back at once


# -- the shared back-off (issue 21, a 429 holds every instance) ---------------------------------------


def test_no_slot_is_given_before_the_hold_and_the_pace_goes_on_after_it() -> None:
    pace = pace_for(600, None)
    assert pace is not None
    state, at, reserved = reserve(BudgetState(tat=1000.0, hold=1005.0), pace, 1000.0, critical=True)
    assert reserved and at == 1005.0 and state.tat == 1005.0 + pace.interval and state.hold == 1005.0
    _, at, _ = reserve(state, pace, 1000.0, critical=True)
    assert at == 1005.0 + pace.interval  # spaced one interval after the hold: no burst when it ends
    # A hold further ahead than the routine horizon is a backlog for a routine email: a turn, no slot.
    _, turn, reserved = reserve(BudgetState(hold=1100.0), pace, 1000.0, critical=False)
    assert not reserved and turn == 1100.0 - pace.routine_horizon
    # A hold that has passed changes nothing.
    assert reserve(BudgetState(hold=900.0), pace, 1000.0, critical=True)[1:] == (1000.0, True)


def test_without_a_quota_a_reservation_is_only_the_end_of_the_hold_and_writes_nothing() -> None:
    state = BudgetState(hold=1003.0)
    assert reserve(state, None, 1000.0, critical=True) == (state, 1003.0, False)
    assert reserve(state, None, 1010.0, critical=False) == (state, 1010.0, False)
    assert reserve(BudgetState(), None, 1000.0, critical=True) == (BudgetState(), 1000.0, False)


def test_the_hold_only_moves_forward_and_one_about_as_long_is_not_written_again() -> None:
    state = BudgetState(tat=5.0, routine=6.0, hold=1000.0)
    assert hold_until(state, 1010.0) == BudgetState(5.0, 6.0, 1010.0)  # the pace is kept
    assert hold_until(state, 990.0) is None  # never backwards
    assert hold_until(state, 1000.0 + HOLD_SLACK) is None  # sends throttled together: the first one wrote
    assert hold_until(state, 1000.0 + HOLD_SLACK + 0.01) is not None
    assert hold_until(BudgetState(), 1.5) == BudgetState(hold=1.5)


# -- a passing failure (a 5xx naming no wait): the email's own back-off -----------------------------


def test_a_passing_failure_backs_off_exponentially_up_to_a_cap() -> None:
    waits, due_for = [], timedelta(0)
    while due_for < timedelta(hours=72):  # the email service down for the whole give-up time
        wait = transient_retry_in(due_for, 0.0)
        waits.append(wait)
        due_for += wait
    assert [w.total_seconds() for w in waits[:8]] == [5, 5, 10, 20, 40, 80, 160, 320]  # doubling
    assert waits[0] == RETRY_FLOOR and max(waits) == RETRY_CAP == waits[-1]
    assert 400 < len(waits) < 450  # about six tries an hour once at the cap, never a tight loop
    for spread in (0.0, 0.3, 0.999, 1.0, -1.0, 7.0):  # at most half taken off, whatever the random draw
        assert RETRY_FLOOR / 2 <= transient_retry_in(timedelta(0), spread) <= RETRY_FLOOR
        assert RETRY_CAP / 2 <= transient_retry_in(timedelta(days=2), spread) <= RETRY_CAP
    assert transient_retry_in(timedelta(seconds=40), 0.5) == timedelta(seconds=30)
