"""Spans, and the trace context the product carries across its own queue hops (contract §1, §4, §6).

The Functions host carries no trace context through Storage queues, so every message the product
sends carries the CloudEvents distributed-tracing attributes `traceparent` / `tracestate` (a
top-level member of its JSON), and every queue trigger continues the trace its message names.

When no exporter is configured the API's no-op tracer is in place: no span is made, but an
incoming `traceparent` is still passed on unchanged (the context is attached as is), so the
lifecycle events still carry the trace that caused them.

A `tracestate` is cleaned wherever context enters or leaves (`clean_context`): members holding a
card number or a secret are dropped (`shared.telemetry.traceparent`), so no span, message, outbox
row or outgoing header carries the raw value (issue 22); the trace itself always continues.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import requests
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from shared.inbound.json_reader import read_json
from shared.telemetry import state
from shared.telemetry.traceparent import clean_tracestate, parse_traceparent, parse_tracestate

F = TypeVar("F", bound=Callable[..., Any])
TRACER_NAME = "past-due-billing"
MESSAGING_SYSTEM = "azure_storage_queue"
"""`messaging.system`: the conventions name none for Storage queues; this is the product's value."""

_tracer = trace.get_tracer(TRACER_NAME)


# -- the W3C fields ---------------------------------------------------------------------------------


def span_context_of(traceparent: object, tracestate: object = None) -> SpanContext | None:
    """The remote parent a `traceparent` (and `tracestate`) names; None when it is malformed."""
    parsed = parse_traceparent(traceparent)
    if parsed is None:
        return None
    return SpanContext(parsed.trace_id, parsed.span_id, is_remote=True, trace_flags=TraceFlags(parsed.flags & 0xFF),
                       trace_state=TraceState(parse_tracestate(tracestate)))


def clean_context(span_context: SpanContext) -> SpanContext:
    """`span_context` itself, or a copy whose trace state has its unacceptable members dropped
    (one the product did not parse: the Functions host's, or another library's)."""
    if not span_context.trace_state:
        return span_context
    header = span_context.trace_state.to_header()
    clean = clean_tracestate(header)
    if clean == header:
        return span_context
    return SpanContext(span_context.trace_id, span_context.span_id, is_remote=span_context.is_remote,
                       trace_flags=span_context.trace_flags,
                       trace_state=TraceState(parse_tracestate(clean)))


def fields_of(span_context: SpanContext | None) -> dict[str, str]:
    """`{"traceparent": ..., "tracestate": ...}` for a message (tracestate only when not empty,
    and cleaned: never a member holding a card number or a secret)."""
    if span_context is None or not span_context.is_valid:
        return {}
    fields = {"traceparent": f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
                             f"{int(span_context.trace_flags):02x}"}
    if span_context.trace_state and (header := clean_tracestate(span_context.trace_state.to_header())):
        fields["tracestate"] = header
    return fields


def current_fields() -> dict[str, str]:
    """The trace fields of the current span, for a message about to be sent; {} outside any trace."""
    return fields_of(trace.get_current_span().get_span_context())


def message_fields(body: bytes | str) -> tuple[object, object]:
    """The top-level `traceparent` and `tracestate` of a JSON message, unchecked; (None, None) for
    anything else. Only a body that mentions `traceparent` is parsed (again)."""
    needle: bytes | str = b'"traceparent"' if isinstance(body, bytes) else '"traceparent"'
    if needle not in body:  # type: ignore[operator]  # bytes in bytes, str in str
        return None, None
    try:
        doc = read_json(body)
    except Exception:  # malformed JSON is the handler's to report; the trace is simply not continued
        return None, None
    if not isinstance(doc, dict):
        return None, None
    return doc.get("traceparent"), doc.get("tracestate")


# -- spans ------------------------------------------------------------------------------------------


def enabled() -> bool:
    """Whether a real tracer provider is in place (ours, or the one the Python worker configured)."""
    return state.tracing_on()


