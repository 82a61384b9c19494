"""The one card-number detector: every way of writing a card number is found and masked to its
last four digits; ids, times and amounts the product handles are not mistaken for one."""

from __future__ import annotations

import base64
import json
import string
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.inbound.card_data import (
    MASK,
    contains_card_number,
    find_card_numbers,
    is_card_field,
    luhn,
    mask_card_numbers,
    mask_escaped_card_numbers,
    redact_message,
)

SEPARATORS = [" ", "  ", "-", ".", "/", "\t", "\u00a0", "\u2009", "\u202f", "\u2013", "_", " - ", "\u200b", "\\",
              "    ", "\t" * 5, " \u00a0" * 4]


def _with_check_digit(body: str) -> str:
    return next(body + d for d in string.digits if luhn(body + d))


pans = st.integers(12, 18).flatmap(lambda n: st.text(string.digits, min_size=n, max_size=n)).map(_with_check_digit)


@st.composite
def written_pans(draw: st.DrawFn) -> tuple[str, str]:
    """A card number as a person or a program might write it, and its digits."""
    digits = draw(pans)
    sizes, left = [], len(digits)
    while left:
        size = draw(st.integers(1, min(6, left)))
        sizes.append(size)
        left -= size
    if draw(st.booleans()):
        sizes = [len(digits)]
    groups, pos = [], 0
    for size in sizes:
        groups.append(digits[pos:pos + size])
        pos += size
    text = groups[0]
    for group in groups[1:]:
        text += draw(st.sampled_from(SEPARATORS)) + group
    return text, digits


surroundings = st.text(alphabet=string.ascii_letters + " :=\"'{}[],;()#", max_size=20)


@settings(max_examples=300)
@given(written_pans(), surroundings, surroundings)
def test_a_card_number_however_separated_is_found_and_masked_to_its_last_four(
        written: tuple[str, str], before: str, after: str) -> None:
    text, digits = written
    before = before + " " if before and before[-1].isalnum() else before
    after = " " + after if after and after[0].isalnum() else after
    whole = before + text + after
    assert contains_card_number(whole)
    masked = mask_card_numbers(whole)
    assert not contains_card_number(masked)
    assert digits[-4:] in "".join(c for c in masked if c.isdigit())
    kept = [c for c in masked[len(before):len(masked) - len(after) or None] if c.isdigit()]
    assert "".join(kept) == digits[-4:]
    assert masked.count(MASK) - whole.count(MASK) == len(digits) - 4
    assert len(masked) == len(whole)


@pytest.mark.parametrize("text", [
    "4111 1111 1111 1111", "4111.1111.1111.1111", "4111  1111  1111  1111", "4111/1111/1111/1111",
    "4111\u00a01111\u00a01111\u00a01111", "4111\t1111\t1111\t1111", "4111-1111-1111-1111", "4111111111111111",
    "evt-4111111111111111", "billing.charge.4111111111111111", "tok_4111111111111111",
    "\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11",
    "3782 822463 10005", "card: 4111 1111 1111 1111 cvv 123", "order 12 4111 1111 1111 1111",
])
def test_the_forms_the_issue_names_are_card_numbers(text: str) -> None:
    assert contains_card_number(text)
    masked = mask_card_numbers(text)
    assert not contains_card_number(masked) and MASK * 4 in masked.replace(" ", "").replace("-", "")


@settings(max_examples=300)
@given(st.uuids(), st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9998, 1, 1)),
       st.integers(0, 10**12))
def test_ids_times_and_amounts_are_not_card_numbers(an_id: uuid.UUID, when: datetime, minor: int) -> None:
    at = when.replace(tzinfo=UTC)
    for text in (f"evt-{an_id.hex}", str(an_id), f"acc-{an_id.hex[:12]}", at.isoformat(),
                 at.isoformat().replace("+00:00", "Z"), (at + timedelta(microseconds=1)).strftime("%Y%m%dT%H%M%S%fZ"),
                 f"{minor // 100}.{minor % 100:02d}", f"{at:%Y-%m-%d %H:%M:%S},123"):
        assert not find_card_numbers(text), text


@pytest.mark.parametrize("text", ["card4111111111111111", "evt4111111111111111", "s4111111111111111",
                                  "x4111111111111111@contoso.example", "4111111111111111abcxyz", "0x4111111111111111",
                                  "cardnumber4111 1111 1111 1111exp"])
def test_a_card_number_flush_against_a_word_is_one(text: str) -> None:
    assert contains_card_number(text)
    assert "4111" not in mask_card_numbers(text) and mask_card_numbers(text).count("1111") == 1


