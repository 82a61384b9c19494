"""A dispatcher for service tests: keeps what would have left, and clears the outbox like the real one."""

from __future__ import annotations

from collections.abc import Iterable

from shared.adapters.store.account_store import AccountRepository, OutboxRow
from shared.domain.effects import UpdateIndex


class RecordingDispatcher:
    """Keeps what would have left (`sent`, `hints`), and clears the outbox like the real one."""

    def __init__(self, store: AccountRepository) -> None:
        self.store = store
        self.sent: list[OutboxRow] = []
        self.hints: list[UpdateIndex] = []

    def update_index(self, hint: UpdateIndex) -> None:
        self.hints.append(hint)

    def dispatch(self, rows: Iterable[OutboxRow]) -> None:
        rows = list(rows)
        self.sent += rows
        self.store.delete_outbox(rows)
