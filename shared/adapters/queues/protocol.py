"""The queues the product sends to, by their role (the queue names themselves are settings)."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, Protocol

QueueRole = Literal["payment-events", "subscription-lifecycle", "email-outbox", "sweep-work", "sweep-pages"]
"""`payment-events` (replays of dead letters), `subscription-lifecycle` (contract §4),
`email-outbox` (hand-offs to the email sender), `sweep-pages` and `sweep-work` (the sweeps)."""


class Queues(Protocol):
    def send(self, role: QueueRole, text: str, *, visible_in: timedelta | None = None) -> None:
        """Put `text` (at most 64 KiB of it, as a Storage queue holds) on the queue of `role`,
        visible at once or after `visible_in`. Raises the adapter's error when the queue cannot
        take it (the caller's invocation fails and is retried)."""
        ...
