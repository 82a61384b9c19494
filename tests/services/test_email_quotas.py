"""Issue 21's gaps, through `send_email` on the twins: a 429 holds every instance (the shared budget
row's hold, with a quota and without), a put-back carries the trace, and a passing failure (a 5xx
naming no wait) is put back with a growing back-off instead of using up the dequeue count."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from shared import telemetry
from shared.adapters.store.email_budget import Pace, pace_for
from shared.domain.facts import ChargeFailed
from shared.domain.mail_retry import transient_retry_in
from shared.domain.money import Money
from shared.services.dispatch import read_email_handoff
from shared.services.email import EmailOutcome, send_email
from shared.services.unit_of_work import UnitOfWork, apply_event
from shared.services.views import account_view
from shared.settings import Settings
from tests.fakes.email_budget import InMemoryEmailBudget
from tests.fakes.mailer import FakeMailer
from tests.fakes.queues import InMemoryQueues
from tests.services.conftest import ACC, NOW, pending_emails, register

PACE = pace_for(600, None)
assert PACE is not None
WAIT = timedelta(seconds=30)
TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "billing=t21"}


def fail(uow: UnitOfWork, *charges: str) -> list[str]:
    """Failed charges on `ACC` (two contacts: two emails each); the email keys, the hand-offs the
    dispatcher made cleared."""
    for cid in charges:
        apply_event(uow, ChargeFailed(f"evt-{cid}", ACC, "s1", cid, Money.parse("10.00", "USD"), "card_declined"),
                    "billing.charge.failed")
    queues(uow).sent.clear()
    return pending_emails(uow)


def queues(uow: UnitOfWork) -> InMemoryQueues:
    assert isinstance(uow.queues, InMemoryQueues)
    return uow.queues


def put_backs(uow: UnitOfWork, *, clear: bool = True) -> list[tuple[dict[str, Any], datetime]]:
    got = [(json.loads(m.text), m.visible_at) for m in queues(uow).sent if m.role == "email-outbox"]
    if clear:
        queues(uow).sent.clear()
    return got


def slot_of(body: dict[str, Any]) -> datetime | None:
    return read_email_handoff(json.dumps(body)).slot


def drain(uow: UnitOfWork, mailer: FakeMailer, settings: Settings, budgets: list[InMemoryEmailBudget],
          handoffs: list[tuple[dict[str, Any], datetime]]) -> dict[str, datetime]:
    """Deliver the hand-offs as the queue would, each when it becomes visible, to the instances in
    turn, until none is left; when each email was sent."""
    sent: dict[str, datetime] = {}
    waiting = list(handoffs)
    for n in range(500):
        if not waiting:
            return sent
        waiting.sort(key=lambda h: h[1])
        body, at = waiting.pop(0)
        uow.clock.advance_to(max(at, uow.clock.now()))  # type: ignore[attr-defined]
        outcome = send_email(uow, mailer, settings, ACC, body["key"], budget=budgets[n % len(budgets)],
                             slot=slot_of(body))
        if outcome == "sent":
            sent[body["key"]] = uow.clock.now()
        waiting += put_backs(uow)
    raise AssertionError("the hand-offs never drained")


# -- a 429 holds every instance ----------------------------------------------------------------------


def test_after_a_429_no_instance_sends_before_the_time_named(uow: UnitOfWork, settings: Settings) -> None:
    register(uow)
    e1, e2, e3, e4 = fail(uow, "c1", "c2")
    a = InMemoryEmailBudget(PACE, uow.clock.now)
    b = a.instance()
    mailer = FakeMailer()
    mailer.throttle_next, mailer.retry_after = 1, WAIT
    assert send_email(uow, mailer, settings, ACC, e1, budget=a) == "throttled"
    assert a.state.hold == (NOW + WAIT).timestamp()  # the row: every instance's hold
    [(body, visible_at)] = put_backs(uow)
    assert slot_of(body) == NOW + WAIT and visible_at == NOW + WAIT  # its next slot is the hold's first
    # Another instance reserving now reads the hold (its stale write is refused): no send before it.
    assert send_email(uow, mailer, settings, ACC, e2, budget=b) == "paced"
    assert send_email(uow, mailer, settings, ACC, e3, budget=a) == "paced"
    assert send_email(uow, mailer, settings, ACC, e4, budget=b) == "paced"
    assert mailer.attempts == 1  # one 429, not one per email
    later = put_backs(uow)
    assert all(slot_of(h) is not None and slot_of(h) >= NOW + WAIT for h, _ in later)  # type: ignore[operator]
    sent = drain(uow, mailer, settings, [a, b], [(body, visible_at), *later])
    assert sorted(sent) == sorted([e1, e2, e3, e4]) and set(mailer.sent) == set(sent)
    assert min(sent.values()) >= NOW + WAIT and mailer.attempts == 5  # each sent once, after the hold


def test_a_slot_reserved_before_the_429_is_given_up_by_an_instance_that_knows_of_it(
        uow: UnitOfWork, settings: Settings) -> None:
    register(uow)
    e1, e2, e3, e4 = fail(uow, "c1", "c2")
    a = InMemoryEmailBudget(PACE, uow.clock.now)
    b = a.instance()
    for _ in range(20):  # a backlog of two seconds: the next emails hold slots after it
        b.reserve(critical=True)
    mailer = FakeMailer()
    for key, budget in ((e1, a), (e2, a), (e3, b)):
        assert send_email(uow, mailer, settings, ACC, key, budget=budget) == "paced"
    slots = {h["key"]: slot_of(h) for h, _ in put_backs(uow)}
    uow.clock.advance_to(max(s for s in slots.values() if s is not None))  # type: ignore[attr-defined]
    now = uow.clock.now()
    mailer.throttle_next, mailer.retry_after = 1, WAIT
    assert send_email(uow, mailer, settings, ACC, e1, budget=a, slot=slots[e1]) == "throttled"
    requests = a.requests
    # a knows of the hold: its email's slot, now inside it, is not used; it takes a new one after.
    assert send_email(uow, mailer, settings, ACC, e2, budget=a, slot=slots[e2]) == "paced"
    assert mailer.attempts == 1 and a.requests == requests + 1  # one reservation, nothing read to check
    # b has not touched the row since: checking its email's slot costs nothing and finds no hold, so
    # the send goes and draws the 429 the service now answers everyone; b backs off with the others.
    mailer.throttle_next = 1
    assert send_email(uow, mailer, settings, ACC, e3, budget=b, slot=slots[e3]) == "throttled"
    assert mailer.attempts == 2 and b.held_until() is not None and b.held_until() >= now + WAIT  # type: ignore[operator]
    assert send_email(uow, mailer, settings, ACC, e4, budget=b) == "paced"
    assert mailer.attempts == 2  # from then on b waits too, without asking the service
    sent = drain(uow, mailer, settings, [b, a], put_backs(uow))
    assert sorted(sent) == sorted([e1, e2, e3, e4]) and min(sent.values()) >= now + WAIT


def test_without_a_quota_the_row_carries_the_hold_alone_and_costs_nothing_until_a_429(
        uow: UnitOfWork, settings: Settings) -> None:
    register(uow)
    e1, e2, e3, e4 = fail(uow, "c1", "c2")
    a = InMemoryEmailBudget(None, uow.clock.now)
    b = a.instance()
    mailer = FakeMailer()
    assert send_email(uow, mailer, settings, ACC, e1, budget=a) == "sent"
    assert a.requests == 0 and a.row.state is None  # nothing throttled: no request, no row
    mailer.throttle_next, mailer.retry_after = 1, WAIT
    assert send_email(uow, mailer, settings, ACC, e2, budget=a) == "throttled"
    assert a.requests == 2 and a.state.hold == (NOW + WAIT).timestamp()  # a read (no row) and a create
    [(body, visible_at)] = put_backs(uow)
    assert "slot" not in body and visible_at == NOW + WAIT  # no quota, no slot: it asks again then
    assert send_email(uow, mailer, settings, ACC, e3, budget=a) == "paced"  # the hold known here: no send
    assert mailer.attempts == 2 and a.requests == 2
    uow.clock.advance_to(NOW + timedelta(seconds=10))  # type: ignore[attr-defined]
    mailer.throttle_next, mailer.retry_after = 1, timedelta(seconds=20)  # ACS: the same end, from later
    assert send_email(uow, mailer, settings, ACC, e4, budget=b) == "throttled"  # b learns from its own 429
    assert b.requests == 1 and b.held_until() == NOW + WAIT  # read: the row holds as long already
    sent = drain(uow, mailer, settings, [a, b], [(body, visible_at), *put_backs(uow)])
    assert sorted(sent) == sorted([e2, e3, e4]) and min(sent.values()) >= NOW + WAIT
    assert len(mailer.sent) == 4


def test_storage_failing_the_hold_still_puts_the_email_back_for_the_time_named(
        uow: UnitOfWork, settings: Settings) -> None:
    class Unwritable(InMemoryEmailBudget):
        def back_off(self, until: datetime) -> bool:
            raise RuntimeError("storage unavailable")

    register(uow)
    [first, _] = fail(uow, "c1")
    mailer = FakeMailer()
    mailer.throttle_next, mailer.retry_after = 1, WAIT
    assert send_email(uow, mailer, settings, ACC, first, budget=Unwritable(PACE, uow.clock.now)) == "throttled"
    [(body, visible_at)] = put_backs(uow)
    assert visible_at == NOW + WAIT and "slot" not in body  # it reserves again when it comes back


# -- the trace goes on with every put-back --------------------------------------------------------------


class Message:
    id = "m-1"

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = json.dumps(body).encode()

    def get_body(self) -> bytes:
        return self.body


@telemetry.queue_function("email-outbox")
def outbox(msg: Message, uow: UnitOfWork, mailer: FakeMailer, settings: Settings,
           budget: InMemoryEmailBudget | None) -> EmailOutcome:
    """What `functions/email_outbox.py` does with a hand-off, under the same trace decorator."""
    handoff = read_email_handoff(msg.get_body())
    return send_email(uow, mailer, settings, handoff.account_id, handoff.key, budget=budget, slot=handoff.slot)


@pytest.mark.parametrize("why", ["throttled", "paced", "retrying"])
def test_a_put_back_carries_the_trace_of_the_hand_off(uow: UnitOfWork, settings: Settings, why: str) -> None:
    register(uow)
    [first, _] = fail(uow, "c1")
    mailer, budget = FakeMailer(), InMemoryEmailBudget(PACE, uow.clock.now)
    if why == "paced":
        for _ in range(200):  # 20 s of slots taken
            budget.reserve(critical=True)
    mailer.throttle_next, mailer.fail_next = (0, 2) if why == "retrying" else (2, 0)
    body: dict[str, Any] = {"accountId": ACC, "key": first, **TRACE}
    # The put-back's put-back too (a paced email throttled in its slot): one trace however many times.
    for outcome in (why, "throttled" if why == "paced" else why):
        assert outbox(Message(body), uow, mailer, settings, budget) == outcome
        [(body, at)] = put_backs(uow)
        assert {k: body[k] for k in TRACE} == TRACE
        uow.clock.advance_to(at)  # type: ignore[attr-defined]
    body = {"accountId": ACC, "key": first}  # a hand-off without a trace: none is made up
    mailer.throttle_next = 1
    assert outbox(Message(body), uow, mailer, settings, None) == "throttled"
    [(body, _)] = put_backs(uow)
    assert "traceparent" not in body


# -- a passing failure: the email's own back-off, never the dequeue count -----------------------------


def _alerts(uow: UnitOfWork) -> list[str]:
    return [a["code"] for a in account_view(uow.accounts.load(ACC).account, uow.policy)["alerts"]]


@pytest.mark.parametrize("pace", [None, PACE])
def test_a_passing_failure_is_tried_again_after_a_growing_back_off_until_it_goes(
        uow: UnitOfWork, settings: Settings, pace: Pace | None) -> None:
    register(uow)
    [first, _] = fail(uow, "c1")
    budget = InMemoryEmailBudget(pace, uow.clock.now)
    mailer = FakeMailer()
    mailer.fail_next = 8
    waits = []
    for _ in range(8):
        due_for = uow.clock.now() - NOW
        assert send_email(uow, mailer, settings, ACC, first, budget=budget) == "retrying"  # no raise: no dequeue
        [(body, at)] = put_backs(uow)
        wait = at - uow.clock.now()
        most = transient_retry_in(due_for, 0.0)
        assert most / 2 <= wait <= most + timedelta(seconds=1)  # whole seconds, rounded up
        assert "slot" not in body  # its slot was spent: it takes a new one when it comes back
        waits.append(wait)
        uow.clock.advance_to(at)  # type: ignore[attr-defined]
    assert waits[-1] >= 4 * waits[0]  # it grew (a dead service is not hammered)
    assert budget.state.hold == 0.0  # one email's failure holds nobody else
    assert send_email(uow, mailer, settings, ACC, first, budget=budget) == "sent"
    assert list(mailer.sent) == [first] and mailer.attempts == 9
    assert "email_failed" not in [e["kind"] for e in uow.accounts.timeline(ACC)]


def test_a_passing_failure_is_given_up_only_after_the_give_up_time(uow: UnitOfWork, settings: Settings) -> None:
    register(uow)
    [first, _] = fail(uow, "c1")
    mailer = FakeMailer()
    mailer.fail_next = 2
    uow.clock.advance_to(NOW + timedelta(hours=71, minutes=59))  # type: ignore[attr-defined]
    assert send_email(uow, mailer, settings, ACC, first) == "retrying"
    [(_, at)] = put_backs(uow)
    assert at - uow.clock.now() <= timedelta(minutes=10)  # the cap
    uow.clock.advance_to(NOW + timedelta(hours=72))  # type: ignore[attr-defined]
    assert send_email(uow, mailer, settings, ACC, first) == "failed"
    [failed] = [e for e in uow.accounts.timeline(ACC) if e["kind"] == "email_failed"]
    assert "failed by the email service again and again for 72 hours" in failed["detail"]
    assert "email_undelivered" in _alerts(uow) and "contact_unreachable" not in _alerts(uow)
    assert put_backs(uow) == []
