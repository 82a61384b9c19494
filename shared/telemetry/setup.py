"""Configuring OpenTelemetry once per process (contract §6), from the environment:

* `APPLICATIONINSIGHTS_CONNECTION_STRING`: the Azure Monitor distribution
  (`azure-monitor-opentelemetry`). With `PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true` (what
  `infra/` deploys) the Python worker has called `configure_azure_monitor()` already: it is not
  called twice; only the product's scrubbing is added to the providers the worker set.
* `OTEL_EXPORTER_OTLP_ENDPOINT`: OTLP/HTTP (protobuf) exporters for traces, metrics and logs; the
  SDK reads the standard `OTEL_*` variables (`OTEL_BSP_SCHEDULE_DELAY`, `OTEL_METRIC_EXPORT_INTERVAL`,
  `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, ...).
* neither: nothing; the API's no-op providers stay, and every span, counter and log call costs a
  function call.

In every configured case azure-core's OpenTelemetry plugin turns the Storage and ACS SDK calls into
spans, and `ScrubbingSpanProcessor` / `ScrubbingLogProcessor` mask card numbers, secrets and
billing links in every span and log record before any exporter sees it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any, Literal

from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event as SpanEvent
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanContext, Status
from opentelemetry.util.types import Attributes

from shared.telemetry.scrub import scrub, scrub_attributes, scrub_value
from shared.telemetry.tracing import clean_context

log = logging.getLogger(__name__)
SERVICE_NAME = "past-due-billing"
Mode = Literal["azure_monitor", "azure_monitor_by_worker", "otlp", "off"]
_lock = threading.Lock()
_mode: list[Mode] = []
_QUIET_LOGGERS = ("opentelemetry", "azure.monitor", "urllib3", "azure.core.pipeline.policies.http_logging_policy")


class ScrubbingSpanProcessor(SpanProcessor):
    """Masks every span's name, attributes, events (exceptions included) and status text while it
    ends, before any processor exports it (`_on_ending` runs for all processors before `on_end`);
    drops the `tracestate` members holding a card number or a secret from its context, its
    parent's and its links' (whatever context it was started from: issue 22)."""

    def _on_ending(self, span: Span) -> None:
        try:
            _scrub_span(span)
        except Exception:  # never break the code being traced
            log.debug("span scrubbing failed", exc_info=True)

    def on_end(self, span: ReadableSpan) -> None:
        return None


def _scrub_span(span: Any) -> None:
    # The SDK's span is still ours to change here; its attributes are frozen just before, so the
    # changed ones are replaced as a whole (private fields of opentelemetry-sdk 1.45, pinned).
    name = scrub(span._name)
    if name is not span._name:
        span._name = name
    clean = scrub_attributes(span._attributes)
    if clean is not None:
        span._attributes = _frozen(span._attributes, clean)
    if span._events:
        events = [_scrub_event(e) for e in span._events]
        if any(a is not b for a, b in zip(events, span._events, strict=True)):
            span._events = _replaced(span._events, events)
    description = span._status.description
    if description and scrub(description) is not description:
        span._status = Status(span._status.status_code, scrub(description))
    _clean_trace_states(span)


def _clean_trace_states(span: Any) -> None:
    """The span's own, its parent's and its links' trace states without unacceptable members."""
    for field in ("_context", "_parent"):
        context = getattr(span, field, None)
        if isinstance(context, SpanContext) and context.trace_state:
            clean = clean_context(context)
            if clean is not context:
                setattr(span, field, clean)
    links = getattr(span, "_links", None)
    if links and any(link.context.trace_state for link in links):
        cleaned = [link if clean_context(link.context) is link.context
                   else Link(clean_context(link.context), link.attributes) for link in links]
        if any(a is not b for a, b in zip(cleaned, links, strict=True)):
            span._links = _replaced(links, cleaned)


def _scrub_event(event: SpanEvent) -> SpanEvent:
    clean = scrub_attributes(event.attributes)
    name = scrub(event.name)
    if clean is None and name is event.name:
        return event
    return SpanEvent(name, clean if clean is not None else event.attributes, event.timestamp)


