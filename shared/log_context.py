"""Every log record carries the invocation, account and event it belongs to, as attributes
(Application Insights shows them as custom dimensions), without threading them through calls."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

_FIELDS: dict[str, ContextVar[str | None]] = {
    name: ContextVar(name, default=None) for name in ("invocation_id", "account_id", "subscription_id", "event_id")
}
_base_factory = logging.getLogRecordFactory()


def _factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    for name, var in _FIELDS.items():
        value = var.get()
        if value is not None and not hasattr(record, name):
            setattr(record, name, value)
    return record


logging.setLogRecordFactory(_factory)


@contextlib.contextmanager
def log_context(**values: str | None) -> Iterator[None]:
    """Within the block, log records carry these values (invocation_id, account_id, ...)."""
    tokens = [(_FIELDS[k], _FIELDS[k].set(v)) for k, v in values.items() if k in _FIELDS and v is not None]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current() -> dict[str, str]:
    return {k: v for k, var in _FIELDS.items() if (v := var.get()) is not None}
