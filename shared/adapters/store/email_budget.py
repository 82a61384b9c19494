"""Pacing email sends to the email service's quota, shared by every instance (`EMAIL_QUOTA_PER_MINUTE`,
`EMAIL_QUOTA_PER_HOUR`): one budget row in the system table, `emailbudget`/`budget`, under its ETag.

The budget is GCRA (the generic cell rate algorithm) in its reservation form: the row holds `tat`,
the theoretical arrival time of the next send (the earliest free slot). Reserving takes the slot
`max(now, tat)` and moves `tat` one interval on. The interval is the tighter of the two windows,
each widened so that a send made up to `SEND_DELAY` seconds after its slot (a queue message is
visible in whole seconds, and is picked up when a host polls) still keeps every 60-second and
3,600-second window within the quota, as ACS counts it (sliding windows over accepted sends):

    interval = max((60 + SEND_DELAY) / (perMinute - 1), (3600 + SEND_DELAY) / (perHour - 1))

(a quota of 1 paces at one send per window plus the delay). At 600 a minute that is one send every
0.1035 s, 97 % of the quota; at 30 a minute one every 2.14 s.

Time-critical emails (`shared.domain.mail.time_critical`) always take the next slot, however far
ahead. Routine ones take a slot only while the budget has headroom, that is while the next slot is
at most `routine_horizon` ahead (10 s, or two intervals if longer): under a backlog a routine email
takes no slot, but a turn in a lane of its own (`routine`, spaced one interval apart, starting
where the headroom will be), and asks again then. So a time-critical email decided during a
backlog waits behind the critical ones before it and at most `routine_horizon` of routine ones.

Storage cost per reservation: one conditional replace of the row with the ETag this process saw
last (its own threads never race each other for it); another instance's
reservation since then costs a 412, a read and a second replace. The threads of one process that
ask at once are served together, by one write (group commit). So at most 1 request per email with
one instance sending (fewer on a busy host), about 3 with several, and nothing at all when no quota
is set (no budget).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

BUDGET_PK, BUDGET_RK = "emailbudget", "budget"
SEND_DELAY = 2.0
"""Seconds a send may come after its slot without putting a quota window over (see the module)."""
ROUTINE_HORIZON = 10.0
"""Seconds of reserved slots ahead within which a routine email still takes one."""
MAX_CONFLICTS = 50


@dataclass(frozen=True)
class Pace:
    """The pacing a quota asks for: one send every `interval` seconds; routine emails take a slot
    only within `routine_horizon` seconds of now."""

    interval: float
    routine_horizon: float


def pace_for(per_minute: int | None, per_hour: int | None) -> Pace | None:
    """The pacing of a quota, or None when neither limit is set (no pacing)."""
    intervals = [(window + SEND_DELAY) / max(limit - 1, 1)
                 for window, limit in ((60.0, per_minute), (3600.0, per_hour)) if limit is not None]
    if not intervals:
        return None
    interval = max(intervals)
    return Pace(interval, max(ROUTINE_HORIZON, 2 * interval))


@dataclass(frozen=True)
class BudgetState:
    """What the budget row holds, in seconds since the epoch: the next free slot (`tat`) and the
    next turn in the routine lane (`routine`)."""

    tat: float = 0.0
    routine: float = 0.0


@dataclass(frozen=True)
class Slot:
    """When the email may go. `reserved`: the slot at `at` is the email's own (send then without
    asking again); else it is a routine email's turn to ask again at `at`. `wait` is `at - now`
    (zero: send now)."""

    at: datetime
    reserved: bool
    wait: timedelta


def reserve(state: BudgetState, pace: Pace, now: float, *, critical: bool) -> tuple[BudgetState, float, bool]:
    """The budget after one reservation, the slot's time, and whether it is a slot (True) or a
    routine email's turn to ask again (False). Pure: the Table adapter and the twin share it."""
    slot = max(now, state.tat)
    if critical or slot - now <= pace.routine_horizon:
        return replace(state, tat=slot + pace.interval), slot, True
    turn = max(state.routine, now, state.tat - pace.routine_horizon)
    return replace(state, routine=turn + pace.interval), turn, False


