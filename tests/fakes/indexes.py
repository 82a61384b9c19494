"""The due, retention and disabled indexes in memory: the twin of `shared.adapters.store.indexes.Indexes`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Literal

from shared.adapters.store.indexes import DISABLED_PK, PAGE, DueEntry, Ladder, index_entry


class InMemoryIndexes:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], DueEntry] = {}

    def mark_due(self, account_id: str, at: datetime, ladder: Ladder = "due") -> None:
        entry = index_entry(ladder, account_id, at)
        held = self.rows.get((entry.partition, entry.row))
        # Table Storage's upsert merges: a claim on the same row stays (tests/contract/test_indexes.py)
        self.rows[(entry.partition, entry.row)] = replace(entry, queued_until=held.queued_until if held else None)

    def due(self, now: datetime, ladder: Ladder = "due") -> list[DueEntry]:
        found = [e for page in self._pages(now, ladder) for e in page]
        return sorted(found, key=lambda e: (e.at or now, e.account_id))

    def unclaimed(self, now: datetime, ladder: Ladder | Literal["disabled"]) -> Iterator[list[DueEntry]]:
        for page in self._pages(now, ladder):
            fresh = [e for e in page if e.queued_until is None or e.queued_until <= now]
            if fresh:
                yield fresh

    def _pages(self, now: datetime, ladder: Ladder | Literal["disabled"]) -> Iterator[list[DueEntry]]:
        shards: dict[str, list[DueEntry]] = {}
        for (partition, _), entry in sorted(self.rows.items()):
            wanted = partition == DISABLED_PK if ladder == DISABLED_PK else \
                partition.startswith(f"{ladder}-") and entry.at is not None and entry.at <= now
            if wanted:
                shards.setdefault(partition, []).append(entry)
        pages = {p: [rows[i:i + PAGE] for i in range(0, len(rows), PAGE)] for p, rows in shards.items()}
        while pages:  # one page of each shard in turn, as the real index reads them
            for partition in sorted(pages):
                yield pages[partition].pop(0)
                if not pages[partition]:
                    del pages[partition]

    def claim(self, entries: Sequence[DueEntry], until: datetime) -> None:
        for e in entries:
            self.rows[(e.partition, e.row)] = replace(e, queued_until=until)

    def done(self, entry: DueEntry) -> None:
        self.rows.pop((entry.partition, entry.row), None)

    def set_disabled(self, account_id: str, present: bool) -> None:
        entry = index_entry("disabled", account_id, None)
        if present:
            self.rows[(entry.partition, entry.row)] = entry
        else:
            self.rows.pop((entry.partition, entry.row), None)

    def disabled(self) -> list[str]:
        return [e.account_id for (p, _), e in sorted(self.rows.items()) if p == DISABLED_PK]