def _replaced(original: Any, items: list[SpanEvent] | list[Link]) -> Any:
    """A span's events or links as the SDK keeps them (an append-only `BoundedList`, which has no
    `clear`), now `items`, with its bound and its count of dropped ones."""
    from opentelemetry.sdk.util import BoundedList

    replaced = BoundedList.from_seq(getattr(getattr(original, "_dq", None), "maxlen", None), items)
    replaced.dropped = getattr(original, "dropped", 0)
    return replaced


def _frozen(original: Attributes, clean: dict[str, Any]) -> Any:
    from opentelemetry.attributes import BoundedAttributes

    maxlen = getattr(original, "maxlen", None)
    return BoundedAttributes(maxlen=maxlen, attributes=clean, immutable=True,
                             max_value_len=getattr(original, "max_value_len", None))


class FunctionRoots(Sampler):
    """Samples a root span only when it is a function's (it carries `faas.trigger`): an SDK call
    outside any invocation makes no trace of its own. Children follow their parent (`ParentBased`)."""

    def should_sample(self, parent_context: Any, trace_id: int, name: str, kind: Any = None,
                      attributes: Attributes = None, links: Any = None, trace_state: Any = None) -> SamplingResult:
        decision = Decision.RECORD_AND_SAMPLE if attributes and "faas.trigger" in attributes else Decision.DROP
        return SamplingResult(decision, attributes if decision is Decision.RECORD_AND_SAMPLE else None)

    def get_description(self) -> str:
        return "FunctionRoots"


class ScrubbingLogProcessor(LogRecordProcessor):
    """A LogRecordProcessor that masks every log record's body and attributes before export (first
    among the processors, so the batch exporter only ever holds the masked record)."""

    def on_emit(self, log_record: Any) -> None:
        try:
            record = log_record.log_record
            if record.body is not None:
                body = scrub_value(record.body)
                if body is not record.body:
                    record.body = body
            clean = scrub_attributes(record.attributes)
            if clean is not None:
                for key, value in clean.items():
                    record.attributes[key] = value
        except Exception:
            log.debug("log scrubbing failed", exc_info=True)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class _QuietFilter(logging.Filter):
    """Keep the exporters' and the SDKs' own chatter (every HTTP request) out of the exported logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.name.startswith(_QUIET_LOGGERS)


def configure(environ: dict[str, str] | None = None) -> Mode:
    """Configure telemetry for this process once (later calls return the first outcome)."""
    env = os.environ if environ is None else environ
    with _lock:
        if _mode:
            return _mode[0]
        mode = _configure(env)
        _mode.append(mode)
    if mode != "off":
        log.info("telemetry: %s", mode)
    return mode


def mode() -> Mode:
    return _mode[0] if _mode else "off"


def _configure(env: Any) -> Mode:
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return "off"
    if env.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        if _sdk_provider_in_place():
            _scrub_existing_providers()
            _azure_sdk_tracing()
            return "azure_monitor_by_worker"
        if env.get("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", "").lower() == "true":
            # The worker configures it (at its start, before it loads the app): never twice.
            log.warning("telemetry: the Python worker was to configure Azure Monitor and has not; not configuring "
                        "it a second time")
            return "azure_monitor_by_worker"
        from azure.monitor.opentelemetry import configure_azure_monitor

        configure_azure_monitor(span_processors=[ScrubbingSpanProcessor()],
                                log_record_processors=[ScrubbingLogProcessor()],
                                resource=_resource(env))
        _quiet_root_handlers()
        return "azure_monitor"
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        if _sdk_provider_in_place():
            _scrub_existing_providers()
            _azure_sdk_tracing()
            return "otlp"
        _configure_otlp(env)
        _azure_sdk_tracing()
        return "otlp"
    return "off"


def _sdk_provider_in_place() -> bool:
    return not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def _resource(env: Any) -> Resource:
    attributes = {"service.name": env.get("OTEL_SERVICE_NAME") or SERVICE_NAME}
    return Resource.create(attributes)  # OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME are merged in


def tracer_provider(env: Mapping[str, str], resource: Resource | None = None) -> TracerProvider:
    """The product's tracer provider, masking first and no exporter yet. Its sampler is the one
    `OTEL_TRACES_SAMPLER` (and `OTEL_TRACES_SAMPLER_ARG`) names, read by the SDK, when set; else the
    product's: every trace its functions start or continue, never a root span of an SDK call made
    outside one (a local host's queue polling, say), and a remote parent's decision kept."""
    sampler = None if env.get("OTEL_TRACES_SAMPLER") else ParentBased(FunctionRoots())
    provider = TracerProvider(resource=resource, sampler=sampler)
    provider.add_span_processor(ScrubbingSpanProcessor())
    return provider


def logger_provider(resource: Resource | None = None) -> LoggerProvider:
    """The product's logger provider, masking first and no exporter yet."""
    provider = LoggerProvider(resource=resource) if resource is not None else LoggerProvider()
    provider.add_log_record_processor(ScrubbingLogProcessor())
    return provider


def _configure_otlp(env: Any) -> None:
    from opentelemetry import metrics
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = _resource(env)
    traces = tracer_provider(env, resource)
    traces.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # OTEL_BSP_* from the env
    trace.set_tracer_provider(traces)
    reader = PeriodicExportingMetricReader(OTLPMetricExporter())  # OTEL_METRIC_EXPORT_INTERVAL from the env
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader], resource=resource))
    logs = logger_provider(resource)
    logs.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    set_logger_provider(logs)
    handler = LoggingHandler(level=logging.NOTSET, logger_provider=logs)
    handler.addFilter(_QuietFilter())
    logging.getLogger().addHandler(handler)


