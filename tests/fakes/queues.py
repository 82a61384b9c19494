"""Queues in memory: the twin of `shared.adapters.queues.storage.StorageQueues`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.adapters.queues.protocol import QueueRole


@dataclass(frozen=True)
class Sent:
    role: QueueRole
    text: str
    visible_at: datetime


class InMemoryQueues:
    """Keeps every message sent, with when it becomes visible by `now` (the unit of work's clock)."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self.now = now
        self.sent: list[Sent] = []

    def send(self, role: QueueRole, text: str, *, visible_in: timedelta | None = None) -> None:
        if len(text) > 65_536:
            raise ValueError(f"a queue message holds at most 65,536 characters, not {len(text)}")
        self.sent.append(Sent(role, text, self.now() + (visible_in or timedelta(0))))

    def texts(self, role: QueueRole) -> list[str]:
        return [m.text for m in self.sent if m.role == role]

    def take(self, role: QueueRole) -> list[str]:
        """The visible messages of `role`, removed (as a receive and delete would)."""
        now = self.now()
        taken = [m for m in self.sent if m.role == role and m.visible_at <= now]
        self.sent = [m for m in self.sent if m not in taken]
        return [m.text for m in taken]
