"""The internal `email-outbox` hand-off on the running stack: a malformed message is dead-lettered
at once with its reason, on the queue and on its poison queue, never retried into a loop; a
replay puts it back on its own queue."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
import requests
from azure.storage.queue import QueueClient

from devstack.stack import LocalStack
from tests.e2e.conftest import all_dead_letters, wait_until

KEY = "0b6d3c2e-8f7a-5d41-9c3b-2a1e4f6d8b90"


def _dead_letters(api: str, text: str) -> list[dict[str, Any]]:
    return [i for i in all_dead_letters(api) if i["text"] == text]


@pytest.mark.parametrize("queue", ["email-outbox", "email-outbox-poison"])
@pytest.mark.parametrize(("body", "reason"), [
    ("not json {nonce}", "not JSON"),
    ('["{nonce}"]', "a JSON list, not an object"),
    ('{{"accountId": "acc-{nonce}"}}', "key is missing"),
    ('{{"accountId": "a/{nonce}", "key": "k#1"}}', "accountId 'a/"),
    ('{{"accountId": "acc-{nonce}", "accountId": "b", "key": "' + KEY + '"}}', "accountId.*more than once"),
])
def test_a_malformed_handoff_is_dead_lettered_with_its_reason(
        api: str, stack: LocalStack, queue: str, body: str, reason: str) -> None:
    text = body.format(nonce=uuid.uuid4().hex)
    QueueClient.from_connection_string(stack.connection_string, queue).send_message(text)
    [item] = wait_until(lambda: _dead_letters(api, text), f"the dead letter from {queue}", timeout=60)
    assert item["source"] == queue
    assert re.search(reason, item["reason"]), item["reason"]


def test_a_replayed_handoff_goes_back_to_the_email_queue(api: str, stack: LocalStack) -> None:
    text = f"not a hand-off {uuid.uuid4().hex}"
    QueueClient.from_connection_string(stack.connection_string, "email-outbox-poison").send_message(text)
    [item] = wait_until(lambda: _dead_letters(api, text), "the dead letter", timeout=60)
    assert requests.post(f"{api}/deadletters/{item['id']}/replay", timeout=30).status_code == 200
    again = wait_until(lambda: [i for i in _dead_letters(api, text) if i["id"] != item["id"]], "the replayed copy",
                       timeout=60)
    assert [i["source"] for i in again] == ["email-outbox"]

