"""The local Azurite gives back a queue message's text as it was sent, whatever its characters:
a message of the product's largest size, in every UTF-8 width, read in a batch as the host does.
(Azurite itself decoded each stored chunk on its own; `devstack/azurite_utf8.cjs` says why.)"""

from __future__ import annotations

import uuid

from azure.storage.queue import QueueClient

# 1-, 2-, 3- and 4-byte UTF-8 characters, in an order that puts every width across any boundary
WIDTHS = "a\u00e9\u4e2d\U0001f600"


def _message(n: int) -> str:
    body = (WIDTHS[n % 4:] + WIDTHS) * 6_000
    text = f'{{"n": {n}, "note": "{body}"}}'
    while len(text.encode()) > 65_536:  # as large as the queue takes
        body = body[:-1]
        text = f'{{"n": {n}, "note": "{body}"}}'
    return text


def test_large_multibyte_messages_read_back_exactly_in_a_batch(storage_connection_string: str) -> None:
    queue = QueueClient.from_connection_string(storage_connection_string, f"text-{uuid.uuid4().hex[:12]}")
    queue.create_queue()
    sent = [_message(n) for n in range(8)]
    for text in sent:
        queue.send_message(text)
    got: list[str] = []
    while len(got) < len(sent):
        batch = list(next(queue.receive_messages(messages_per_page=32, visibility_timeout=60).by_page()))
        got += [m.content for m in batch]
    assert sorted(got) == sorted(sent)
