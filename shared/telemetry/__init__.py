"""The product's telemetry (contract §6): OpenTelemetry traces, metrics and logs.

* `configure()` once per process (function_app.py): Azure Monitor, OTLP/HTTP or nothing, from the
  environment (`shared.telemetry.setup`).
* Entry points: `queue_function`, `http_function`, `timer_function` decorate the Functions; every
  queue message the product sends carries `traceparent` (`current_fields`, `producer`, `with_trace`).
* Metrics: the `count_*` helpers of `shared.telemetry.metrics`, each called where its outcome is decided.
* Masking: `shared.telemetry.scrub`, over every span and log record; a `tracestate` member holding
  a card number or a secret is dropped where trace context enters (`clean_tracestate`).
"""

from shared.telemetry.metrics import (
    count_charge,
    count_charge_answer,
    count_deadletter,
    count_email,
    count_event,
    count_transition,
    count_transitions,
    record_sweep_lag,
)
from shared.telemetry.scrub import scrub
from shared.telemetry.setup import configure, mode
from shared.telemetry.traceparent import TraceParent, clean_tracestate, parse_traceparent, parse_tracestate
from shared.telemetry.tracing import (
    TracingSession,
    annotate,
    current_fields,
    enabled,
    event_grid_function,
    fields_of,
    http_function,
    message_fields,
    message_type,
    producer,
    queue_function,
    set_attribute,
    span,
    span_context_of,
    stored_or_current,
    timer_function,
    with_trace,
)

__all__ = [
    "TraceParent",
    "TracingSession",
    "annotate",
    "clean_tracestate",
    "configure",
    "count_charge",
    "count_charge_answer",
    "count_deadletter",
    "count_email",
    "count_event",
    "count_transition",
    "count_transitions",
    "current_fields",
    "enabled",
    "event_grid_function",
    "fields_of",
    "http_function",
    "message_fields",
    "message_type",
    "mode",
    "parse_traceparent",
    "parse_tracestate",
    "producer",
    "queue_function",
    "record_sweep_lag",
    "scrub",
    "set_attribute",
    "span",
    "span_context_of",
    "stored_or_current",
    "timer_function",
    "with_trace",
]
