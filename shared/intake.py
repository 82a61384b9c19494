"""Reading a `payment-events` queue message into a payment event, or saying exactly why not.

The wire format is CloudEvents 1.0 structured JSON (contract §1). Validation is declarative
(pydantic), and every refusal names the field, because a dead-lettered message is read by a
person who must fix the producer.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator

from shared.lifecycle.facts import (
    ChargeFailed,
    ChargeSucceeded,
    ChargeVoided,
    DeclineReason,
    PaymentEvent,
    PaymentMethodKind,
    PaymentReceived,
)
from shared.money import Money, MoneyError, is_currency

MAX_MESSAGE_BYTES = 16 * 1024
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
Identifier = Annotated[StrictStr, Field(pattern=ID_PATTERN)]


class Rejected(ValueError):
    """A message that is not a payment event: dead-lettered at once, never retried."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class _MoneyData(_Strict):
    amount: StrictStr
    currency: Annotated[StrictStr, Field(pattern=r"^[A-Z]{3}$")]

    def money(self) -> Money:
        if not is_currency(self.currency):
            raise Rejected(f"data.currency: unknown ISO 4217 currency code {self.currency!r}", "data.currency")
        try:
            money = Money.parse(self.amount, self.currency)
        except MoneyError as exc:
            raise Rejected(f"data.amount: {exc}", "data.amount") from exc
        if money.minor <= 0:
            raise Rejected(f"data.amount: must be greater than zero, got {self.amount!r}", "data.amount")
        return money


class _ChargeFailedData(_MoneyData):
    accountId: Identifier
    subscriptionId: Identifier
    chargeId: Identifier
    reason: DeclineReason


class _ChargeSucceededData(_MoneyData):
    accountId: Identifier
    subscriptionId: Identifier
    chargeId: Identifier


class _PaymentReceivedData(_MoneyData):
    accountId: Identifier
    paymentId: Identifier
    method: PaymentMethodKind
    chargeIds: Annotated[list[Identifier], Field(max_length=50)] | None = None

    @field_validator("chargeIds")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("charge ids must be distinct")
        return value


class _ChargeVoidedData(_Strict):
    accountId: Identifier
    chargeId: Identifier


_DATA_MODELS: dict[str, type[_Strict]] = {
    "billing.charge.failed": _ChargeFailedData,
    "billing.charge.succeeded": _ChargeSucceededData,
    "billing.payment.received": _PaymentReceivedData,
    "billing.charge.voided": _ChargeVoidedData,
}


class _Envelope(_Strict):
    specversion: Literal["1.0"]
    id: Annotated[StrictStr, Field(min_length=1, max_length=256)]
    type: StrictStr
    source: Annotated[StrictStr, Field(min_length=1, max_length=1024)]
    time: StrictStr
    data: dict[str, Any]

    @field_validator("time")
    @classmethod
    def _rfc3339(cls, value: str) -> str:
        parse_rfc3339(value)
        return value


def parse_rfc3339(value: str) -> datetime:
    """RFC 3339 exactly (date, `T`, time, offset), as CloudEvents requires; ValueError otherwise."""
    if not RFC3339.match(value):
        raise ValueError("must be an RFC 3339 timestamp with an offset, such as 2026-12-01T09:00:00Z")
    fraction = re.search(r"\.(\d+)", value)
    if fraction and len(fraction.group(1)) > 6:  # Python keeps microseconds
        value = value.replace(fraction.group(0), "." + fraction.group(1)[:6])
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not a valid timestamp: {exc}") from exc


def _first_error(exc: ValidationError, prefix: str = "") -> Rejected:
    err = exc.errors()[0]
    field = prefix + ".".join(str(p) for p in err["loc"])
    return Rejected(f"{field}: {err['msg']}", field or None)


def parse_message(body: bytes) -> tuple[PaymentEvent, str]:
    """Return the event and its CloudEvent type, or raise `Rejected` with the reason."""
    if len(body) > MAX_MESSAGE_BYTES:
        raise Rejected(f"message is {len(body)} bytes; at most {MAX_MESSAGE_BYTES} are accepted")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected("message is not UTF-8 text") from exc
    try:
        raw = json.loads(text, parse_float=_no_float, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise Rejected(f"message is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except Rejected:
        raise
    if not isinstance(raw, dict):
        raise Rejected("message must be a JSON object (a CloudEvent)")
    try:
        envelope = _Envelope.model_validate(raw)
    except ValidationError as exc:
        raise _first_error(exc) from exc
    model = _DATA_MODELS.get(envelope.type)
    if model is None:
        raise Rejected(f"type: unknown event type {envelope.type!r}", "type")
    try:
        data = model.model_validate(envelope.data)
    except ValidationError as exc:
        raise _first_error(exc, "data.") from exc
    return _to_event(envelope.id, data), envelope.type


def _no_float(text: str) -> Any:
    # A float in a money message is a producer bug; refuse it rather than guess its decimals.
    raise Rejected(f"numbers with a fraction ({text}) are not accepted: money is a decimal string")


def _no_constant(text: str) -> Any:
    raise Rejected(f"{text} is not valid JSON")


def _to_event(event_id: str, data: _Strict) -> PaymentEvent:
    if isinstance(data, _ChargeFailedData):
        return ChargeFailed(event_id, data.accountId, data.subscriptionId, data.chargeId, data.money(), data.reason)
    if isinstance(data, _ChargeSucceededData):
        return ChargeSucceeded(event_id, data.accountId, data.subscriptionId, data.chargeId, data.money())
    if isinstance(data, _PaymentReceivedData):
        return PaymentReceived(event_id, data.accountId, data.paymentId, data.money(), data.method,
                               tuple(data.chargeIds or ()))
    assert isinstance(data, _ChargeVoidedData)
    return ChargeVoided(event_id, data.accountId, data.chargeId)
