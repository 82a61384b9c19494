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
    ("oversize", _mutate(VALID, _top(padding="x" * 20_000)), "bytes"),
]