def _scrub_existing_providers() -> None:
    from opentelemetry._logs import get_logger_provider

    scrub_providers(trace.get_tracer_provider(), get_logger_provider())
    _quiet_root_handlers()


def scrub_providers(traces: Any, logs: Any) -> None:
    """Add the masking to providers someone else configured (the Python worker's Azure Monitor).
    Spans are masked while they end, before any processor's `on_end`, wherever ours stands. A log
    record goes to the processors in their order, so ours is put first: after the worker's
    exporter, a simple one would send a record unmasked and a batch one could."""
    if hasattr(traces, "add_span_processor"):
        traces.add_span_processor(ScrubbingSpanProcessor())
    if hasattr(logs, "add_log_record_processor"):
        ours = ScrubbingLogProcessor()
        logs.add_log_record_processor(ours)
        _put_first(getattr(logs, "_multi_log_record_processor", None), ours)


def _put_first(multi: Any, ours: LogRecordProcessor) -> None:
    """`ours` made the first processor of a multi-processor (opentelemetry-sdk 1.45's private
    tuple, pinned); left where the SDK put it when that tuple is not there."""
    if not isinstance(getattr(multi, "_log_record_processors", None), tuple):
        return
    with multi._lock:
        others = tuple(p for p in multi._log_record_processors if p is not ours)
        multi._log_record_processors = (ours, *others)


def _quiet_root_handlers() -> None:
    for handler in logging.getLogger().handlers:
        if type(handler).__name__ == "LoggingHandler" and not any(isinstance(f, _QuietFilter) for f in handler.filters):
            handler.addFilter(_QuietFilter())


def _azure_sdk_tracing() -> None:
    """azure-core's OpenTelemetry plugin: Storage and ACS SDK calls become spans."""
    try:
        from azure.core.settings import settings
        from azure.core.tracing.ext.opentelemetry_span import OpenTelemetrySpan

        settings.tracing_implementation = OpenTelemetrySpan
    except ImportError:  # pragma: no cover - azure-core-tracing-opentelemetry is in requirements.txt
        log.warning("azure-core-tracing-opentelemetry is not installed: no spans for Storage and ACS calls")
