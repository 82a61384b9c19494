"""Reading a `payment-events` queue message into a payment event, or saying exactly why not.

The wire format is CloudEvents 1.0 structured JSON (contract §1). Validation is declarative
(pydantic), and every refusal names the field, because a dead-lettered message is read by a
person who must fix the producer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator

from shared.domain.declines import DeclineReason
from shared.domain.facts import (
    ChargeFailed,
    ChargeSucceeded,
    ChargeVoided,
    PaymentEvent,
    PaymentMethodKind,
    PaymentReceived,
)
from shared.domain.identifiers import ID_PATTERN
from shared.domain.money import Money, MoneyError, is_currency
from shared.inbound.json_reader import JsonRefused, read_json
from shared.inbound.rfc3339 import parse_rfc3339

MAX_MESSAGE_CHARS = 65_536  # what a Storage queue message holds (64 KiB of text)
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


READ_ATTRIBUTES = frozenset({"specversion", "id", "type", "source", "time", "subject"})
"""The CloudEvents attributes the product reads; any other is ignored (contract §1)."""


def data_fields(event_type: object) -> frozenset[str]:
    """The `data` fields contract §1 defines for `event_type`; for a type it does not define,
    every field it defines for any type."""
    models = [_DATA_MODELS[event_type]] if isinstance(event_type, str) and event_type in _DATA_MODELS \
        else list(_DATA_MODELS.values())
    return frozenset(name for model in models for name in model.model_fields)


def _first_error(exc: ValidationError, prefix: str = "") -> Rejected:
    err = exc.errors()[0]
    field = prefix + ".".join(str(p) for p in err["loc"])
    return Rejected(f"{field}: {err['msg']}", field or None)


def parse_message(body: bytes) -> tuple[PaymentEvent, str]:
    """Return the event and its CloudEvent type, or raise `Rejected` with the reason."""
    if len(body) > 4 * MAX_MESSAGE_CHARS:  # more than any 64K characters take in UTF-8: not decoded
        raise Rejected(f"message is {len(body)} bytes; at most {MAX_MESSAGE_CHARS} characters are accepted")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected("message is not UTF-8 text") from exc
    if len(text) > MAX_MESSAGE_CHARS:
        raise Rejected(f"message is {len(text)} characters; at most {MAX_MESSAGE_CHARS} are accepted")
    try:
        raw = read_json(text, fractions=False)
    except JsonRefused as exc:
        raise Rejected(exc.reason, exc.field) from exc
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
    return _to_event(envelope.id, data, parse_rfc3339(envelope.time)), envelope.type


def _to_event(event_id: str, data: _Strict, time: datetime) -> PaymentEvent:
    if isinstance(data, _ChargeFailedData):
        return ChargeFailed(event_id, data.accountId, data.subscriptionId, data.chargeId, data.money(), data.reason,
                            time)
    if isinstance(data, _ChargeSucceededData):
        return ChargeSucceeded(event_id, data.accountId, data.subscriptionId, data.chargeId, data.money())
    if isinstance(data, _PaymentReceivedData):
        return PaymentReceived(event_id, data.accountId, data.paymentId, data.money(), data.method,
                               tuple(data.chargeIds or ()))
    assert isinstance(data, _ChargeVoidedData)
    return ChargeVoided(event_id, data.accountId, data.chargeId)