@contextlib.contextmanager
def span(name: str, *, kind: SpanKind = SpanKind.INTERNAL, parent: SpanContext | None = None,
         new_trace: bool = False, links: tuple[SpanContext, ...] = (),
         attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
    """A current span. `parent` (a remote context) wins over the current span; `new_trace` starts
    a trace of its own (with `links` to where it came from). Without a tracer provider nothing is
    made: the parent, if any, is attached as the current context so what is sent carries it on."""
    if parent is not None:
        ctx = trace.set_span_in_context(NonRecordingSpan(parent), otel_context.Context())
    elif new_trace:
        ctx = otel_context.Context()
    else:
        ctx = None
    if not enabled():
        if ctx is None:
            yield trace.get_current_span()
            return
        token = otel_context.attach(ctx)
        try:
            yield trace.get_current_span()
        finally:
            otel_context.detach(token)
        return
    with _tracer.start_as_current_span(name, context=ctx, kind=kind, attributes=attributes,
                                       links=[Link(c) for c in links if c.is_valid],
                                       record_exception=True, set_status_on_exception=True) as current:
        yield current


def annotate(**attributes: str | int | float | bool | None) -> None:
    """Set attributes on the current span (None values are skipped); nothing without a tracer."""
    if not enabled():
        return
    current = trace.get_current_span()
    if current.is_recording():
        for key, value in attributes.items():
            if value is not None:
                current.set_attribute(key.replace("__", "."), value)


def set_attribute(key: str, value: str | int | float | bool | None) -> None:
    if value is not None and enabled():
        current = trace.get_current_span()
        if current.is_recording():
            current.set_attribute(key, value)


# -- entry points -----------------------------------------------------------------------------------


def _messaging(queue: str, operation: str, kind: str) -> dict[str, str]:
    return {"messaging.system": MESSAGING_SYSTEM, "messaging.destination.name": queue,
            "messaging.operation": operation, "messaging.operation.type": kind,
            "messaging.operation.name": operation}


def queue_function(queue: str, *, new_trace: bool = False) -> Callable[[F], F]:
    """Decorate a queue-triggered function (`msg`, optional `context`): a CONSUMER span named after
    the function, continuing the trace the message's `traceparent` names (a malformed one is
    ignored), or, with `new_trace`, a trace of its own linked to it (a sweep step)."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(msg: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                body = msg.get_body()
                remote = span_context_of(*message_fields(body))
            except Exception:  # a message we cannot read is the function's to dead-letter
                remote = None
            context = kwargs.get("context")
            attributes = {**_messaging(queue, "process", "process"), "faas.trigger": "pubsub",
                          "messaging.message.id": getattr(msg, "id", None) or "",
                          **({"faas.invocation_id": context.invocation_id} if context is not None else {})}
            host = _host_context()
            parent = None if new_trace else remote or host
            links = tuple(c for c in (remote, host) if c is not None and c != parent)
            with span(fn.__name__, kind=SpanKind.CONSUMER, parent=parent, new_trace=new_trace or parent is None,
                      links=links, attributes=attributes):
                return fn(msg, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def timer_function(fn: F) -> F:
    """A timer-triggered function: a trace of its own (what it queues carries it on)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        host = _host_context()
        with span(fn.__name__, kind=SpanKind.INTERNAL, parent=host, new_trace=host is None,
                  attributes={"faas.trigger": "timer"}):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def http_function(route: str) -> Callable[[F], F]:
    """An HTTP-triggered function: a SERVER span (`{method} /api/{route}`) with the HTTP semantic
    conventions, continuing the caller's `traceparent` if it sent a valid one, else a trace of its
    own (a card update, a billing page visit). Never the query string: a billing link's is its key."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(req: Any, *args: Any, **kwargs: Any) -> Any:
            if not enabled():
                headers = getattr(req, "headers", {}) or {}
                remote = span_context_of(headers.get("traceparent"), headers.get("tracestate"))
                with span(fn.__name__, parent=remote):
                    return fn(req, *args, **kwargs)
            return _served(fn, route, req, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def _served(fn: Callable[..., Any], route: str, req: Any, *args: Any, **kwargs: Any) -> Any:
    headers = getattr(req, "headers", {}) or {}
    method = str(getattr(req, "method", "") or "GET").upper()
    host = _host_context()
    remote = span_context_of(headers.get("traceparent"), headers.get("tracestate"))
    attributes: dict[str, Any] = {"http.request.method": method, "http.route": f"/api/{route}",
                                  "url.scheme": "http", "faas.trigger": "http"}
    url = str(getattr(req, "url", "") or "")
    path = url.split("?", 1)[0].split("#", 1)[0]
    if "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    attributes["url.path"] = path
    if agent := headers.get("user-agent"):
        attributes["user_agent.original"] = str(agent)[:256]
    with span(f"{method} /api/{route}", kind=SpanKind.SERVER, parent=host or remote, new_trace=not (host or remote),
              attributes=attributes) as current:
        response = fn(req, *args, **kwargs)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            current.set_attribute("http.response.status_code", status)
            if status >= 500:
                current.set_status(Status(StatusCode.ERROR))
                current.set_attribute("error.type", str(status))
        return response


def _host_context() -> SpanContext | None:
    """The Functions host's invocation span the Python worker made current (Azure), if any."""
    found = trace.get_current_span().get_span_context()
    return clean_context(found) if found.is_valid else None


# -- sending ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def producer(queue: str, stored: Mapping[str, Any] | None = None,
             attributes: Mapping[str, Any] | None = None) -> Iterator[dict[str, str]]:
    """A PRODUCER span for one message to `queue`, child of the trace context `stored` with the
    outbox row (the decision's), else of the current one; yields the fields the message carries."""
    parent = span_context_of(stored.get("traceparent"), stored.get("tracestate")) if stored else None
    with span(f"send {queue}", kind=SpanKind.PRODUCER, parent=parent,
              attributes={**_messaging(queue, "send", "send"), **(attributes or {})}):
        yield current_fields()


