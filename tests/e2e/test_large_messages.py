"""Issue 13 point 3 on the running stack: any valid message the queue carries is applied, and a
dead letter keeps the whole text, returned and replayed byte for byte."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import requests

from tests.e2e.conftest import all_dead_letters, new_account, wait_until


def _dead_letters(api: str, text: str) -> list[dict[str, Any]]:
    return [i for i in all_dead_letters(api) if i["text"] == text]


def test_a_charge_failure_with_a_40_kb_extension_attribute_is_applied(
        api: str, send_event: Callable[..., str]) -> None:
    acc = new_account(api)
    text = json.dumps({
        "specversion": "1.0", "id": f"evt-{uuid.uuid4().hex}", "type": "billing.charge.failed", "source": "/tests",
        "time": "2026-12-01T09:00:00Z", "lineitems": "item;" * 8_000,
        "data": {"accountId": acc, "subscriptionId": "s1", "chargeId": "ch-big", "amount": "42.00",
                 "currency": "USD", "reason": "card_declined"}})
    assert len(text) > 40_000
    send_event("", {}, raw=text)
    v = wait_until(lambda: (x := requests.get(f"{api}/accounts/{acc}", timeout=10).json())["balance"] and x,
                   "the large event applied", timeout=90)
    assert v["balance"] == {"USD": "42.00"} and v["subscriptions"][0]["state"] == "past_due"


def test_a_large_dead_letter_is_listed_and_replayed_byte_for_byte(api: str, send_event: Callable[..., str]) -> None:
    # Near the queue's 65,536 UTF-8 bytes, with characters outside the BMP (two UTF-16 units each,
    # the unit a Table string property is limited in), quotes, backslashes and control characters.
    filler = "😀𝄞中é'\"\\\t" * 3_000
    text = json.dumps({"specversion": "1.0", "id": f"evt-{uuid.uuid4().hex}", "type": "billing.unknown",
                       "source": "/tests", "time": "2026-12-01T09:00:00Z", "data": {}, "note": filler},
                      ensure_ascii=False)
    assert 60_000 < len(text.encode()) <= 65_536 and len(text.encode("utf-16-le")) // 2 > 32_768
    send_event("", {}, raw=text)
    [item] = wait_until(lambda: _dead_letters(api, text), "the dead letter, whole", timeout=90)
    assert "type" in item["reason"]
    r = requests.post(f"{api}/deadletters/{item['id']}/replay", timeout=30)
    assert r.status_code == 200 and r.json()["text"] == text
    # Replayed onto payment-events as it was: the same text is refused again, as a second dead letter.
    again = wait_until(lambda: len(found := _dead_letters(api, text)) == 2 and found, "the replayed copy", timeout=90)
    assert {i["id"] for i in again} - {item["id"]}
