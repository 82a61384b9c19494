"""The email budget in memory: the twin of `shared.adapters.store.email_budget.TableEmailBudget`,
on the same pure `reserve`, with a clock the test moves."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from shared.adapters.store.email_budget import BudgetState, Pace, Slot, reserve, slot_at


class InMemoryEmailBudget:
    def __init__(self, pace: Pace, now: Callable[[], datetime]) -> None:
        self.pace = pace
        self.clock = now
        self.state = BudgetState()
        self.reservations: list[tuple[bool, Slot]] = []
        """Every answer given, with whether it was for a time-critical email."""

    def now(self) -> datetime:
        return self.clock()

    def reserve(self, *, critical: bool) -> Slot:
        now = self.clock().timestamp()
        self.state, at, reserved = reserve(self.state, self.pace, now, critical=critical)
        slot = slot_at(at, reserved, now)
        self.reservations.append((critical, slot))
        return slot