@settings(max_examples=300)
@given(st.binary(min_size=8, max_size=32))
def test_hex_ids_and_hashes_are_not_card_numbers(raw: bytes) -> None:
    hex_id = raw.hex()
    if any(c in "abcdef" for c in hex_id):
        for text in (hex_id, f"evt-{hex_id}", f"op_{hex_id.upper()}", f"sha256:{hex_id}"):
            assert not contains_card_number(text), text


def test_digits_glued_to_more_digits_or_failing_luhn_are_not_card_numbers() -> None:
    assert not contains_card_number("4111 1111 1111 1112")
    assert not contains_card_number("411111111111")  # 12 digits
    assert not contains_card_number("41111111111111111111")  # 20 digits, one run


@pytest.mark.parametrize("name", ["cvv", "CVV", "cvc", "Cvc2", "cardNumber", "card_number", "Card-Number", "PAN",
                                  "securityCode", "security_code"])
def test_card_fields_are_known_by_name_in_any_case(name: str) -> None:
    assert is_card_field(name)


@pytest.mark.parametrize("name", ["id", "type", "reason", "amount", "chargeId", "accountId", "panel", "number"])
def test_ordinary_fields_are_not_card_fields(name: str) -> None:
    assert not is_card_field(name)


def test_a_message_without_card_data_is_kept_exactly() -> None:
    text = '{ "specversion": "1.0",  "id": "evt-1", "data": {"amount": "12.34"} }'
    assert redact_message(text).text == text and not redact_message(text).redacted


def test_a_json_message_loses_its_card_fields_and_keeps_the_last_four_digits() -> None:
    text = json.dumps({"specversion": "1.0", "id": "evt-1", "type": "billing.charge.failed",
                       "cardnumber": "4242424242424242", "CVV": 123,
                       "data": {"reason": "4111 1111 1111 1111", "amount": "4111-1111-1111-1111",
                                "nested": [{"Cvc": "999"}, 5555555555554444], "ok": "fine"}})
    redaction = redact_message(text)
    assert set(redaction.findings) == {"cardnumber", "CVV", "data.reason", "data.amount", "data.nested.0.Cvc",
                                       "data.nested.1"}
    kept = json.loads(redaction.text)
    assert kept["id"] == "evt-1" and kept["data"]["reason"] == "**** **** **** 1111"
    assert "cardnumber" not in kept and "CVV" not in kept and kept["data"]["nested"] == [{}, "************4444"]
    assert kept["data"]["ok"] == "fine" and not contains_card_number(redaction.text)
    assert "999" not in redaction.text and "4242" not in redaction.text and "123" not in redaction.text
    assert "4111" not in redaction.note and "data.reason" in redaction.note


def test_a_card_number_in_a_key_is_masked_too() -> None:
    redaction = redact_message('{"4111111111111111": "x"}')
    assert redaction.findings == ("************1111",) and "4111" not in redaction.text


def test_text_that_is_not_json_is_masked_and_loses_security_code_values() -> None:
    redaction = redact_message('{"id": "x", "cvv": "123", card 4111 1111 1111 1111')
    assert redaction.redacted and "123" not in redaction.text and "**** **** **** 1111" in redaction.text
    deep = "[" * 100_000 + '"4111111111111111"' + "]" * 100_000
    assert "4111111111111111" not in redact_message(deep).text


@pytest.mark.parametrize(("number", "kept"), [
    ("4111111111111111.0", "************1111.0"), ("4111111111111111", "************1111"),
    ("4111111111111111e0", "************1111e0"), ("-4111111111111111.25E+3", "-************1111.25E+3"),
])
def test_a_card_number_written_as_a_json_number_is_masked(number: str, kept: str) -> None:
    redaction = redact_message(f'{{"id": "evt-1", "data": {{"amount": {number}, "n": 1.50}}, "k": 7}}')
    assert redaction.findings == ("data.amount",)
    assert json.loads(redaction.text) == {"id": "evt-1", "data": {"amount": kept, "n": 1.5}, "k": 7}
    assert '"n":1.50' in redaction.text  # other numbers are kept as written


@pytest.mark.parametrize("literal", [
    r'"4111\u00201111\u00201111\u00201111"',
    r'"\u0034\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031"',
    r'"4111\t1111\n1111\/1111"', r'"card \uff14111 1111 1111 1111"',
])
def test_a_card_number_behind_json_escapes_is_masked_even_in_broken_json(literal: str) -> None:
    for text in ('{"id": "x", "data": {"reason": ' + literal + "}}", '{"id": "x", "data": {"reason": ' + literal + "}"):
        redaction = redact_message(text)
        assert redaction.redacted, text
        assert mask_escaped_card_numbers(redaction.text) == redaction.text
        assert "1111" in redaction.text and not contains_card_number(json.dumps(redaction.text))


