"""The email budget in memory: the twin of `shared.adapters.store.email_budget.TableEmailBudget`,
on the same pure `reserve` and `hold_until`, with a clock the test moves.

One `InMemoryBudgetRow` stands for the row, its version for the ETag; each `InMemoryEmailBudget`
is one process (instance) on it, with what that process saw of the row last, as the adapter keeps
it: a reservation or back-off tried on a stale copy is a conflict (the adapter's 412), read again.
So an instance knows of another's hold only once it touches the row, as in production, and
`requests` counts the reads and writes the adapter would make, conflicts included."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from shared.adapters.store.email_budget import (
    MAX_CONFLICTS,
    BudgetState,
    Pace,
    Slot,
    hold_time,
    move_hold,
    reserve,
    slot_at,
)


class InMemoryBudgetRow:
    """The shared row: its state (None: not written yet) and a version that changes on every write."""

    def __init__(self) -> None:
        self.state: BudgetState | None = None
        self.version = 0
        self.lock = threading.Lock()


class InMemoryEmailBudget:
    def __init__(self, pace: Pace | None, now: Callable[[], datetime], row: InMemoryBudgetRow | None = None) -> None:
        self.pace = pace
        self.clock = now
        self.row = row if row is not None else InMemoryBudgetRow()
        self._seen: tuple[BudgetState, int] | None = None
        self._hold = 0.0
        self._lock = threading.RLock()
        self.requests = 0
        """The reads and writes the Table adapter would make (a conflict included)."""
        self.reservations: list[tuple[bool, Slot]] = []
        """Every answer given, with whether it was for a time-critical email."""
        self.holds: list[datetime] = []
        """Every hold this instance wrote to the row."""

    def instance(self, pace: Pace | None = None) -> InMemoryEmailBudget:
        """Another process on the same row (with this one's pace unless told another)."""
        return InMemoryEmailBudget(pace if pace is not None else self.pace, self.clock, self.row)

    @property
    def state(self) -> BudgetState:
        """The row as stored (what every instance would read)."""
        return self.row.state or BudgetState()

    def now(self) -> datetime:
        return self.clock()

    def held_until(self) -> datetime | None:
        return hold_time(self._hold)

    def reserve(self, *, critical: bool) -> Slot:
        with self._lock:
            now = self.clock().timestamp()
            if self.pace is None:  # no request: the hold this process knows of, or now
                _, at, reserved = reserve(BudgetState(hold=self._hold), None, now, critical=critical)
                slot = slot_at(at, reserved, now)
            else:
                for _ in range(MAX_CONFLICTS):
                    seen = self._seen or self._read()
                    state, at, reserved = reserve(seen[0] if seen else BudgetState(), self.pace, now,
                                                  critical=critical)
                    if self._write(state, seen[1] if seen else None):
                        break
                else:
                    raise RuntimeError("the email budget row stayed contended")
                slot = slot_at(at, reserved, now)
            self.reservations.append((critical, slot))
            return slot

    def back_off(self, until: datetime) -> bool:
        with self._lock:
            moved = move_hold(until.timestamp(), lambda: self._hold, lambda: self._seen or self._read(), self._write)
        if moved:
            self.holds.append(until)
        return moved

    def _note(self, state: BudgetState, version: int) -> None:
        self._seen = (state, version)
        self._hold = max(self._hold, state.hold)

    def _read(self) -> tuple[BudgetState, int] | None:
        self.requests += 1
        with self.row.lock:
            if self.row.state is None:
                return None
            state, version = self.row.state, self.row.version
        self._note(state, version)
        return state, version

    def _write(self, state: BudgetState, version: int | None) -> bool:
        """A conditional write: `version` None creates the row (a conflict if it exists)."""
        self.requests += 1
        with self.row.lock:
            exists = self.row.state is not None
            if (version is None and exists) or (version is not None and (not exists or version != self.row.version)):
                self._seen = None
                return False
            self.row.state, self.row.version = state, self.row.version + 1
            written = self.row.version
        self._note(state, written)
        return True