class EmailBudget(Protocol):
    """The shared send budget: which slot an email may take (`reserve`), on the budget's own
    clock (`now`: real time, which the email service's quota counts in, never the test clock)."""

    def reserve(self, *, critical: bool) -> Slot:
        """Take the next slot (or, for a routine email under a backlog, a turn to ask again)."""
        ...

    def now(self) -> datetime: ...


def slot_at(at: float, reserved: bool, now: float) -> Slot:
    return Slot(datetime.fromtimestamp(at, UTC), reserved, timedelta(seconds=max(at - now, 0.0)))


@dataclass
class _Ticket:
    """One thread's request in a group commit, and its answer."""

    critical: bool
    slot: Slot | None = None
    error: BaseException | None = None
    done: bool = False

    def result(self) -> Slot:
        if self.slot is None:
            raise RuntimeError("the email budget could not be reserved") from self.error
        return self.slot


class TableEmailBudget:
    """`EmailBudget` on one row of the system table, read and replaced under its ETag."""

    def __init__(self, table: TableClient, pace: Pace, clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self.pace = pace
        self.clock = clock
        self._cond = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._leading = False
        self._seen: tuple[BudgetState, str] | None = None
        """The row as this process last wrote or read it, with its ETag: tried first, saving a read."""

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def reserve(self, *, critical: bool) -> Slot:
        """Group commit: the threads of this process asking at once are served by one of them with
        one conditional write for all (so a busy host costs less than one request per email, and
        no thread queues behind the others' round trips)."""
        ticket = _Ticket(critical)
        with self._cond:
            self._waiting.append(ticket)
            while not ticket.done:
                if not self._leading:
                    self._leading = True
                    batch, self._waiting = self._waiting, []
                    break
                self._cond.wait()
            else:
                return ticket.result()
        try:
            self._reserve_all(batch)
        except BaseException as exc:
            for t in batch:
                t.error = exc
            raise
        finally:
            with self._cond:
                self._leading = False
                for t in batch:
                    t.done = True
                self._cond.notify_all()
        return ticket.result()

    def _reserve_all(self, batch: list[_Ticket]) -> None:
        for _ in range(MAX_CONFLICTS):
            seen = self._seen or self._read()
            now = self.clock()
            state = seen[0] if seen else BudgetState()
            answers = []
            for t in batch:
                state, at, reserved = reserve(state, self.pace, now, critical=t.critical)
                answers.append(slot_at(at, reserved, now))
            if self._write(state, seen[1] if seen else None):
                for t, slot in zip(batch, answers, strict=True):
                    t.slot = slot
                return
            time.sleep(random.uniform(0, 0.01))  # another instance took a slot since: read again
        raise RuntimeError(f"the email budget row stayed contended for {MAX_CONFLICTS} tries")

    def _read(self) -> tuple[BudgetState, str] | None:
        try:
            row = self.table.get_entity(BUDGET_PK, BUDGET_RK)
        except ResourceNotFoundError:
            return None
        return BudgetState(float(row.get("tat", 0.0)), float(row.get("routine", 0.0))), str(row.metadata["etag"])

    def _write(self, state: BudgetState, etag: str | None) -> bool:
        entity: dict[str, Any] = {"PartitionKey": BUDGET_PK, "RowKey": BUDGET_RK, "tat": float(state.tat),
                                  "routine": float(state.routine)}
        try:
            if etag is None:
                meta = self.table.create_entity(entity)
            else:
                meta = self.table.update_entity(entity, mode=UpdateMode.REPLACE, etag=etag,
                                                match_condition=MatchConditions.IfNotModified)
        except HttpResponseError as exc:
            if exc.status_code not in (404, 409, 412):  # gone, created meanwhile, changed meanwhile
                raise
            self._seen = None
            return False
        self._seen = (state, str(meta["etag"]))
        return True


def budget_for(table: TableClient, per_minute: int | None, per_hour: int | None) -> TableEmailBudget | None:
    """The shared budget of a quota, or None when no quota is set (no pacing, no storage cost)."""
    pace = pace_for(per_minute, per_hour)
    return None if pace is None else TableEmailBudget(table, pace)
