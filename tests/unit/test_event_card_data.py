"""Card data on the queue: refused in every field the product reads, harmless in the attributes it
ignores (an epoch-ms `sequence` passing Luhn, a digit-only span id), masked wherever text is kept."""

from __future__ import annotations

import json
import string
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.facts import PaymentReceived
from shared.inbound.card_data import contains_card_number, luhn
from shared.inbound.cloudevents import READ_ATTRIBUTES, Rejected, data_fields, parse_message
from shared.inbound.event_card_data import refuse_card_data_in_read_fields
from shared.services.dead_letters import dead_letter_content
from tests.malformed_cases import PAYMENT, VALID

EPOCH_MS = 1764477712343  # 2025-11-30T04:41:52.343Z, and Luhn-valid: about one epoch-ms in ten is
SPAN = "1234567890123452"  # a span id of digits only, Luhn-valid
TRACEPARENT = f"00-4bf92f3577b34da6a3ce929d0e0e4736-{SPAN}-01"
CARD = "4111 1111 1111 1111"


def _with_check_digit(body: str) -> str:
    return next(body + d for d in string.digits if luhn(body + d))


pans = st.integers(12, 18).flatmap(lambda n: st.text(string.digits, min_size=n, max_size=n)).map(_with_check_digit)


def test_the_examples_do_look_like_card_numbers() -> None:
    assert luhn(str(EPOCH_MS)) and contains_card_number(str(EPOCH_MS)) and contains_card_number(f"span {SPAN}")


def _applied(message: dict[str, Any]) -> None:
    text = json.dumps(message)
    refuse_card_data_in_read_fields(text)
    parse_message(text.encode())


IGNORED = {
    "epoch-ms sequence": {"sequence": EPOCH_MS},
    "epoch-ms sequence as text": {"sequence": str(EPOCH_MS)},
    "traceparent": {"traceparent": TRACEPARENT},
    "tracestate": {"tracestate": f"dd=p:{SPAN};s:1,rojo=00f067aa0ba902b7"},
    "card-looking extension": {"ordernumber": CARD},
    "cvv-named extension": {"cvv": "737"},
    "data field the contract does not define": {"data": {**VALID["data"], "note": CARD, "cardNumber": CARD}},
}


@pytest.mark.parametrize("extra", IGNORED.values(), ids=IGNORED.keys())
def test_card_like_values_in_ignored_attributes_do_not_refuse_a_valid_event(extra: dict[str, Any]) -> None:
    _applied({**VALID, **extra})


READ = {
    "id": {"id": f"evt-{CARD}"},
    "type": {"type": "billing.charge.4111111111111111"},
    "source": {"source": f"/shop/{CARD}"},
    "time": {"time": "4111111111111111"},
    "subject": {"subject": CARD},
    "data.reason": {"data": {**VALID["data"], "reason": CARD}},
    "data.amount": {"data": {**VALID["data"], "amount": 4111111111111111.0}},
    "data.chargeId": {"data": {**VALID["data"], "chargeId": "ch 4111 1111 1111 1111"}},  # no identifier
    "data.chargeIds.0": {**PAYMENT, "data": {**PAYMENT["data"], "chargeIds": ["4111 1111 1111 1111"]}},
    "data": {"data": CARD},
}


@pytest.mark.parametrize(("field", "extra"), READ.items(), ids=READ.keys())
def test_card_data_in_a_field_the_product_reads_is_refused_naming_it(field: str, extra: dict[str, Any]) -> None:
    with pytest.raises(Rejected) as refused:
        refuse_card_data_in_read_fields(json.dumps({**VALID, **extra}))
    assert "card data" in refused.value.reason and field in refused.value.reason
    assert not contains_card_number(refused.value.reason)  # where, never what


def test_a_defined_field_of_another_type_is_ignored_for_this_one() -> None:
    voided = {**VALID, "type": "billing.charge.voided", "data": {"accountId": "a", "chargeId": "c", "amount": CARD}}
    _applied(voided)
    assert "amount" in data_fields("billing.charge.failed") and "amount" not in data_fields("billing.charge.voided")
    assert data_fields("no.such.type") >= data_fields("billing.payment.received") | {"reason"}


names = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=20).filter(
    lambda n: n not in READ_ATTRIBUTES | {"data"})
values = st.one_of(pans, pans.map(int), st.integers(1_000_000_000_000, 9_999_999_999_999),
                   pans.map(lambda p: f"00-4bf92f3577b34da6a3ce929d0e0e4736-{p[:16].ljust(16, '0')}-01"),
                   st.text(max_size=40))


