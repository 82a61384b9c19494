"""The intake refuses every malformed message with a reason that names the problem."""

from __future__ import annotations

import json

import pytest

from shared.domain.facts import ChargeFailed, ChargeVoided, PaymentReceived
from shared.domain.money import Money
from shared.inbound.cloudevents import Rejected, parse_message
from shared.inbound.rfc3339 import parse_rfc3339
from tests.malformed_cases import CASES, PAYMENT, VALID


@pytest.mark.parametrize(("name", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_malformed_message_is_rejected_with_its_reason(name: str, text: str, expected: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse_message(text.encode())
    assert expected.lower() in caught.value.reason.lower()


def test_there_are_at_least_twenty_kinds() -> None:
    assert len(CASES) >= 20


def test_valid_events_parse_to_facts() -> None:
    event, type_ = parse_message(json.dumps(VALID).encode())
    assert type_ == "billing.charge.failed"
    assert event == ChargeFailed("evt-valid-1", "acc-bad", "s1", "c1", Money(1234, "USD"), "card_declined",
                                 parse_rfc3339(VALID["time"]))
    payment, _ = parse_message(json.dumps({**PAYMENT, "data": {**PAYMENT["data"], "chargeIds": ["c1"]}}).encode())
    assert isinstance(payment, PaymentReceived) and payment.charge_ids == ("c1",)
    voided, _ = parse_message(json.dumps({**VALID, "type": "billing.charge.voided",
                                          "data": {"accountId": "a", "chargeId": "c"}}).encode())
    assert voided == ChargeVoided("evt-valid-1", "a", "c")


def test_unknown_extra_attributes_are_ignored() -> None:
    event, _ = parse_message(json.dumps({**VALID, "traceparent": "00-abc", "data": {**VALID["data"], "x": 1}}).encode())
    assert isinstance(event, ChargeFailed)


def test_not_utf8_is_rejected() -> None:
    with pytest.raises(Rejected, match="UTF-8"):
        parse_message(b"\xff\xfe{}")


def test_an_event_as_large_as_a_queue_message_is_applied() -> None:
    """Producers attach line items: a 40 KB extension attribute, and a message of exactly 65,536
    characters (what a queue message holds), are valid events."""
    event, _ = parse_message(json.dumps({**VALID, "lineitems": "x" * 40_000}).encode())
    assert isinstance(event, ChargeFailed)
    text = json.dumps({**VALID, "lineitems": ""})
    largest = json.dumps({**VALID, "lineitems": "é" * (65_536 - len(text))}, ensure_ascii=False)
    assert len(largest) == 65_536 and len(largest.encode()) > 65_536
    assert isinstance(parse_message(largest.encode())[0], ChargeFailed)
    with pytest.raises(Rejected, match="65537 characters"):
        parse_message(json.dumps({**VALID, "lineitems": "x" * (65_537 - len(text))}).encode())
