"""The address index in memory: the twin of `shared.adapters.store.contact_index.ContactIndex`."""

from __future__ import annotations


class InMemoryContactDirectory:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], int] = {}  # (address, account) -> the revision that listed it

    def accounts(self, address: str) -> list[str]:
        return sorted(account for (a, account) in self.rows if a == address)

    def update(self, address: str, account_id: str, listed: bool, revision: int) -> None:
        """A row is written or dropped only by a newer revision than the one it holds."""
        held = self.rows.get((address, account_id))
        if held is not None and held >= revision:
            return
        if listed:
            self.rows[(address, account_id)] = revision
        else:
            self.rows.pop((address, account_id), None)
