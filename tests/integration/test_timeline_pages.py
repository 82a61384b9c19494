"""The timeline read a page at a time on real Table Storage: every entry once, in order, either
way, whatever the page size and however the entries fall into rows."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from azure.data.tables import UpdateMode

from shared.adapters.store import codec
from shared.adapters.store.timeline import BadCursor, Cursor, Order, TimelinePage, timeline_page
from shared.bootstrap import Services

ROWS = 60


@pytest.fixture
def history(make_services: Callable[..., Services]) -> tuple[Services, list[dict[str, Any]]]:
    """60 decisions of 1 to 7 entries each, written as the store writes them, plus the rows of
    another account and other kinds of row in the same partition around them."""
    svc = make_services()
    rng = random.Random(17)
    entries: list[dict[str, Any]] = []
    for revision in range(1, ROWS + 1):
        mine = [{"at": "2026-12-01T09:00:00Z", "kind": "k", "subscriptionId": None, "detail": f"{revision}.{n}"}
                for n in range(rng.randint(1, 7))]
        entity: dict[str, Any] = {"PartitionKey": "acc-long", "RowKey": f"tl|{revision:012d}"}
        codec.put_json(entity, "entries", mine)
        svc.uow.accounts.table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        entries += mine
    for pk, rk in [("acc-other", "tl|000000000001"), ("acc-long", "mail|x"), ("acc-long", "charge|c1")]:
        other: dict[str, Any] = {"PartitionKey": pk, "RowKey": rk}
        codec.put_json(other, "entries", [{"at": "x", "kind": "foreign", "subscriptionId": None, "detail": "no"}])
        svc.uow.accounts.table.upsert_entity(other)
    return svc, entries


def read_all(svc: Services, limit: int, order: Order) -> tuple[list[dict[str, Any]], int]:
    pages: list[TimelinePage] = []
    cursor: Cursor | None = None
    while True:
        page = timeline_page(svc.uow.accounts.table, "acc-long", limit=limit, order=order, cursor=cursor, revision=ROWS)
        assert len(page.entries) <= limit
        pages.append(page)
        if page.next is None:
            break
        assert len(page.entries) == limit  # only the last page is short
        cursor = Cursor.parse(page.next.token(), order)  # through the token, as a client does
    return [e for p in pages for e in p.entries], len(pages)


@pytest.mark.parametrize("limit", [1, 3, 7, 50, 500])
def test_pages_oldest_first_hold_every_entry_once_in_commit_order(
        history: tuple[Services, list[dict[str, Any]]], limit: int) -> None:
    svc, entries = history
    got, pages = read_all(svc, limit, "oldest")
    assert got == entries
    assert pages == -(-len(entries) // limit)  # no empty last page


@pytest.mark.parametrize("limit", [1, 4, 9, 100, 500])
def test_pages_newest_first_are_the_same_entries_reversed(
        history: tuple[Services, list[dict[str, Any]]], limit: int) -> None:
    svc, entries = history
    got, pages = read_all(svc, limit, "newest")
    assert got == entries[::-1] and pages == -(-len(entries) // limit)


def test_a_token_for_one_order_is_refused_for_the_other(history: tuple[Services, list[dict[str, Any]]]) -> None:
    svc, _ = history
    page = timeline_page(svc.uow.accounts.table, "acc-long", limit=5, order="oldest", cursor=None, revision=ROWS)
    assert page.next is not None
    with pytest.raises(BadCursor, match="order=oldest"):
        Cursor.parse(page.next.token(), "newest")
    for forged in ("", "xyz", "eyJyIjoiY2hhcmdlfGMxIiwicyI6MCwibyI6Im9sZGVzdCJ9"):  # the last names a charge row
        with pytest.raises(BadCursor):
            Cursor.parse(forged, "oldest")
