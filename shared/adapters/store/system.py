"""Rows that belong to no account: dead letters and the test clock (table `billingsystem`)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.adapters.store import codec
from shared.adapters.store.tokens import BadCursor, decode_token, encode_token
from shared.clock import Clock, ensure_utc
from shared.services.dead_letters import dead_letter_content
from shared.telemetry import count_deadletter

DEADLETTER_PK = "deadletter"
DEADLETTER_PAGE, DEADLETTER_PAGE_MAX = 20, 50  # each may hold 64 KiB of text (GET /api/deadletters)
CLOCK_PK, CLOCK_RK = "clock", "test"


class DeadLetters:
    """Messages we could not apply, kept whole with the reason, for a person to read and replay.

    Row `{key}` holds the reason, the times and the text's first pieces; a text larger than one
    entity goes on in rows `{key}~000001`, ... . Pieces are at most `codec.CHUNK` UTF-16
    units (a string property holds 32K). The continuation rows are written before the head row,
    so a listed dead letter always has its whole text. What is kept is prepared in one place,
    `shared.services.dead_letters.dead_letter_content`: card data redacted, and the row says so (`redacted`).
    """

    # An entity holds 1 MiB, which Azurite measures as its JSON on the wire, where a UTF-16 unit can
    # take 6 bytes (`\ud83d`, `\u0001`): 5 x 30,000 units x 6 bytes = 900 KB at worst.
    PIECES_PER_ROW = 5

    def __init__(self, table: TableClient) -> None:
        self.table = table

    def add(self, *, source: str, reason: str, body: bytes | str, received_at: datetime,
            message_id: str | None) -> None:
        # Keyed by the queue message id when there is one, so a redelivered message is listed once.
        key = f"{received_at.strftime('%Y%m%dT%H%M%S%fZ')}-{message_id or uuid.uuid4().hex}"
        if message_id:
            key = f"msg-{source}-{message_id}"
        content = dead_letter_content(body, reason)
        pieces = codec.split_utf16(content.text)
        rows = [pieces[i:i + self.PIECES_PER_ROW] for i in range(0, len(pieces), self.PIECES_PER_ROW)]
        more = [self._pieces({"PartitionKey": DEADLETTER_PK, "RowKey": _continuation(key, n)}, part)
                for n, part in enumerate(rows[1:], start=1)]
        for entity in more:  # one by one: a transaction holds at most 4 MiB
            self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        head = self._pieces({"PartitionKey": DEADLETTER_PK, "RowKey": key, "source": source,
                             "reason": content.reason[:4000], "receivedAt": received_at.isoformat(),
                             "redacted": content.redacted, "textRows": codec.int64(len(rows))}, rows[0])
        self.table.upsert_entity(head, mode=UpdateMode.REPLACE)
        count_deadletter(source)  # every dead letter passes here: contract §6 `billing.deadletters`

    def list(self) -> list[dict[str, Any]]:
        rows = {r["RowKey"]: r for r in self.table.query_entities("PartitionKey eq @pk",
                                                                  parameters={"pk": DEADLETTER_PK})}

        def part(key: str) -> Callable[[int], Any]:
            return lambda n: rows[_continuation(key, n)]

        items = [self._item(r, part(k)) for k, r in rows.items() if "~" not in k]
        return sorted(items, key=lambda i: (i["receivedAt"], i["id"]))

    def page(self, limit: int, after: DeadLetterCursor | None) -> DeadLetterPage:
        """Up to `limit` dead letters after `after`, oldest first (by `receivedAt`, then id), and
        where the next page starts (None: no more). Costs one scan of the keys and times only,
        then one read per dead letter on the page: never the texts of other pages."""
        heads = sorted((str(r["receivedAt"]), str(r["RowKey"])) for r in self.table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": DEADLETTER_PK}, select=["RowKey", "receivedAt"])
            if "~" not in r["RowKey"] and "receivedAt" in r)
        rest = [h for h in heads if after is None or h > (after.received_at, after.item_id)]
        items = [item for _, key in rest[:limit] if (item := self.get(key)) is not None]
        return DeadLetterPage(items, DeadLetterCursor(*rest[limit - 1]) if len(rest) > limit else None)

    def get(self, item_id: str) -> dict[str, Any] | None:
        try:
            return self._item(self.table.get_entity(DEADLETTER_PK, item_id),
                              lambda n: self.table.get_entity(DEADLETTER_PK, _continuation(item_id, n)))
        except (ResourceNotFoundError, ValueError):
            return None

    def mark_replayed(self, item_id: str, at: datetime) -> None:
        self.table.update_entity({"PartitionKey": DEADLETTER_PK, "RowKey": item_id, "replayedAt": at.isoformat()},
                                 mode=UpdateMode.MERGE)

    @staticmethod
    def _pieces(entity: dict[str, Any], pieces: Sequence[str]) -> dict[str, Any]:
        entity["pieces"] = codec.int64(len(pieces))
        entity.update({f"text_{n}": piece for n, piece in enumerate(pieces)})
        return entity

    @staticmethod
    def _item(r: Any, continuation: Callable[[int], Any]) -> dict[str, Any]:
        if "textRows" in r:
            rows = [r, *(continuation(n) for n in range(1, codec.int_of(r["textRows"])))]
            text = "".join(str(row[f"text_{i}"]) for row in rows for i in range(codec.int_of(row["pieces"])))
        else:  # written before dead letters were split over rows: one JSON string
            text = codec.get_json(r, "text")
        return {"id": r["RowKey"], "source": r["source"], "reason": r["reason"], "receivedAt": r["receivedAt"],
                "replayedAt": r.get("replayedAt"), "redacted": bool(r.get("redacted", False)), "text": text}


@dataclass(frozen=True)
class DeadLetterCursor:
    """Where the next page of dead letters starts: after this `receivedAt` and id."""

    received_at: str
    item_id: str

    def token(self) -> str:
        return encode_token({"d": self.received_at, "i": self.item_id})

    @classmethod
    def parse(cls, token: str) -> DeadLetterCursor:
        """The cursor in `token`; `BadCursor` if it is not a dead-letter token of this API."""
        doc = decode_token(token)
        received_at, item_id = doc.get("d"), doc.get("i")
        if not (isinstance(received_at, str) and isinstance(item_id, str) and set(doc) == {"d", "i"}
                and 0 < len(received_at) <= 40 and 0 < len(item_id) <= 255):
            raise BadCursor("not a continuation token of this API")
        return cls(received_at, item_id)


@dataclass(frozen=True)
class DeadLetterPage:
    items: list[dict[str, Any]]  # as `DeadLetters.get` gives them
    next: DeadLetterCursor | None


def _continuation(key: str, n: int) -> str:
    return f"{key}~{n:06d}"


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
    """Rows an earlier version kept per sent email (ACS operation id -> account and recipient, in
    partition `mailindex`). Delivery reports are found by address now; erasure still deletes the
    rows of the account's emails, which hold its contacts' addresses."""

    PK = "mailindex"

    def __init__(self, table: TableClient) -> None:
        self.table = table

    def forget(self, operation_ids: Iterable[str]) -> None:
        for operation_id in operation_ids:
            with contextlib.suppress(ResourceNotFoundError):
                self.table.delete_entity(self.PK, operation_id)