def test_a_message_base64_encoded_by_mistake_is_redacted_inside_and_stays_base64() -> None:
    event = {"specversion": "1.0", "id": "evt-1", "data": {"reason": "4111 1111 1111 1111", "cvv": "737"}}
    redaction = redact_message(base64.b64encode(json.dumps(event).encode()).decode())
    assert redaction.findings == ("base64:data.reason", "base64:data.cvv")
    kept = json.loads(base64.b64decode(redaction.text))
    assert kept["data"] == {"reason": "**** **** **** 1111"}
    clean = base64.b64encode(json.dumps({"id": "evt-1", "data": {"amount": "12.00"}}).encode()).decode()
    assert redact_message(clean).text == clean and not redact_message(clean).redacted


@given(pans.filter(lambda p: len(p) >= 16).map(lambda p: p[:16]), st.binary(min_size=16, max_size=16), pans)
def test_a_traceparents_ids_are_no_card_number_but_one_beside_it_is(span: str, trace: bytes, pan: str) -> None:
    """W3C trace context, in a message or a log line: its span id may be all digits (and pass
    Luhn); the ids stay as they are, a card number written next to them is still masked."""
    traceparent = f"00-{trace.hex()}-{span}-01"
    assert find_card_numbers(f"traceparent={traceparent};") == []
    assert mask_card_numbers(f'"traceparent": "{traceparent}"') == f'"traceparent": "{traceparent}"'
    assert mask_card_numbers(f"{traceparent} card {pan}") == f"{traceparent} card {MASK * (len(pan) - 4)}{pan[-4:]}"


ACS_OPERATION_ID = "39684038-0819-5168-ad1c-e96a19fda06b"  # seen in a full run: 16 digits passing Luhn


@st.composite
def uuids_that_look_like_cards(draw: st.DrawFn) -> str:
    """A canonical UUID text, any case and form (plain, braces, `urn:uuid:`), often one whose
    first three groups are 16 digits passing Luhn, as about one random UUID in a million is."""
    if draw(st.booleans()):
        text = str(draw(st.uuids()))
    else:
        digits = draw(pans.filter(lambda p: len(p) >= 16).map(lambda p: p[:16]))
        digits = digits if luhn(digits) else _with_check_digit(digits[:15])
        tail = draw(st.binary(min_size=8, max_size=8)).hex()
        text = f"{digits[:8]}-{digits[8:12]}-{digits[12:]}-{tail[:4]}-{tail[4:]}"
    text = text.upper() if draw(st.booleans()) else text
    return draw(st.sampled_from(["{}", "{{{}}}", "urn:uuid:{}", "mail|{}", "(operation {})"])).format(text)


@settings(max_examples=300)
@given(uuids_that_look_like_cards(), surroundings, surroundings, st.sampled_from(" :=\"'{}[],;()#|/_-"))
def test_a_uuid_is_never_a_card_number_nor_changed_by_masking(an_id: str, before: str, after: str, edge: str) -> None:
    """An ACS operation id, a message id or an idempotency key is an identifier: never refused,
    masked in a log line, rewritten in a stored row or redacted in a dead letter."""
    text = f"{before}{edge}{an_id}{edge}{after}"
    assert find_card_numbers(text) == [] and not contains_card_number(text)
    assert mask_card_numbers(text) == text
    message = json.dumps({"operationId": an_id, "detail": text})
    assert redact_message(message).text == message and not redact_message(message).redacted


@given(uuids_that_look_like_cards(), pans, st.sampled_from([" card ", "; ", " ", "-", ","]))
def test_a_card_number_next_to_a_uuid_is_still_masked(an_id: str, pan: str, between: str) -> None:
    masked_pan = f"{MASK * (len(pan) - 4)}{pan[-4:]}"
    assert mask_card_numbers(f"{an_id}{between}{pan}") == f"{an_id}{between}{masked_pan}"
    assert mask_card_numbers(f"{pan}{between}{an_id}") == f"{masked_pan}{between}{an_id}"


def test_the_acs_operation_id_from_the_full_run_is_kept_as_it_is() -> None:
    assert luhn("".join(ACS_OPERATION_ID.split("-")[:3]))  # the reason it was taken for a card number
    line = f"account acc-1: payment_failed email sent to ap@contoso.example (operation {ACS_OPERATION_ID})"
    assert mask_card_numbers(line) == line
