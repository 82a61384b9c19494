"""The intake refuses every malformed message with a reason that names the problem."""

from __future__ import annotations

import json

import pytest

from shared.intake import Rejected, parse_message
from shared.lifecycle.facts import ChargeFailed, ChargeVoided, PaymentReceived
from shared.money import Money
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
    assert event == ChargeFailed("evt-valid-1", "acc-bad", "s1", "c1", Money(1234, "USD"), "card_declined")
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
