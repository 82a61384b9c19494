"""Every log record carries the invocation, account and event it belongs to, as attributes
(Application Insights shows them as custom dimensions) and the current span as attributes
(`billing.account_id`, `cloudevents.event_id`, ...: contract §6), without threading them through calls,
and never a card number: whatever a message or a traceback quotes is masked to the last four
digits (`shared.inbound.card_data`) before any handler sees the record, also when a URL in it
percent-encodes the number (`4111%201111...`, `4111+1111...` in an access log line)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any
from urllib.parse import unquote_plus

from shared.inbound.card_data import contains_card_number, mask_card_numbers
from shared.telemetry.scrub import scrub
from shared.telemetry.tracing import set_attribute

_FIELDS: dict[str, ContextVar[str | None]] = {
    name: ContextVar(name, default=None)
    for name in ("invocation_id", "account_id", "subscription_id", "event_id", "event_type")
}
SPAN_ATTRIBUTES = {"invocation_id": "faas.invocation_id", "account_id": "billing.account_id",
                   "subscription_id": "billing.subscription_id", "event_id": "cloudevents.event_id",
                   "event_type": "cloudevents.event_type"}
_base_factory = logging.getLogRecordFactory()


def _factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    for name, var in _FIELDS.items():
        value = var.get()
        if value is not None and not hasattr(record, name):
            setattr(record, name, value)
    return _masked(record)


def _masked(record: logging.LogRecord) -> logging.LogRecord:
    """The record with card numbers masked in its message and its traceback text, and billing
    links and secrets in its message (`shared.telemetry.scrub`)."""
    try:
        message = record.getMessage()
    except Exception:  # a bad format string is the logging module's to report, not ours
        return record
    if ("%" in message or "+" in message) and contains_card_number(unquote_plus(message)):
        message = unquote_plus(message)  # a URL (an access log line) with `4111%201111...` or `4111+1111...`
    if (clean := scrub(message)) is not message:  # cards, billing links and secrets, in one pass
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        text = logging.Formatter().formatException(record.exc_info)
        if contains_card_number(text):
            record.exc_text = mask_card_numbers(text)
    return record


logging.setLogRecordFactory(_factory)


@contextlib.contextmanager
def log_context(**values: str | None) -> Iterator[None]:
    """Within the block, log records carry these values (invocation_id, account_id, ...); the
    current span gets them as attributes."""
    tokens = [(_FIELDS[k], _FIELDS[k].set(v)) for k, v in values.items() if k in _FIELDS and v is not None]
    for key, value in values.items():
        if key in SPAN_ATTRIBUTES:
            set_attribute(SPAN_ATTRIBUTES[key], value)
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current() -> dict[str, str]:
    return {k: v for k, var in _FIELDS.items() if (v := var.get()) is not None}
