"""Cross-account indexes the sweeps read, so their cost grows with the work due, not with the
number of accounts (table `billingindex`).

`due` and `retention`: one row per (time an account next has dunning or retention work,
account), spread over shards so no single partition takes every write. `disabled`: accounts with
a disabled subscription. All are maintained from the outbox after the account's own transaction,
idempotently, and are hints: a sweep re-reads the account and acts on what its state says,
repairing a stale row.

A timer sweep *claims* the entries it hands to the work queue (`queuedUntil` on the row, one
`$batch` per page of a shard) so the next run does not queue them again while they wait; the
worker deletes an entry once its account's step is done, and an entry whose work was lost comes
back when its claim runs out.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any, Literal

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

log = logging.getLogger(__name__)

SHARDS = 8
PAGE = 100  # one claim `$batch` per page: an entity group transaction holds at most 100 writes
DISABLED_PK = "disabled"


def _stamp(at: datetime) -> str:
    return at.strftime("%Y%m%dT%H%M%S%fZ")


Ladder = Literal["due", "retention"]


def _shard(ladder: Ladder, account_id: str) -> str:
    return f"{ladder}-{int(hashlib.sha256(account_id.encode()).hexdigest(), 16) % SHARDS}"


def due_keys(ladder: Ladder, account_id: str, at: datetime) -> tuple[str, str]:
    """(PartitionKey, RowKey) of the index row saying `account_id` has `ladder` work at `at`."""
    return _shard(ladder, account_id), f"{_stamp(at)}|{account_id}"


@dataclass(frozen=True)
class DueEntry:
    """One index row: the account it points at, when (None for `disabled` rows), and its keys."""

    account_id: str
    at: datetime | None
    partition: str
    row: str
    queued_until: datetime | None = None

    def entity(self, queued_until: datetime | None = None) -> dict[str, Any]:
        """The whole row, so writing a claim on a row a worker deleted meanwhile leaves a row the
        sweep can read (and will find stale), never a half row."""
        entity: dict[str, Any] = {"PartitionKey": self.partition, "RowKey": self.row}
        if self.partition != DISABLED_PK:
            entity |= {"accountId": self.account_id, "at": self.at.isoformat() if self.at else None}
        if queued_until is not None:
            entity["queuedUntil"] = queued_until.isoformat()
        return entity


def index_entry(index: Ladder | Literal["disabled"], account_id: str, at: datetime | None) -> DueEntry:
    """The entry `index` keeps for `account_id`: `at` (UTC) for `due` and `retention`, None for
    `disabled`; ValueError when `at` is missing or given where it does not belong."""
    if index == "disabled":
        if at is not None:
            raise ValueError("a disabled entry has no time")
        return DueEntry(account_id, None, DISABLED_PK, account_id)
    if at is None:
        raise ValueError(f"a {index} entry needs its time")
    partition, row = due_keys(index, account_id, at)
    return DueEntry(account_id, at, partition, row)


def _entry(r: Any) -> DueEntry | None:
    """The row as an entry, or None (logged) for a row no writer of this code makes, so one bad
    row never stops the sweep of its shard."""
    try:
        claimed = r.get("queuedUntil")
        until = datetime.fromisoformat(claimed) if claimed else None
        if r["PartitionKey"] == DISABLED_PK:
            return DueEntry(r["RowKey"], None, DISABLED_PK, r["RowKey"], until)
        return DueEntry(r["accountId"], datetime.fromisoformat(r["at"]), r["PartitionKey"], r["RowKey"], until)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("unreadable index row %s/%s skipped: %s: %s", r.get("PartitionKey"), r.get("RowKey"),
                    type(exc).__name__, exc, extra={"counter": "index_row_unreadable"})
        return None


class Indexes:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    def mark_due(self, account_id: str, at: datetime, ladder: Ladder = "due") -> None:
        self.table.upsert_entity(index_entry(ladder, account_id, at).entity())

    def due(self, now: datetime, ladder: Ladder = "due") -> list[DueEntry]:
        """Every entry due at or before `now`, claimed or not, oldest first (for reading, not sweeping)."""
        found = [e for page in self._pages(now, ladder) for e in page]
        return sorted(found, key=lambda e: (e.at or now, e.account_id))

    def unclaimed(self, now: datetime, ladder: Ladder | Literal["disabled"]) -> Iterator[list[DueEntry]]:
        """Pages (at most `PAGE` entries, one shard each) of the entries due at `now` that no
        sweep has queued, or whose claim ran out, taking one page from each shard in turn so no
        shard waits behind another."""
        for page in self._pages(now, ladder):
            fresh = [e for e in page if e.queued_until is None or e.queued_until <= now]
            if fresh:
                yield fresh

    def _pages(self, now: datetime, ladder: Ladder | Literal["disabled"]) -> Iterator[list[DueEntry]]:
        if ladder == DISABLED_PK:
            shards = [self.table.query_entities("PartitionKey eq @pk", parameters={"pk": DISABLED_PK},
                                                results_per_page=PAGE).by_page()]
        else:
            shards = [self.table.query_entities("PartitionKey eq @pk and RowKey le @hi",
                                                parameters={"pk": f"{ladder}-{n}", "hi": f"{_stamp(now)}|~"},
                                                results_per_page=PAGE).by_page()
                      for n in range(SHARDS)]
        while shards:
            for pages in list(shards):
                page = next(pages, None)
                if page is None:
                    shards.remove(pages)
                    continue
                entries = [e for e in map(_entry, page) if e is not None]
                if entries:
                    yield entries

    def claim(self, entries: Sequence[DueEntry], until: datetime) -> None:
        """Mark entries as queued until `until`: one `$batch` per shard and 100 entries."""
        by_partition = sorted(entries, key=lambda e: e.partition)
        for _, group in groupby(by_partition, key=lambda e: e.partition):
            mine = list(group)
            for start in range(0, len(mine), PAGE):
                self.table.submit_transaction([("upsert", e.entity(until), {"mode": UpdateMode.REPLACE})
                                               for e in mine[start:start + PAGE]])

    def done(self, entry: DueEntry) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self.table.delete_entity(entry.partition, entry.row)

    def set_disabled(self, account_id: str, present: bool) -> None:
        if present:
            self.table.upsert_entity({"PartitionKey": DISABLED_PK, "RowKey": account_id})
        else:
            with contextlib.suppress(ResourceNotFoundError):
                self.table.delete_entity(DISABLED_PK, account_id)

    def disabled(self) -> list[str]:
        return [r["RowKey"] for r in self.table.query_entities("PartitionKey eq @pk", parameters={"pk": DISABLED_PK})]