@given(st.dictionaries(names, values, max_size=5))
def test_no_ignored_extension_attribute_makes_a_valid_event_invalid(extensions: dict[str, Any]) -> None:
    _applied({**VALID, **extensions})


@given(pans, st.sampled_from(["source", "subject", "data.reason"]))
def test_a_card_number_in_any_read_free_text_field_is_refused(pan: str, field: str) -> None:
    message: dict[str, Any] = json.loads(json.dumps(VALID))
    node = message["data"] if field.startswith("data.") else message
    node[field.removeprefix("data.")] = f"x{pan}"
    with pytest.raises(Rejected, match="card data"):
        refuse_card_data_in_read_fields(json.dumps(message))


ID_FIELDS = ["id", "data.accountId", "data.subscriptionId", "data.chargeId"]
# Identifiers as billing engines write them, each Luhn-valid over its digits (about one in ten is).
def _dated_id(day: date, sequence: int) -> str:
    """`pay-20261201-00000001`-style, its 16 digits passing Luhn."""
    digits = _with_check_digit(f"{day:%Y%m%d}{sequence:07d}")
    return f"pay-{digits[:8]}-{digits[8:]}"


identifiers = st.one_of(
    st.builds(_dated_id, st.dates(date(2000, 1, 1), date(2099, 12, 31)), st.integers(0, 10**7 - 1)),
    pans,
    pans.map(lambda p: f"x{p}"),
    pans.map(lambda p: f"{p}.{p[:3]}"),
)


@given(identifiers, st.sampled_from(ID_FIELDS))
def test_an_identifier_is_applied_whatever_digits_it_holds(an_id: str, field: str) -> None:
    """Contract §1: an id matching the pattern is an identifier, never card data, and is kept whole."""
    message: dict[str, Any] = json.loads(json.dumps(VALID))
    node = message["data"] if field.startswith("data.") else message
    node[field.removeprefix("data.")] = an_id
    refuse_card_data_in_read_fields(json.dumps(message))
    event, _ = parse_message(json.dumps(message).encode())
    assert an_id in {event.event_id, event.account_id, getattr(event, "subscription_id", None),
                     getattr(event, "charge_id", None)}
    kept = dead_letter_content(json.dumps(message), "some other reason")
    assert not kept.redacted and json.loads(kept.text) == message


@given(st.lists(identifiers, min_size=1, max_size=5, unique=True))
def test_charge_ids_of_a_payment_are_identifiers_too(charge_ids: list[str]) -> None:
    message = {**PAYMENT, "data": {**PAYMENT["data"], "paymentId": charge_ids[0], "chargeIds": charge_ids}}
    refuse_card_data_in_read_fields(json.dumps(message))
    event, _ = parse_message(json.dumps(message).encode())
    assert isinstance(event, PaymentReceived)
    assert list(event.charge_ids) == charge_ids and event.payment_id == charge_ids[0]


def test_a_kept_malformed_message_is_masked_and_says_so_but_its_traceparent_is_kept() -> None:
    """A malformed event with the same attributes is dead-lettered: its text is kept with the
    epoch-ms masked (it cannot be told from a card number), and the traceparent whole."""
    text = json.dumps({**VALID, "sequence": EPOCH_MS, "traceparent": TRACEPARENT, "cvv": "737",
                       "data": {**VALID["data"], "amount": "twelve"}})
    with pytest.raises(Rejected, match=r"data\.amount"):
        parse_message(text.encode())
    kept = dead_letter_content(text, "data.amount: not a decimal")
    stored = json.loads(kept.text)
    assert kept.redacted and "redacted" in kept.reason and "sequence" in kept.reason
    assert stored["sequence"] == "*********2343" and "cvv" not in stored
    assert stored["traceparent"] == TRACEPARENT and stored["data"]["amount"] == "twelve"


def test_a_well_formed_traceparent_alone_is_kept_exactly() -> None:
    text = json.dumps({**VALID, "traceparent": TRACEPARENT, "data": {**VALID["data"], "amount": "x"}})
    kept = dead_letter_content(text, "data.amount: not a decimal")
    assert kept.text == text and not kept.redacted
    # Not in the W3C form (upper case, or elsewhere than the attribute): a digit run is masked as any.
    loose = dead_letter_content(json.dumps({**VALID, "traceparent": TRACEPARENT.upper() + "-x"}), "r")
    assert SPAN not in loose.text and loose.redacted
