"""Dead letters on Azurite keep the whole original text, however large, byte for byte."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from shared.adapters.store.system import DeadLetterCursor
from shared.bootstrap import Services

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_a_queue_message_of_any_size_is_kept_whole(make_services: Callable[..., Services]) -> None:
    svc = make_services()
    # Non-BMP characters take two UTF-16 units (the unit Table Storage counts) and four UTF-8 bytes.
    largest_queue_message = ('{"id":"big","note":"' + "😀𝄞中é\x01'\"\\" * 8_000 + '"}')
    huge = "😀" * 700_000 + "tail"  # 1.4M UTF-16 units: more than one entity holds (1 MiB)
    svc.uow.dead_letters.add(source="payment-events", reason="not JSON", body=largest_queue_message.encode(),
                        received_at=AT, message_id="m-1")
    svc.uow.dead_letters.add(source="payment-events-poison", reason="kept failing", body=huge.encode(),
                        received_at=AT, message_id="m-2")

    items = {i["id"]: i for i in svc.uow.dead_letters.list()}
    assert set(items) == {"msg-payment-events-m-1", "msg-payment-events-poison-m-2"}
    assert items["msg-payment-events-m-1"]["text"] == largest_queue_message
    assert items["msg-payment-events-poison-m-2"]["text"] == huge
    one = svc.uow.dead_letters.get("msg-payment-events-poison-m-2")
    assert one is not None and one["text"].encode() == huge.encode()


def test_a_redelivered_message_is_listed_once_and_empty_text_survives(make_services: Callable[..., Services]) -> None:
    svc = make_services()
    for _ in range(2):
        svc.uow.dead_letters.add(source="payment-events", reason="empty", body=b"", received_at=AT, message_id="m-3")
    items = svc.uow.dead_letters.list()
    assert [(i["id"], i["text"]) for i in items] == [("msg-payment-events-m-3", "")]


def test_pages_list_every_dead_letter_once_oldest_first_whatever_the_page_size(
        make_services: Callable[..., Services]) -> None:
    svc = make_services()
    texts = {}
    for n in range(7):  # three share a time; one spans continuation rows; message ids out of time order
        at = AT + timedelta(minutes=n // 3 * 5 - n)
        text = "😀" * 400_000 if n == 4 else f"message {n}"
        svc.uow.dead_letters.add(source="payment-events", reason=f"r{n}", body=text.encode(), received_at=at,
                            message_id=f"m-{9 - n}" if n % 2 else None)
        texts[n] = text
    svc.uow.dead_letters.add(source="payment-events", reason="again", body=b"message 1", received_at=AT,
                        message_id="m-8")  # a redelivery replaces the row: still one dead letter
    everything = svc.uow.dead_letters.list()
    assert len(everything) == 7
    for limit in (1, 2, 3, 7, 50):
        seen: list[dict[str, object]] = []
        cursor: DeadLetterCursor | None = None
        for _ in range(10):
            page = svc.uow.dead_letters.page(limit, cursor)
            assert len(page.items) <= limit
            seen += page.items
            if page.next is None:
                break
            cursor = DeadLetterCursor.parse(page.next.token())  # the token round-trips
        assert seen == everything, limit  # each once, oldest first, the huge text whole
    assert sorted(i["text"] for i in everything) == sorted(texts.values())
