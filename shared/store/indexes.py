"""Cross-account indexes the sweeps read, so their cost grows with the work due, not with the
number of accounts (table `billingindex`).

`due` and `retention`: one row per (time an account next has dunning or retention work,
account), spread over shards so no single partition takes every write. `disabled`: accounts with
a disabled subscription. All are maintained from the outbox after the account's own transaction,
idempotently, and are hints: a sweep re-reads the account and acts on what its state says,
repairing a stale row.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

SHARDS = 8


def _stamp(at: datetime) -> str:
    return at.strftime("%Y%m%dT%H%M%S%fZ")


Ladder = Literal["due", "retention"]


def _shard(ladder: Ladder, account_id: str) -> str:
    return f"{ladder}-{int(hashlib.sha256(account_id.encode()).hexdigest(), 16) % SHARDS}"


@dataclass(frozen=True)
class DueEntry:
    account_id: str
    at: datetime
    partition: str
    row: str


class Indexes:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    def mark_due(self, account_id: str, at: datetime, ladder: Ladder = "due") -> None:
        self.table.upsert_entity({"PartitionKey": _shard(ladder, account_id), "RowKey": f"{_stamp(at)}|{account_id}",
                                  "accountId": account_id, "at": at.isoformat()})

    def due(self, now: datetime, ladder: Ladder = "due", limit: int = 500) -> list[DueEntry]:
        """Entries due at or before `now`, oldest first: one range query per shard."""
        found: list[DueEntry] = []
        for n in range(SHARDS):
            rows = self.table.query_entities("PartitionKey eq @pk and RowKey le @hi",
                                             parameters={"pk": f"{ladder}-{n}", "hi": f"{_stamp(now)}|~"},
                                             results_per_page=limit)
            for r in rows:
                found.append(DueEntry(r["accountId"], datetime.fromisoformat(r["at"]), r["PartitionKey"],
                                      r["RowKey"]))
                if len(found) >= limit * SHARDS:
                    break
        return sorted(found, key=lambda e: (e.at, e.account_id))

    def done(self, entry: DueEntry) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self.table.delete_entity(entry.partition, entry.row)

    def set_disabled(self, account_id: str, present: bool) -> None:
        if present:
            self.table.upsert_entity({"PartitionKey": "disabled", "RowKey": account_id})
        else:
            with contextlib.suppress(ResourceNotFoundError):
                self.table.delete_entity("disabled", account_id)

    def disabled(self) -> list[str]:
        return [r["RowKey"] for r in self.table.query_entities("PartitionKey eq 'disabled'")]