def stored_or_current(stored: Mapping[str, Any], fallback: Mapping[str, str]) -> dict[str, str]:
    """The trace fields an outbox row carries (its decision's, its `tracestate` cleaned: a row
    written before it was cleaned forwards no raw value), else `fallback`."""
    if span_context_of(stored.get("traceparent")) is not None:
        fields = {"traceparent": str(stored["traceparent"])}
        if header := clean_tracestate(stored.get("tracestate")):
            fields["tracestate"] = header
        return fields
    return dict(fallback)


R = TypeVar("R")


def with_trace(row: R) -> R:
    """An outbox row (a lifecycle event, an email) with the current trace fields in its payload,
    so whoever carries it out (this run, a redelivery, a sweep) continues the decision's trace."""
    payload = getattr(row, "payload", None)
    if isinstance(payload, dict) and getattr(row, "kind", None) in ("lifecycle", "email"):
        fields = current_fields()
        if fields:
            payload.update(fields)
    return row


class TracingSession(requests.Session):
    """A `requests.Session` whose every request is a CLIENT span (HTTP semantic conventions) and
    carries W3C `traceparent` / `tracestate`: the gateway adapters' transport."""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        verb = (method.decode() if isinstance(method, bytes) else method).upper()
        target = url.decode() if isinstance(url, bytes) else url
        scheme, _, rest = target.partition("://")
        hostport, _, path = rest.partition("/")
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
        attributes: dict[str, Any] = {"http.request.method": verb, "server.address": host or hostport,
                                      "url.full": target.split("?", 1)[0], "url.scheme": scheme}
        if port.isdigit():
            attributes["server.port"] = int(port)
        with span(f"{verb} {_template('/' + path.split('?', 1)[0])}", kind=SpanKind.CLIENT,
                  attributes=attributes) as current:
            kwargs["headers"] = {**dict(kwargs.get("headers") or {}), **current_fields()}
            response = super().request(verb, target, *args, **kwargs)
            if current.is_recording():
                current.set_attribute("http.response.status_code", response.status_code)
                if response.status_code >= 400:
                    current.set_attribute("error.type", str(response.status_code))
                if response.status_code >= 500:
                    current.set_status(Status(StatusCode.ERROR))
            return response


def _template(path: str) -> str:
    """A low-cardinality span name: ids in the path become `{id}`."""
    parts = path.split("/")
    return "/".join(p if not p or (p.isalpha() or p in ("v1", "v2")) else "{id}" for p in parts)


def event_grid_function(fn: F) -> F:
    """An Event Grid-triggered function: a CONSUMER span in the host's trace, else a trace of its own."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        host = _host_context()
        with span(fn.__name__, kind=SpanKind.CONSUMER, parent=host, new_trace=host is None,
                  attributes={"faas.trigger": "pubsub", "messaging.system": "eventgrid",
                              "messaging.operation": "process", "messaging.operation.type": "process"}):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def message_type(body: bytes | str) -> str | None:
    """A JSON message's top-level `type` (a CloudEvent's), for counting a dead letter; None if none."""
    try:
        doc = read_json(body)
    except Exception:
        return None
    kind = doc.get("type") if isinstance(doc, dict) else None
    return kind if isinstance(kind, str) else None
