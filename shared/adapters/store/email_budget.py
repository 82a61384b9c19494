"""Pacing email sends to the email service's quota, shared by every instance (`EMAIL_QUOTA_PER_MINUTE`,
`EMAIL_QUOTA_PER_HOUR`), and backing every instance off when the service says so: one budget row in
the system table, `emailbudget`/`budget`, under its ETag.

The budget is GCRA (the generic cell rate algorithm) in its reservation form: the row holds `tat`,
the theoretical arrival time of the next send (the earliest free slot). Reserving takes the slot
`max(now, tat, hold)` and moves `tat` one interval on. The interval is the tighter of the two windows,
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

**The shared back-off** (`hold`). When the email service answers 429 (or 503 with `Retry-After`),
the instance that got it moves the row's `hold` to the time the service named (`back_off`): a
conditional replace under the ETag; a race lost (412) is read again and retried, unless the row
read then holds as long already (within `HOLD_SLACK`), in which case there is nothing to write. The
hold only ever moves forward, so whatever an instance knows of it is a safe lower bound. No slot
is given before the hold, so every instance that reserves afterwards learns it for free: its
conditional write with a stale ETag fails (412), and the read that follows carries the hold. An
email that reserved its slot before (`held_until`) is checked against what this process knows, with
no request: a process learns of another's hold when it next reserves, or when its own send draws a
429. Without a quota (`pace` None) the row carries the hold alone: nothing is read or written while
nothing is throttled, and a send waits only for a hold this process knows of.

Storage cost per reservation: one conditional replace of the row with the ETag this process saw
last (its own threads never race each other for it); another instance's
reservation since then costs a 412, a read and a second replace. The threads of one process that
ask at once are served together, by one write (group commit). So at most 1 request per email with
one instance sending (fewer on a busy host), about 3 with several, and nothing at all when no quota
is set (the row is then written only on a 429: a read and a replace, or nothing when the hold
known already covers it).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

BUDGET_PK, BUDGET_RK = "emailbudget", "budget"
SEND_DELAY = 2.0
"""Seconds a send may come after its slot without putting a quota window over (see the module)."""
ROUTINE_HORIZON = 10.0
"""Seconds of reserved slots ahead within which a routine email still takes one."""
HOLD_SLACK = 1.0
"""Seconds by which a back-off may go past the hold already known without being written: the
sends throttled together name about the same time (`Retry-After` is whole seconds), so the first
one writes and the others cost nothing."""
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
    """What the budget row holds, in seconds since the epoch: the next free slot (`tat`), the next
    turn in the routine lane (`routine`), and the time before which no instance sends (`hold`,
    the latest the email service named when it throttled one of them; 0: none)."""

    tat: float = 0.0
    routine: float = 0.0
    hold: float = 0.0


@dataclass(frozen=True)
class Slot:
    """When the email may go. `reserved`: the slot at `at` is the email's own (send then without
    asking again); else it is a routine email's turn to ask again at `at` (without a quota: the
    end of the hold, or now). `wait` is `at - now` (zero: send now)."""

    at: datetime
    reserved: bool
    wait: timedelta


def reserve(state: BudgetState, pace: Pace | None, now: float, *,
            critical: bool) -> tuple[BudgetState, float, bool]:
    """The budget after one reservation, the slot's time, and whether it is a slot (True) or a
    turn to ask again (False). Never before the hold. Without a pace there are no slots: the
    answer is the end of the hold (or now), as a turn, and the state is unchanged. Pure: the Table
    adapter and the twin share it."""
    free = max(now, state.hold)
    if pace is None:
        return state, free, False
    slot = max(free, state.tat)
    if critical or slot - now <= pace.routine_horizon:
        return replace(state, tat=slot + pace.interval), slot, True
    turn = max(state.routine, now, slot - pace.routine_horizon)
    return replace(state, routine=turn + pace.interval), turn, False


def hold_until(state: BudgetState, until: float, slack: float = HOLD_SLACK) -> BudgetState | None:
    """The budget once the email service asked every sender to wait until `until`, or None when
    its hold already lasts that long (within `slack`): nothing to write. The hold never moves back."""
    if state.hold >= until - slack:
        return None
    return replace(state, hold=until)


TagT = TypeVar("TagT")


def move_hold(at: float, known: Callable[[], float], seen: Callable[[], tuple[BudgetState, TagT] | None],
              write: Callable[[BudgetState, TagT | None], bool], pause: Callable[[], None] = lambda: None) -> bool:
    """Move a budget row's hold to cover `at` (epoch seconds), as `EmailBudget.back_off` says:
    False without a write when the hold `known` to this process, or the row `seen` (the last copy
    kept, or read now), covers it already; True once `write` (conditional on the row's tag) took.
    A write lost to a race is `pause`d after and tried again on a fresh read. Raises `RuntimeError`
    after `MAX_CONFLICTS` lost races."""
    for _ in range(MAX_CONFLICTS):
        if hold_until(BudgetState(hold=known()), at) is None:
            return False
        row = seen()
        moved = hold_until(row[0] if row else BudgetState(), at)
        if moved is None:
            return False  # another instance's hold, just read, covers it
        if write(moved, row[1] if row else None):
            return True
        pause()
    raise RuntimeError(f"the email budget row stayed contended for {MAX_CONFLICTS} tries")


class EmailBudget(Protocol):
    """The shared send budget: which slot an email may take (`reserve`), the shared back-off
    (`back_off`, `held_until`), on the budget's own clock (`now`: real time, which the email
    service's quota counts in, never the test clock)."""

    def reserve(self, *, critical: bool) -> Slot:
        """Take the next slot (or, for a routine email under a backlog, a turn to ask again);
        without a quota, the end of the hold known (no request)."""
        ...

    def held_until(self) -> datetime | None:
        """The latest hold this process knows of, without a request (None: none known)."""
        ...

    def back_off(self, until: datetime) -> bool:
        """No instance sends before `until` (the service's `Retry-After`): the row's hold moves
        there unless it holds that long already. True if this call moved it."""
        ...

    def now(self) -> datetime: ...


def slot_at(at: float, reserved: bool, now: float) -> Slot:
    return Slot(datetime.fromtimestamp(at, UTC), reserved, timedelta(seconds=max(at - now, 0.0)))


def hold_time(hold: float) -> datetime | None:
    return datetime.fromtimestamp(hold, UTC) if hold > 0 else None


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
    """`EmailBudget` on one row of the system table, read and replaced under its ETag. `pace` None:
    no quota, the row carries only the shared back-off."""

    def __init__(self, table: TableClient, pace: Pace | None, clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self.pace = pace
        self.clock = clock
        self._cond = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._leading = False
        self._backing = threading.Lock()
        self._mutex = threading.Lock()
        self._seen: tuple[BudgetState, str] | None = None
        """The row as this process last wrote or read it, with its ETag: tried first, saving a read."""
        self._hold = 0.0
        """The latest hold this process has seen (the hold only moves forward)."""
        self.requests = 0
        """Table requests made (reads and writes, a 412 included): what the budget costs."""

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def held_until(self) -> datetime | None:
        return hold_time(self._hold)

    def reserve(self, *, critical: bool) -> Slot:
        """Group commit: the threads of this process asking at once are served by one of them with
        one conditional write for all (so a busy host costs less than one request per email, and
        no thread queues behind the others' round trips). Without a pace, no request at all."""
        if self.pace is None:
            now = self.clock()
            _, at, reserved = reserve(BudgetState(hold=self._hold), None, now, critical=critical)
            return slot_at(at, reserved, now)
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

    def back_off(self, until: datetime) -> bool:
        """A hold this process knows to cover `until` costs nothing; else the row is replaced under
        the ETag seen last (or read first). A race lost is read again: another instance's hold
        that covers `until` ends it (nothing to write), else the write is tried again. The threads
        of this process back off one at a time, so they never race each other for the row."""
        with self._backing:
            return move_hold(until.timestamp(), lambda: self._hold, lambda: self._seen or self._read(), self._write,
                             lambda: time.sleep(random.uniform(0, 0.01)))

    def _note(self, state: BudgetState, etag: str | None) -> None:
        with self._mutex:
            self._seen = None if etag is None else (state, etag)
            self._hold = max(self._hold, state.hold)

    def _count(self) -> None:
        with self._mutex:
            self.requests += 1

    def _read(self) -> tuple[BudgetState, str] | None:
        self._count()
        try:
            row = self.table.get_entity(BUDGET_PK, BUDGET_RK)
        except ResourceNotFoundError:
            return None
        state = BudgetState(*(_seconds(row.get(name)) for name in ("tat", "routine", "hold")))
        etag = str(row.metadata["etag"])
        self._note(state, etag)
        return state, etag

    def _write(self, state: BudgetState, etag: str | None) -> bool:
        entity: dict[str, Any] = {"PartitionKey": BUDGET_PK, "RowKey": BUDGET_RK, "tat": _time(state.tat),
                                  "routine": _time(state.routine), "hold": _time(state.hold)}
        self._count()
        try:
            if etag is None:
                meta = self.table.create_entity(entity)
            else:
                meta = self.table.update_entity(entity, mode=UpdateMode.REPLACE, etag=etag,
                                                match_condition=MatchConditions.IfNotModified)
        except HttpResponseError as exc:
            if exc.status_code not in (404, 409, 412):  # gone, created meanwhile, changed meanwhile
                raise
            with self._mutex:
                self._seen = None
            return False
        self._note(state, str(meta["etag"]))
        return True


def _time(seconds: float) -> datetime:
    """A budget time as the row keeps it: an Edm.DateTime in UTC (to the microsecond), as every
    time the product stores; never a bare number, which reads as digits to anything scanning
    stored text (a 16-digit epoch can pass the Luhn check a card number does)."""
    return datetime.fromtimestamp(seconds, UTC)


def _seconds(value: object) -> float:
    """A budget time read back, in seconds since the epoch (0: never set); rows written before
    times were stored as Edm.DateTime hold the seconds as a number."""
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) if isinstance(value, (int, float)) else 0.0


def budget_for(table: TableClient, per_minute: int | None, per_hour: int | None) -> TableEmailBudget:
    """The shared budget of a quota; with none set, a budget that only carries the shared back-off
    (no pacing, and no storage request until the email service throttles a send)."""
    return TableEmailBudget(table, pace_for(per_minute, per_hour))
