"""Reading an account's timeline a page at a time (`GET /api/accounts/{id}/timeline`).

The timeline is kept as one row per decision in the account's partition, `tl|{revision:012d}`,
each holding that decision's entries in order, and one row per email closed since that decision,
`tl|{revision:012d}|m{email key}` (an email's close changes no account state, so it takes no
revision of its own). A page is up to `limit` entries, oldest or newest
first; its `Cursor` says where the next page starts: a row key and how many of that row's entries
(counted in the page order) the pages before it already returned. Reading a page costs one
range query (oldest first) or a few windows of rows below the cursor (newest first), never the
whole history.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from azure.data.tables import TableClient

from shared.adapters.store import codec
from shared.adapters.store.tokens import BadCursor as BadCursor
from shared.adapters.store.tokens import decode_token, encode_token

Order = Literal["oldest", "newest"]
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
PREFIX, END = "tl|", "tl}"
# The keys `decision_rows.timeline_entities` writes, and nothing else: a cursor names one of them.
# ASCII digits (`\d` takes any script's); no free text, so a token can never carry text a query
# cannot send (a lone surrogate was a 500).
_ROW = re.compile(r"tl\|[0-9]{12}(?:\|[0-9]{4}|\|m[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})?")


@dataclass(frozen=True)
class Cursor:
    row: str
    skip: int
    order: Order

    def token(self) -> str:
        return encode_token({"r": self.row, "s": self.skip, "o": self.order})

    @classmethod
    def parse(cls, token: str, order: Order) -> Cursor:
        """The cursor in `token`; `BadCursor` if it is not one of ours or was issued for the other order."""
        doc = decode_token(token)
        row, skip, issued = doc.get("r"), doc.get("s"), doc.get("o")
        if not (isinstance(row, str) and _ROW.fullmatch(row) and type(skip) is int and 0 <= skip < 10**6
                and issued in ("oldest", "newest")):  # echoed below: never text of the caller's own
            raise BadCursor("not a continuation token of this API")
        if issued != order:
            raise BadCursor(f"issued for order={issued}; ask with the same order")
        return cls(row, skip, order)


@dataclass(frozen=True)
class TimelinePage:
    entries: list[dict[str, Any]]
    next: Cursor | None


def timeline_page(table: TableClient, account_id: str, *, limit: int, order: Order, cursor: Cursor | None,
                  revision: int) -> TimelinePage:
    """Up to `limit` entries from `cursor` (or the start) in `order`; `revision` is the account's
    current revision (its newest timeline row is at most that)."""
    rows = _ascending(table, account_id, cursor) if order == "oldest" else _descending(table, account_id, cursor,
                                                                                        revision, limit)
    entries: list[dict[str, Any]] = []
    for key, row_entries in rows:
        if order == "newest":
            row_entries = row_entries[::-1]
        skip = cursor.skip if cursor is not None and key == cursor.row else 0
        room = limit - len(entries)
        if room == 0:
            return TimelinePage(entries, Cursor(key, skip, order))  # the next page starts at this row
        taken = row_entries[skip:skip + room]
        entries += taken
        if skip + len(taken) < len(row_entries):
            return TimelinePage(entries, Cursor(key, skip + len(taken), order))
    return TimelinePage(entries, None)


def _rows(table: TableClient, account_id: str, lo: str, hi: str, per_page: int) -> Iterator[tuple[str, list[Any]]]:
    """Timeline rows with lo <= RowKey < hi, ascending."""
    found = table.query_entities("PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                                 parameters={"pk": account_id, "lo": lo, "hi": hi}, results_per_page=per_page)
    for row in found:
        yield row["RowKey"], list(codec.get_json(row, "entries"))


def _ascending(table: TableClient, account_id: str, cursor: Cursor | None) -> Iterable[tuple[str, list[Any]]]:
    return _rows(table, account_id, cursor.row if cursor else PREFIX, END, per_page=MAX_LIMIT)


def _descending(table: TableClient, account_id: str, cursor: Cursor | None, revision: int,
                limit: int) -> Iterator[tuple[str, list[Any]]]:
    """Rows newest first, read in windows of revisions below the cursor, each window twice the
    last (every row holds at least one entry, so a window of `limit` revisions mostly fills a page)."""
    # The cursor's row included, and none after it: a space sorts below every character a row key
    # goes on with (`tl|N` is followed by `tl|N|m{email}`, which is newer; "\x7f" took it in again).
    hi = cursor.row + " " if cursor else f"{PREFIX}{revision + 1:012d}"
    top = int(hi[3:15])
    window = limit + 1
    while top >= 0:
        lo = max(top - window, 0)
        yield from reversed(list(_rows(table, account_id, f"{PREFIX}{lo:012d}", hi, per_page=MAX_LIMIT)))
        if lo == 0:
            return
        hi, top, window = f"{PREFIX}{lo:012d}", lo, window * 2
