"""Malformed `payment-events` messages, each with the field its dead-letter reason must name.
Shared by the unit test of the intake and the end-to-end test through the queue."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

VALID: dict[str, Any] = {
    "specversion": "1.0", "id": "evt-valid-1", "type": "billing.charge.failed", "source": "/billing-engine",
    "time": "2026-12-01T09:00:00Z",
    "data": {"accountId": "acc-bad", "subscriptionId": "s1", "chargeId": "c1", "amount": "12.34",
             "currency": "USD", "reason": "card_declined"},
}
PAYMENT: dict[str, Any] = {
    **VALID, "type": "billing.payment.received",
    "data": {"accountId": "acc-bad", "paymentId": "p1", "amount": "5.00", "currency": "USD", "method": "wire"},
}


def _mutate(base: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> str:
    event = copy.deepcopy(base)
    change(event)
    return json.dumps(event)


def _data(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(e: dict[str, Any]) -> None:
        for k, v in fields.items():
            if v is _DROP:
                e["data"].pop(k)
            else:
                e["data"][k] = v
    return change


def _top(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(e: dict[str, Any]) -> None:
        for k, v in fields.items():
            if v is _DROP:
                e.pop(k)
            else:
                e[k] = v
    return change


_DROP = object()

# Numbers and times as producers, forms and settings must not send them, for EVERY parser of
# outside text (tests/unit/test_outside_numbers.py): each is refused, never read as a number.
FOREIGN_DIGITS: dict[str, str] = {
    "full-width": "０１２３４５６７８９", "Arabic-Indic": "٠١٢٣٤٥٦٧٨٩", "Persian": "۰۱۲۳۴۵۶۷۸۹",
    "Devanagari": "०१२३४५६७८९", "Bengali": "০১২৩৪৫৬৭৮৯", "Thai": "๐๑๒๓๔๕๖๗๘๙", "Mongolian": "᠐᠑᠒᠓᠔᠕᠖᠗᠘᠙",
    "mathematical bold": "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗",
}


def foreign(text: str, script: str) -> str:
    """`text` with its ASCII digits written in another script's digits."""
    return text.translate(str.maketrans("0123456789", FOREIGN_DIGITS[script]))


# Whole numbers (days, expiry seconds, amounts without decimals): each is refused.
BAD_WHOLE_NUMBERS: list[str] = [
    *(foreign("30", script) for script in FOREIGN_DIGITS), "3０", "²", "1e3", "3E1", "1_000", "+30", "-30", "0x1e",
    "NaN", "nan", "Infinity", "-Infinity", "inf", "", " ", "30.0", "30.", ".5", "3 0", "30\n\n", "\u00a030", "三十",
]
# Decimal amounts in a two-decimal currency: each is refused.
BAD_AMOUNTS: list[str] = [
    *(foreign("12.34", script) for script in FOREIGN_DIGITS), "12.3４", "1e3", "1.5E2", "12.34e0", "1_000.00", "+12.34",
    "NaN", "Infinity", "-Infinity", "inf", "0x10", " 12.34", "12.34 ", "12.34\n", "12,34", ".50", "12.", "", "-",
    "1.2.3", "12.345", "1234567890123456789012345678.91", "10000000000000000.00", "9" * 5000,
]
# Times: each is refused.
BAD_TIMES: list[str] = [
    *(foreign("2026-12-01T09:00:00Z", script) for script in FOREIGN_DIGITS), "2026-12-01T09:00:0０Z",
    "2026-12-01T09:00:00", "2026-12-01 09:00:00Z", "2026-12-01T09:00Z", "2026-12-01", "20261201T090000Z",
    "2026-12-01T09:00:00+24:00", "2026-12-01T09:00:00+23:60", "2026-12-01T09:00:00+0100", "2026-12-01T09:00:00+01",
    "2026-12-01T09:00:00.1234567890Z", "2026-12-01T09:00:00.Z", "2026-12-01T24:00:00Z", "2026-12-01T09:60:00Z",
    "2026-12-01T09:00:60Z", "2026-12-31T22:59:60Z", "2026-02-30T09:00:00Z", "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59-01:00", "2026-12-01T09:00:00Z\n", " 2026-12-01T09:00:00Z", "+2026-12-01T09:00:00Z",
    "2026-12-01T09:00:00.5e3Z", "NaN", "",
]
# Times that are valid RFC 3339, with the UTC instant each means.
GOOD_TIMES: list[tuple[str, str]] = [
    ("2026-12-01T09:00:00Z", "2026-12-01T09:00:00+00:00"),
    ("2026-12-01t09:00:00z", "2026-12-01T09:00:00+00:00"),
    ("2026-12-01T09:00:00.1234567Z", "2026-12-01T09:00:00.123456+00:00"),  # Azure's 7 digits, truncated
    ("2026-12-01T09:00:00.999999999Z", "2026-12-01T09:00:00.999999+00:00"),  # 9 digits, never rounded up
    ("2026-12-01T09:00:00.5+05:30", "2026-12-01T03:30:00.500000+00:00"),
    ("2026-12-01T09:00:00-00:00", "2026-12-01T09:00:00+00:00"),
    ("2026-12-01T09:00:00+23:59", "2026-11-30T09:01:00+00:00"),
    ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999999+00:00"),  # a leap second
    ("2017-01-01T00:59:60+01:00", "2016-12-31T23:59:59.999999+00:00"),
]

