"""`DeadLetterStore` (`shared/adapters/store/system.py`): messages kept whole with their reason,
listed once per queue message, oldest first a page at a time, card data redacted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters.store.protocol import DeadLetterStore

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def add(store: DeadLetterStore, n: int, *, message_id: str | None = None, body: str | None = None,
        reason: str = "bad") -> None:
    store.add(source="payment-events", reason=reason, body=body if body is not None else f"message {n}",
              received_at=T0 + timedelta(seconds=n), message_id=message_id)


def test_a_redelivered_message_is_listed_once(dead_letters: DeadLetterStore) -> None:
    add(dead_letters, 1, message_id="m-1", reason="first attempt")
    add(dead_letters, 2, message_id="m-1", reason="second attempt")
    page = dead_letters.page(10, None)
    assert len(page.items) == 1 and page.next is None
    [item] = page.items
    assert item["id"] == "msg-payment-events-m-1" and item["reason"] == "second attempt"
    assert item == dead_letters.get(item["id"])


def test_an_item_keeps_what_a_person_needs(dead_letters: DeadLetterStore) -> None:
    add(dead_letters, 1, message_id="m-1", body="{\"id\": \"e-1\"}", reason="missing data.amount")
    item = dead_letters.get("msg-payment-events-m-1")
    assert item == {"id": "msg-payment-events-m-1", "source": "payment-events", "reason": "missing data.amount",
                    "receivedAt": (T0 + timedelta(seconds=1)).isoformat(), "replayedAt": None, "redacted": False,
                    "text": "{\"id\": \"e-1\"}"}
    assert dead_letters.get("msg-payment-events-nope") is None


def test_messages_without_an_id_are_each_their_own_item(dead_letters: DeadLetterStore) -> None:
    add(dead_letters, 1)
    add(dead_letters, 1)
    assert len(dead_letters.page(10, None).items) == 2


def test_a_large_text_comes_back_exactly(dead_letters: DeadLetterStore) -> None:
    text = "".join(chr(0x4E00 + i % 500) + "😀" + "x" for i in range(60_000))  # over several entities
    add(dead_letters, 1, message_id="big", body=text)
    item = dead_letters.get("msg-payment-events-big")
    assert item is not None and item["text"] == text


def test_bytes_that_are_not_utf8_are_kept_with_replacement_characters(dead_letters: DeadLetterStore) -> None:
    dead_letters.add(source="sweep-work", reason="bad", body=b"ok \xff end", received_at=T0, message_id="b")
    assert dead_letters.get("msg-sweep-work-b")["text"] == "ok \ufffd end"  # type: ignore[index]


def test_card_data_is_kept_redacted_and_the_item_says_so(dead_letters: DeadLetterStore) -> None:
    body = '{"card": "4111 1111 1111 1111", "cvv": "123"}'
    add(dead_letters, 1, message_id="card", body=body, reason="unknown field near 4111111111111111")
    item = dead_letters.get("msg-payment-events-card")
    assert item is not None and item["redacted"] is True
    assert "4111 1111 1111 1111" not in item["text"] and "1111" in item["text"]
    assert "4111111111111111" not in item["reason"]


def test_mark_replayed_sets_the_time(dead_letters: DeadLetterStore) -> None:
    add(dead_letters, 1, message_id="m-1")
    at = T0 + timedelta(hours=2)
    dead_letters.mark_replayed("msg-payment-events-m-1", at)
    item = dead_letters.get("msg-payment-events-m-1")
    assert item is not None and item["replayedAt"] == at.isoformat() and item["text"] == "message 1"


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=st.integers(1, 8))
def test_pages_are_oldest_first_and_every_item_once(dead_letters: DeadLetterStore, limit: int) -> None:
    if not dead_letters.page(1, None).items:
        for n in (5, 1, 3, 2, 4, 3):  # two at one time: ordered by id then
            add(dead_letters, n, message_id=f"m-{n}-{len(dead_letters.page(50, None).items)}")
    everything = dead_letters.page(50, None).items
    assert [(i["receivedAt"], i["id"]) for i in everything] == sorted((i["receivedAt"], i["id"]) for i in everything)
    got, cursor = [], None
    for _ in range(20):
        page = dead_letters.page(limit, cursor)
        assert len(page.items) <= limit
        got += page.items
        if page.next is None:
            break
        assert page.next.item_id == page.items[-1]["id"]
        cursor = page.next
    assert got == everything and len(got) == 6
