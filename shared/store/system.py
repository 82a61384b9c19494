"""Rows that belong to no account: dead letters and the test clock (table `billingsystem`)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.clock import Clock, ensure_utc
from shared.store import codec

DEADLETTER_PK = "deadletter"
CLOCK_PK, CLOCK_RK = "clock", "test"


class DeadLetters:
    """Messages we could not apply, kept whole with the reason, for a person to read."""

    def __init__(self, table: TableClient) -> None:
        self.table = table

    def add(self, *, source: str, reason: str, text: str, received_at: datetime, message_id: str | None) -> None:
        # Keyed by the queue message id when there is one, so a redelivered message is listed once.
        key = f"{received_at.strftime('%Y%m%dT%H%M%S%fZ')}-{message_id or uuid.uuid4().hex}"
        if message_id:
            key = f"msg-{source}-{message_id}"
        entity: dict[str, Any] = {"PartitionKey": DEADLETTER_PK, "RowKey": key, "source": source,
                                  "reason": reason[:4000], "receivedAt": received_at.isoformat()}
        codec.put_json(entity, "text", text)
        self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def list(self) -> list[dict[str, Any]]:
        rows = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": DEADLETTER_PK})
        items = [self._item(r) for r in rows]
        return sorted(items, key=lambda i: (i["receivedAt"], i["id"]))

    def get(self, item_id: str) -> dict[str, Any] | None:
        try:
            return self._item(self.table.get_entity(DEADLETTER_PK, item_id))
        except (ResourceNotFoundError, ValueError):
            return None

    def mark_replayed(self, item_id: str, at: datetime) -> None:
        self.table.update_entity({"PartitionKey": DEADLETTER_PK, "RowKey": item_id, "replayedAt": at.isoformat()},
                                 mode=UpdateMode.MERGE)

    @staticmethod
    def _item(r: Any) -> dict[str, Any]:
        return {"id": r["RowKey"], "source": r["source"], "reason": r["reason"], "receivedAt": r["receivedAt"],
                "replayedAt": r.get("replayedAt"), "text": codec.get_json(r, "text")}


class StoredTestClock:
    """The test clock of contract §2: an instant in storage that every instance reads.

    Read at most once a second per process (a storage read per `now()` would double the cost of
    an event); a `set` in this process is seen at once, one in another process within a second.
    """

    TTL = 1.0

    def __init__(self, table: TableClient, fallback: Clock) -> None:
        self.table = table
        self.fallback = fallback
        self._frozen: datetime | None = None
        self._read_at = -self.TTL

    def now(self) -> datetime:
        if time.monotonic() - self._read_at >= self.TTL:
            try:
                row = self.table.get_entity(CLOCK_PK, CLOCK_RK)
                self._frozen = datetime.fromisoformat(row["now"]).astimezone(UTC)
            except ResourceNotFoundError:
                self._frozen = None
            self._read_at = time.monotonic()
        return self._frozen if self._frozen is not None else self.fallback.now()

    def set(self, at: datetime) -> None:
        self.table.upsert_entity({"PartitionKey": CLOCK_PK, "RowKey": CLOCK_RK, "now": ensure_utc(at).isoformat()})
        self._frozen, self._read_at = ensure_utc(at), time.monotonic()

    def reset(self) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self.table.delete_entity(CLOCK_PK, CLOCK_RK)
        self._frozen, self._read_at = None, time.monotonic()


class MailIndex:
    """ACS operation id → account and recipient: delivery reports name only the message."""

    PK = "mailindex"

    def __init__(self, table: TableClient) -> None:
        self.table = table

    def remember(self, operation_id: str, account_id: str, recipient: str) -> None:
        self.table.upsert_entity({"PartitionKey": self.PK, "RowKey": operation_id, "accountId": account_id,
                                  "recipient": recipient})

    def forget(self, operation_ids: Iterable[str]) -> None:
        for operation_id in operation_ids:
            with contextlib.suppress(ResourceNotFoundError):
                self.table.delete_entity(self.PK, operation_id)

    def find(self, operation_id: str) -> tuple[str, str] | None:
        try:
            row = self.table.get_entity(self.PK, operation_id)
        except ResourceNotFoundError:
            return None
        return str(row["accountId"]), str(row["recipient"])
