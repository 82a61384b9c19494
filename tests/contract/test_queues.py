"""`Queues` (`shared/adapters/queues/`): what is sent is what a consumer reads, when it is visible."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.contract.conftest import QueueSide


def test_a_message_is_read_as_sent_on_its_own_queue(queues: QueueSide) -> None:
    text = '{"accountId": "acc-1", "key": "k", "note": "中文 😀 <&>"}'
    queues.queues.send("email-outbox", text)
    queues.queues.send("sweep-work", "work")
    assert queues.take("email-outbox") == [text]
    assert queues.take("email-outbox") == []
    assert queues.take("sweep-work") == ["work"]
    assert queues.take("subscription-lifecycle") == []


def test_messages_keep_their_order(queues: QueueSide) -> None:
    for n in range(5):
        queues.queues.send("sweep-pages", f"page {n}")
    assert queues.take("sweep-pages") == [f"page {n}" for n in range(5)]


def test_a_delayed_message_is_visible_only_after_its_delay(queues: QueueSide) -> None:
    queues.queues.send("payment-events", "later", visible_in=timedelta(seconds=2))
    queues.queues.send("payment-events", "now")
    assert queues.take("payment-events") == ["now"]
    queues.wait(timedelta(seconds=2.5))
    assert queues.take("payment-events") == ["later"]


def test_a_queue_message_holds_64_kib(queues: QueueSide) -> None:
    largest = "x" * 65_536
    queues.queues.send("payment-events", largest)
    assert queues.take("payment-events") == [largest]
    with pytest.raises(Exception):  # noqa: B017 - the adapter's own error: ValueError or the SDK's
        queues.queues.send("payment-events", largest + "x")
    assert queues.take("payment-events") == []
