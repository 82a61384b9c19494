"""The storage ports the services use, besides the account partition (`AccountRepository` in
`account_store.py`): the cross-account indexes, the address index, the dead letters and the
account leases. Each has its Table Storage implementation in this folder and an in-memory twin
in `tests/fakes/`, held to one contract suite (`tests/contract/`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

from shared.adapters.store.indexes import DueEntry, Ladder
from shared.adapters.store.leases import Leases as Leases
from shared.adapters.store.system import DeadLetterCursor, DeadLetterPage


class DueIndexes(Protocol):
    """When each account next has dunning or retention work, and which have disabled subscriptions
    (`indexes.py`). Entries are hints: the sweeps check each against the account."""

    def mark_due(self, account_id: str, at: datetime, ladder: Ladder = "due") -> None: ...
    def due(self, now: datetime, ladder: Ladder = "due") -> list[DueEntry]: ...
    def unclaimed(self, now: datetime, ladder: Ladder | Literal["disabled"]) -> Iterator[list[DueEntry]]: ...
    def claim(self, entries: Sequence[DueEntry], until: datetime) -> None: ...
    def done(self, entry: DueEntry) -> None: ...
    def set_disabled(self, account_id: str, present: bool) -> None: ...
    def disabled(self) -> list[str]: ...


class ContactDirectory(Protocol):
    """Which accounts list an address as a billing contact (`contact_index.py`)."""

    def accounts(self, address: str) -> list[str]: ...
    def update(self, address: str, account_id: str, listed: bool, revision: int) -> None: ...


class DeadLetterStore(Protocol):
    """Messages that could not be applied, kept whole with their reason (`system.py`)."""

    def add(self, *, source: str, reason: str, body: bytes | str, received_at: datetime,
            message_id: str | None) -> None: ...
    def page(self, limit: int, after: DeadLetterCursor | None) -> DeadLetterPage: ...
    def get(self, item_id: str) -> dict[str, Any] | None: ...
    def mark_replayed(self, item_id: str, at: datetime) -> None: ...
