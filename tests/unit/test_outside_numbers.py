"""The table of malformed numbers and times, run against every parser of outside text:
queue events (amount, time), the test clock's body, billing-link expiry, `DUNNING_*` settings.
Each entry is refused by each parser; none is ever read as a number or an instant."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from functions.accounts_api import page_request
from functions.operations_api import _parse_now
from shared.adapters.gateway.http import _charge_result, _whole
from shared.adapters.gateway.protocol import GatewayUnavailable
from shared.adapters.store.timeline import BadCursor, Cursor
from shared.domain.money import Money
from shared.domain.policy import PolicyError
from shared.inbound.account_body import InvalidRequest
from shared.inbound.cloudevents import Rejected, parse_message
from shared.inbound.numerals import parse_whole
from shared.inbound.rfc3339 import parse_rfc3339
from shared.settings import Settings
from shared.web.billing_links import LinkStatus, SignedLink, _signature, check
from tests.malformed_cases import (
    BAD_AMOUNTS,
    BAD_TIMES,
    BAD_WHOLE_NUMBERS,
    FOREIGN_DIGITS,
    GOOD_TIMES,
    PAYMENT,
    VALID,
    foreign,
)

BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}


def _event(time: str = "2026-12-01T09:00:00Z", amount: str = "12.34", currency: str = "USD") -> bytes:
    data = {**VALID["data"], "amount": amount, "currency": currency}
    return json.dumps({**VALID, "time": time, "data": data}).encode()


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
def test_queue_amounts_refused_naming_the_field(amount: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse_message(_event(amount=amount))
    assert caught.value.field == "data.amount"


@pytest.mark.parametrize("amount", BAD_WHOLE_NUMBERS)
def test_queue_whole_amounts_refused_in_a_currency_without_decimals(amount: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse_message(_event(amount=amount, currency="JPY"))
    assert caught.value.field == "data.amount"


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
def test_payment_amounts_refused_too(amount: str) -> None:
    payment = {**PAYMENT, "data": {**PAYMENT["data"], "amount": amount}}
    with pytest.raises(Rejected) as caught:
        parse_message(json.dumps(payment).encode())
    assert caught.value.field == "data.amount"


@pytest.mark.parametrize("text", BAD_TIMES)
def test_times_refused_by_the_rfc3339_parser(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(text)


@pytest.mark.parametrize("text", BAD_TIMES)
def test_event_times_refused_naming_the_field(text: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse_message(_event(time=text))
    assert caught.value.field == "time"


@pytest.mark.parametrize("text", BAD_TIMES)
def test_test_clock_times_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        _parse_now({"now": text})
    assert [p.field for p in caught.value.problems] == ["now"]


@pytest.mark.parametrize(("text", "utc"), GOOD_TIMES)
def test_valid_times_read_as_their_utc_instant(text: str, utc: str) -> None:
    assert parse_rfc3339(text) == datetime.fromisoformat(utc)
    assert parse_rfc3339(text).tzinfo is UTC
    parse_message(_event(time=text))


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9998, 12, 31),
                    timezones=st.just(UTC)))
def test_every_instant_round_trips(at: datetime) -> None:
    assert parse_rfc3339(at.isoformat().replace("+00:00", "Z")) == at


@given(st.integers(min_value=0, max_value=999), st.integers(min_value=0, max_value=999))
def test_fractions_are_truncated_never_rounded(milli: int, rest: int) -> None:
    stamp = f"2026-12-31T23:59:59.{milli:03d}999{rest:03d}Z"
    assert parse_rfc3339(stamp).microsecond == milli * 1000 + 999  # never rolls into the next year


@pytest.mark.parametrize("script", FOREIGN_DIGITS)
def test_billing_link_expiry_in_foreign_digits_is_refused(script: str) -> None:
    now, expires = datetime(2026, 12, 1, tzinfo=UTC), 1_900_000_000
    sig = _signature("k", "acc-1", expires, "v")  # signed for the value int() would read
    assert check("k", "acc-1", SignedLink(str(expires), "v", sig), 1, now) is not LinkStatus.INVALID
    assert check("k", "acc-1", SignedLink(foreign(str(expires), script), "v", sig), 1, now) is LinkStatus.INVALID


@pytest.mark.parametrize("text", BAD_WHOLE_NUMBERS)
def test_billing_link_expiry_refused(text: str) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert check("k", "acc-1", SignedLink(text, "v", "sig"), 1, now) is LinkStatus.INVALID


@pytest.mark.parametrize("text", BAD_WHOLE_NUMBERS)
def test_dunning_day_settings_refused(text: str) -> None:
    with pytest.raises(PolicyError, match="DUNNING_DISABLE_DAY"):
        Settings.from_env({**BASE, "DUNNING_DISABLE_DAY": text})


@pytest.mark.parametrize("text", [t for t in BAD_WHOLE_NUMBERS if t.strip()])
def test_dunning_day_list_settings_refused(text: str) -> None:
    with pytest.raises(PolicyError, match="DUNNING_RETRY_DAYS"):
        Settings.from_env({**BASE, "DUNNING_RETRY_DAYS": f"1,{text}"})


def test_plain_settings_still_read() -> None:
    policy = Settings.from_env({**BASE, "DUNNING_DISABLE_DAY": " 45 ", "DUNNING_RETRY_DAYS": "2, 4"}).policy
    assert policy.disable_day == 45 and policy.retry_days == (2, 4)


def test_valid_amounts_still_read() -> None:
    event, _ = parse_message(_event(amount="2500000000", currency="VND"))
    assert event.amount == Money(2_500_000_000, "VND")  # type: ignore[union-attr]
    assert parse_rfc3339("2026-12-01T09:00:00Z") + timedelta(0) == datetime(2026, 12, 1, 9, tzinfo=UTC)


def _gateway_answer(body: str) -> requests.Response:
    answer = requests.Response()
    answer.status_code, answer._content = 200, body.encode()
    return answer


@pytest.mark.parametrize("body", [
    '{"status": "succeeded", "createdAt": "２０２６-12-01T09:00:00Z", "idempotencyKey": "k", "amount": "1.00", '
    '"currency": "USD"}',
    '{"status": "succeeded", "createdAt": "2026-12-01T09:00:00Z", "idempotencyKey": "k", "amount": "１.00", '
    '"currency": "USD"}',
    '{"status": "succeeded", "status": "declined", "createdAt": "2026-12-01T09:00:00Z", "idempotencyKey": "k", '
    '"amount": "1.00", "currency": "USD"}',
    '{"status": "succeeded", "x": ' + "[" * 5000 + "]" * 5000 + "}",
])
def test_gateway_answers_with_foreign_digits_or_ambiguous_json_are_unreadable(body: str) -> None:
    with pytest.raises(GatewayUnavailable, match=r"unreadable|not JSON"):
        _charge_result(_gateway_answer(body))


@pytest.mark.parametrize("month", ['"１２"', '"12 "', "true", "12.0"])
def test_gateway_card_expiry_in_foreign_digits_is_unreadable(month: str) -> None:
    with pytest.raises(ValueError):
        _whole(json.loads(month))
    assert _whole(12) == _whole("12") == 12


@pytest.mark.parametrize("text", BAD_WHOLE_NUMBERS)
def test_the_whole_number_reader_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_whole(text)


@given(st.integers(min_value=0, max_value=10**18 - 1))
def test_the_whole_number_reader_reads_ascii_digits(n: int) -> None:
    assert parse_whole(str(n)) == n


@pytest.mark.parametrize("text", BAD_WHOLE_NUMBERS)
def test_timeline_page_limits_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        page_request({"limit": text})
    assert [p.field for p in caught.value.problems] == ["limit"]


@pytest.mark.parametrize("doc", [
    '{"r": "tl|' + foreign("000000000001", "Arabic-Indic") + '", "s": 0, "o": "oldest"}',
    '{"r": "tl|000000000001", "s": 0, "s": 1, "o": "oldest"}',
    '{"r": "tl|000000000001", "s": 0, "o": "oldest", "x": ' + "[" * 5000 + "]" * 5000 + "}",
])
def test_continuation_tokens_with_foreign_digits_or_odd_json_are_refused(doc: str) -> None:
    token = base64.urlsafe_b64encode(doc.encode()).decode()
    assert Cursor.parse(Cursor("tl|000000000001", 0, "oldest").token(), "oldest").skip == 0
    with pytest.raises(BadCursor):
        Cursor.parse(token, "oldest")


@pytest.mark.parametrize("tail", ["\n", "\r\n", " ", "\x00", "=", "==", "\u0661", "!"])
def test_continuation_tokens_end_where_the_text_ends(tail: str) -> None:
    token = Cursor("tl|000000000001", 3, "oldest").token()
    assert Cursor.parse(token, "oldest").skip == 3
    with pytest.raises(BadCursor):
        Cursor.parse(token + tail, "oldest")
