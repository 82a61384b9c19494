"""The Event Grid webhook the Functions host exposes: `/runtime/webhooks/eventgrid?functionName=`.

Event Grid POSTs a JSON array and says what it is in the `aeg-event-type` header:
`SubscriptionValidation` (echo `data.validationCode` back), `Notification` (run the function
once per event, in order; 200 only if every one succeeded, else 500 so Event Grid retries the
batch) or `Unsubscribe` (202). Each event stands on its own: one that is not an event object or
whose time cannot be read (which Event Grid itself never publishes) is skipped with a log line
naming it and why, and the others are delivered; only a body that is not a JSON object or array
of them as a whole is a 400. Events in the Event Grid schema become `func.EventGridEvent`;
events carrying `specversion` become `func.CloudEvent`, as the worker's converter does.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import azure.functions as func

from .exchange import Reply, Request
from .invoker import Invoker
from .loader import FunctionSpec

log = logging.getLogger("devstack.host")
PATH = "runtime/webhooks/eventgrid"
_CLOUD_EVENT_FIELDS = {
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "datacontenttype",
    "dataschema",
    "data",
}


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 with 'Z' and Event Grid's 7 fractional digits (Python accepts at most 6)."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not value.isascii():  # fromisoformat takes any script's digits
        raise ValueError(f"event time must be an RFC 3339 string in ASCII, got {value!r}")
    text = re.sub(r"(\.[0-9]{6})[0-9]+", r"\1", value.strip()).replace("Z", "+00:00").replace("z", "+00:00")
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _get(event: Mapping[str, Any], key: str) -> Any:
    """A field or None; the SDK's constructors are typed for complete events, ours may not be."""
    return event.get(key)


def build_event(event: Mapping[str, Any]) -> func.EventGridEvent | func.CloudEvent:
    """The object the worker would pass for one event; ValueError when it is not an event."""
    if "specversion" in event:
        extensions = {k: v for k, v in event.items() if k not in _CLOUD_EVENT_FIELDS}
        return func.CloudEvent(
            id=_get(event, "id"),
            source=_get(event, "source"),
            type=_get(event, "type"),
            specversion=_get(event, "specversion"),
            time=parse_time(_get(event, "time")),
            subject=_get(event, "subject"),
            datacontenttype=_get(event, "datacontenttype"),
            dataschema=_get(event, "dataschema"),
            data=_get(event, "data"),
            **extensions,
        )
    return func.EventGridEvent(
        id=_get(event, "id"),
        data=_get(event, "data"),
        topic=_get(event, "topic"),
        subject=_get(event, "subject"),
        event_type=_get(event, "eventType"),
        event_time=parse_time(_get(event, "eventTime")),
        data_version=_get(event, "dataVersion"),
    )


class EventGridWebhook:
    """Delivers webhook batches to the named `eventGridTrigger` function."""

    def __init__(self, functions: Mapping[str, FunctionSpec], invoker: Invoker) -> None:
        self._functions = {name.lower(): spec for name, spec in functions.items()}
        self._invoker = invoker

    @staticmethod
    def owns(path: str) -> bool:
        return path.strip("/").lower() == PATH

    async def handle(self, request: Request) -> Reply:
        if request.method == "OPTIONS":  # CloudEvents webhook abuse-protection handshake
            origin = request.header("webhook-request-origin") or "*"
            return Reply.empty(200, [("webhook-allowed-origin", origin), ("allow", "OPTIONS, POST")])
        if request.method != "POST":
            return Reply.empty(405, [("allow", "OPTIONS, POST")])
        name = request.query().get("functionName", "")
        spec = self._functions.get(name.lower())
        if spec is None:
            return Reply.text(404, f"no eventGridTrigger function named {name!r}")
        try:
            body = json.loads(request.body)
        except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, a huge number, deep nesting
            return Reply.text(400, f"body is not JSON: {type(exc).__name__}: {str(exc)[:200]}")
        events = body if isinstance(body, list) else [body]
        if events and not any(isinstance(e, dict) for e in events):
            return Reply.text(400, "body must be a JSON array of event objects")
        kind = (request.header("aeg-event-type") or "").strip().lower()
        if kind == "subscriptionvalidation":
            return self._validate(events)
        if kind == "unsubscribe":
            return Reply.empty(202)
        if kind != "notification":
            return Reply.text(400, "aeg-event-type must be SubscriptionValidation, Notification or Unsubscribe")
        return await self._deliver(spec, events)

    @staticmethod
    def _validate(events: list[Any]) -> Reply:
        data = events[0].get("data") if events and isinstance(events[0], dict) else None
        code = data.get("validationCode") if isinstance(data, dict) else None
        if not code or not isinstance(code, str):
            return Reply.text(400, "SubscriptionValidation without a data.validationCode string")
        return Reply.json(200, {"validationResponse": code})

    async def _deliver(self, spec: FunctionSpec, events: list[Any]) -> Reply:
        failed = 0
        for n, raw in enumerate(events):
            event = _built_or_none(raw, n)
            if event is None:
                continue
            reason = f"(Event Grid event {raw.get('id')!r}, type {raw.get('eventType') or raw.get('type')!r})"
            outcome = await self._invoker.invoke(spec, event, reason)
            failed += not outcome.ok
        if failed:
            return Reply.text(500, f"{failed} of {len(events)} event(s) failed")
        return Reply.empty(200)


def _built_or_none(raw: Any, n: int) -> func.EventGridEvent | func.CloudEvent | None:
    """The event at position `n` of the batch, or None once logged as skipped (never redelivered:
    it could only fail the same way)."""
    if not isinstance(raw, dict):
        log.warning("Event Grid batch item %d skipped: not an event object", n)
        return None
    try:
        return build_event(raw)
    except (ValueError, TypeError) as exc:
        log.warning("Event Grid event %r (item %d) skipped: not an Event Grid event: %s",
                    str(raw.get("id"))[:80], n, str(exc)[:200])
        return None