# (name, message text, a word the reason must contain)
CASES: list[tuple[str, str, str]] = [
    ("not json", "this is not json", "not JSON"),
    ("truncated json", json.dumps(VALID)[:-5], "not JSON"),
    ("json array", "[1, 2, 3]", "JSON object"),
    ("json string", '"billing.charge.failed"', "JSON object"),
    ("json null", "null", "JSON object"),
    ("NaN literal", json.dumps(VALID).replace('"12.34"', "NaN"), "NaN"),
    ("missing specversion", _mutate(VALID, _top(specversion=_DROP)), "specversion"),
    ("wrong specversion", _mutate(VALID, _top(specversion="0.3")), "specversion"),
    ("missing id", _mutate(VALID, _top(id=_DROP)), "id"),
    ("id not a string", _mutate(VALID, _top(id=123)), "id"),
    ("empty id", _mutate(VALID, _top(id="")), "id"),
    ("missing type", _mutate(VALID, _top(type=_DROP)), "type"),
    ("unknown type", _mutate(VALID, _top(type="billing.charge.refunded")), "unknown event type"),
    ("missing source", _mutate(VALID, _top(source=_DROP)), "source"),
    ("missing time", _mutate(VALID, _top(time=_DROP)), "time"),
    ("time not a timestamp", _mutate(VALID, _top(time="yesterday")), "time"),
    ("time without offset", _mutate(VALID, _top(time="2026-12-01T09:00:00")), "time"),
    ("missing data", _mutate(VALID, _top(data=_DROP)), "data"),
    ("data not an object", _mutate(VALID, _top(data="charge failed")), "data"),
    ("missing accountId", _mutate(VALID, _data(accountId=_DROP)), "data.accountId"),
    ("accountId with a slash", _mutate(VALID, _data(accountId="acc/1")), "data.accountId"),
    ("accountId too long", _mutate(VALID, _data(accountId="a" * 65)), "data.accountId"),
    ("chargeId not a string", _mutate(VALID, _data(chargeId=42)), "data.chargeId"),
    ("missing subscriptionId", _mutate(VALID, _data(subscriptionId=_DROP)), "data.subscriptionId"),
    ("amount as a float", _mutate(VALID, _data(amount=12.34)), "decimal string"),
    ("amount as an integer", _mutate(VALID, _data(amount=12)), "data.amount"),
    ("amount with too many decimals", _mutate(VALID, _data(amount="12.345")), "decimal places"),
    ("yen with decimals", _mutate(VALID, _data(amount="1.5", currency="JPY")), "decimal places"),
    ("negative amount", _mutate(VALID, _data(amount="-5.00")), "greater than zero"),
    ("zero amount", _mutate(VALID, _data(amount="0.00")), "greater than zero"),
    ("amount in exponent form", _mutate(VALID, _data(amount="1e3")), "plain decimal"),
    ("amount not a number", _mutate(VALID, _data(amount="twelve")), "decimal"),
    ("missing amount", _mutate(VALID, _data(amount=_DROP)), "data.amount"),
    ("lowercase currency", _mutate(VALID, _data(currency="usd")), "data.currency"),
    ("unknown currency", _mutate(VALID, _data(currency="ABC")), "currency"),
    ("test currency", _mutate(VALID, _data(currency="XXX")), "currency"),
    ("unknown decline reason", _mutate(VALID, _data(reason="stolen")), "data.reason"),
    ("unknown payment method", _mutate(PAYMENT, _data(method="bitcoin")), "data.method"),
    ("chargeIds not a list", _mutate(PAYMENT, _data(chargeIds="c1")), "data.chargeIds"),
    ("chargeIds repeated", _mutate(PAYMENT, _data(chargeIds=["c1", "c1"])), "distinct"),
    ("bad id inside chargeIds", _mutate(PAYMENT, _data(chargeIds=["ok", "no way"])), "data.chargeIds"),
    # issue 13: limits of numbers, text and JSON
    ("amount in full-width digits", _mutate(VALID, _data(amount="１２.３４")), "data.amount"),
    ("amount in Arabic-Indic digits", _mutate(VALID, _data(amount="١٢.٣٤")), "data.amount"),
    ("amount in Devanagari digits", _mutate(VALID, _data(amount="१२.३४")), "data.amount"),
    ("amount past the largest", _mutate(VALID, _data(amount="1000000000000000000", currency="VND")), "data.amount"),
    ("amount past Decimal's precision", _mutate(PAYMENT, _data(amount="1234567890123456789012345678.91")),
     "data.amount"),
    ("amount of 5,000 digits", _mutate(VALID, _data(amount="9" * 5000)), "data.amount"),
    ("amount with underscores", _mutate(VALID, _data(amount="1_000.00")), "data.amount"),
    ("amount with a plus sign", _mutate(VALID, _data(amount="+12.34")), "data.amount"),
    ("amount NaN as a string", _mutate(VALID, _data(amount="NaN")), "data.amount"),
    ("amount Infinity as a string", _mutate(VALID, _data(amount="Infinity")), "data.amount"),
    ("time in full-width digits", _mutate(VALID, _top(time="２０２６-１２-０１T09:00:00Z")), "time"),
    ("time with offset +24:00", _mutate(VALID, _top(time="2026-12-01T09:00:00+24:00")), "time"),
    ("time with a false leap second", _mutate(VALID, _top(time="2026-12-01T09:00:60Z")), "time"),
    ("time with a trailing newline", _mutate(VALID, _top(time="2026-12-01T09:00:00Z\n")), "time"),
    ("duplicate amount", json.dumps(VALID).replace('"amount": "12.34"', '"amount": "1.00", "amount": "900.00"'),
     "data.amount"),
    ("duplicate accountId", json.dumps(VALID).replace('"accountId": "acc-bad"',
                                                      '"accountId": "acc-bad", "accountId": "acc-other"'),
     "data.accountId"),
    ("duplicate type", json.dumps(VALID).replace('"type": "billing.charge.failed"',
                                                 '"type": "billing.charge.failed", "type": "billing.charge.voided"'),
     "type"),
    ("5,000-deep nested extension", json.dumps(VALID)[:-1] + ', "ext": ' + "[" * 5000 + "]" * 5000 + "}", "nested"),
    ("5,000-digit JSON number", json.dumps(VALID)[:-1] + ', "ext": ' + "9" * 5000 + "}", "number"),
    ("accountId with a trailing newline", _mutate(VALID, _data(accountId="acc-1\n")), "data.accountId"),
    ("chargeId with a trailing newline", _mutate(VALID, _data(chargeId="c1\n")), "data.chargeId"),
    ("currency with a trailing newline", _mutate(VALID, _data(currency="USD\n")), "data.currency"),
]
