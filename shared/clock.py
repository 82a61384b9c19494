"""The one clock every function reads.

In production it is the system clock. Where the app setting `BILLING_TEST_CLOCK` is `enabled`,
`PUT /api/testing/clock` stores a frozen instant in Table Storage and every function on every
instance reads it, so a whole dunning cycle can be played in seconds (Stripe's test clocks).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """A timezone-aware UTC instant."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that says what it is told: for unit tests and for the stored test clock."""

    def __init__(self, at: datetime) -> None:
        self.at = ensure_utc(at)

    def now(self) -> datetime:
        return self.at

    def advance_to(self, at: datetime) -> None:
        self.at = ensure_utc(at)


def ensure_utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("a naive datetime has no place in billing: give it a UTC offset")
    return at.astimezone(UTC)
