"""`EmailBudget` (`shared/adapters/store/email_budget.py`) and its twin: the shared back-off that a
429 writes to the budget row, and what each instance knows of it and when, at what cost (the
`requests` each makes: the twin counts the reads and writes the Table adapter makes, conflicts
included, so the request counts are part of the contract)."""

from __future__ import annotations

import itertools
import threading
from datetime import datetime, timedelta

from shared.adapters.store.email_budget import Pace, pace_for
from tests.contract.conftest import BudgetSide


def _pace() -> Pace:
    pace = pace_for(600, None)
    assert pace is not None
    return pace


PACE = _pace()


def _s(n: float) -> timedelta:
    return timedelta(seconds=n)


def test_a_back_off_holds_every_instance_that_reserves_until_the_time_named(email_budgets: BudgetSide) -> None:
    t0 = email_budgets.clock.now()
    a, b = email_budgets.instance(PACE), email_budgets.instance(PACE)
    assert a.reserve(critical=True).at == t0 and a.requests == 2  # no row yet: a read (404) and a create
    assert b.reserve(critical=True).at == t0 + _s(PACE.interval) and b.requests == 2  # a read, a replace
    assert a.back_off(t0 + _s(5))
    assert a.requests == 5  # its copy was stale (b wrote since): a 412, a read, a replace
    assert a.held_until() == t0 + _s(5)
    assert b.held_until() is None  # b has not touched the row since: it does not know yet, at no cost
    slot = b.reserve(critical=True)
    assert slot.reserved and slot.at == t0 + _s(5) and slot.wait == _s(5)  # its 412 and read told it
    assert b.held_until() == t0 + _s(5) and b.requests == 5
    c = email_budgets.instance(PACE)  # a new instance: its first reservation reads the hold
    assert c.reserve(critical=True).at == t0 + _s(5 + PACE.interval)
    routine = c.reserve(critical=False)  # 5 s ahead is within the routine horizon: a slot too
    assert routine.reserved and routine.at == t0 + _s(5 + 2 * PACE.interval)


def test_a_hold_only_moves_forward_and_one_known_to_cover_the_time_costs_nothing(email_budgets: BudgetSide) -> None:
    t0 = email_budgets.clock.now()
    a = email_budgets.instance(None)
    assert a.back_off(t0 + _s(10)) and a.requests == 2  # a read (404) and a create
    assert not a.back_off(t0 + _s(5))  # never backwards
    assert not a.back_off(t0 + _s(10.5))  # about as long (within HOLD_SLACK): the first of a burst wrote
    assert a.requests == 2  # known here: no request
    b = email_budgets.instance(None)
    assert not b.back_off(t0 + _s(7)) and b.requests == 1  # read: another instance's hold covers it
    assert b.held_until() == t0 + _s(10)
    assert b.back_off(t0 + _s(20)) and b.requests == 2  # its copy is current: one replace
    assert not a.back_off(t0 + _s(15))  # a's copy is stale: a 412, a read, and the row holds longer already
    assert a.requests == 4 and a.held_until() == t0 + _s(20)
    assert email_budgets.instance(PACE).reserve(critical=True).at == t0 + _s(20)


def test_without_a_quota_nothing_is_read_or_written_until_a_send_is_throttled(email_budgets: BudgetSide) -> None:
    t0 = email_budgets.clock.now()
    a, b = email_budgets.instance(None), email_budgets.instance(None)
    for n in range(100):
        slot = a.reserve(critical=n % 2 == 0)
        assert slot.wait == _s(0) and slot.at == t0 and not slot.reserved
    assert a.requests == 0 and a.held_until() is None
    assert a.back_off(t0 + _s(3)) and a.requests == 2
    slot = a.reserve(critical=True)
    assert (slot.at, slot.wait, slot.reserved) == (t0 + _s(3), _s(3), False)  # wait, then ask again
    assert a.requests == 2
    assert b.reserve(critical=True).wait == _s(0) and b.requests == 0  # b learns only from its own 429
    paced = email_budgets.instance(PACE)  # the row a quota would pace through is the same row
    assert paced.reserve(critical=True).at == t0 + _s(3)
    email_budgets.clock.advance_to(t0 + _s(4))
    assert a.reserve(critical=True).wait == _s(0)  # the hold has passed


def test_instances_backing_off_and_reserving_at_once_keep_the_latest_hold(email_budgets: BudgetSide) -> None:
    t0 = email_budgets.clock.now()
    instances = [email_budgets.instance(PACE) for _ in range(4)]
    for budget in instances:  # each holds a copy of the row, soon stale
        budget.reserve(critical=True)
    taken: list[tuple[int, datetime]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            instances[n].back_off(t0 + _s(2 * (n + 1)))
            for _ in range(5):
                slot = instances[n].reserve(critical=True)
                with lock:
                    taken.append((n, slot.at))
        except BaseException as exc:  # reported below: a lost race must never raise
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert all(at >= t0 + _s(2 * (n + 1)) for n, at in taken)  # none before the hold its own instance set
    slots = sorted(at for _, at in taken)
    assert len(slots) == 20 and all((b - a).total_seconds() >= PACE.interval - 1e-5
                                    for a, b in itertools.pairwise(slots))  # one pace (gaps at a hold)
    assert email_budgets.instance(PACE).reserve(critical=True).at >= t0 + _s(8)  # the latest hold won
    for budget in instances:
        assert budget.held_until() is not None
