"""A local, dev-only OpenTelemetry receiver: OTLP/HTTP in, traces as trees on a page and as JSON.

What the product's exporters send (``opentelemetry-exporter-otlp-proto-http``, contract §5 and §6)
arrives here and is kept in memory for the developer and the tests to read:

* ``POST /v1/traces``, ``/v1/metrics``, ``/v1/logs`` – OTLP/HTTP with ``Content-Type:
  application/x-protobuf`` (binary protobuf, what the Python exporters send) or
  ``application/json`` (OTLP/JSON: hex trace and span ids, enums as numbers, unknown fields
  ignored), optionally ``Content-Encoding: gzip`` or ``deflate``; chunked bodies are read too.
  Decoded with the ``opentelemetry-proto`` messages. Answer: 200 with an empty
  ``Export*ServiceResponse`` in the request's encoding. A body that does not decode is a 400 with
  a ``google.rpc.Status`` (JSON for JSON requests), an unknown content type or encoding a 415, and
  nothing of it is kept; the server goes on serving.
* ``GET /traces`` (``?limit=N``) – spans grouped by trace, newest trace first: per trace
  ``traceId``, ``rootName``, ``spanCount``, ``services``, ``start``/``end`` (RFC 3339),
  ``durationMs``, ``errors`` and ``spans`` (by start time), each with ``traceId``, ``spanId``,
  ``parentSpanId``, ``name``, ``kind`` (``SERVER``, ``CONSUMER``, …), ``start``, ``end``,
  ``durationMs``, ``status`` (``{"code": "UNSET"|"OK"|"ERROR", "message"}``), ``attributes`` (a flat
  dict), ``events``, ``links``, ``serviceName`` and ``resource`` (its attributes).
* ``GET /traces/{traceId}`` – one trace as a tree: the same fields, ``roots`` instead of ``spans``,
  every span with its ``children`` (by start time); a span whose parent never arrived is a root
  with ``missingParent: true``. 404 when none of its spans is held.
* ``GET /metrics`` – per metric name: ``type`` (``sum``, ``gauge``, ``histogram``,
  ``exponentialHistogram``, ``summary``), ``unit``, ``monotonic``, ``temporality`` and one data
  point per attribute set, with ``attributes`` and ``value`` (or ``count``/``sum``/``min``/``max``/
  buckets). A data point is the total over every stream with those attributes: cumulative points
  replace their stream's value (so re-exports of the same counter never count twice), delta points
  add to it, and streams of other processes or restarts (another resource or start time) add up.
  Gauges show the latest value. ``GET /metrics/{name}?kind=payment_failed&outcome=sent`` keeps
  the data points whose attributes have those values and adds ``value``: their total (the count
  for histograms). 404 for a metric never received.
* ``GET /logs`` (``?traceId=…&spanId=…``) – log records: ``time``, ``severity``,
  ``severityNumber``, ``severityText``, ``body``, ``attributes``, ``traceId``, ``spanId``,
  ``eventName``, ``serviceName``, ``resource``.
* ``DELETE /data`` clears everything; ``GET /stats`` counts requests, rejects and drops.
* ``/`` – the page: the newest traces (``?limit=50``) as collapsible trees (``<details>``, no
  script) with durations, timing bars, key attributes (``cloudevents.event_id``,
  ``billing.account_id``, ``messaging.destination.name``, ``http.request.method``, …), every
  attribute, event and log record of a span behind a click; ``?trace=ID`` shows one trace,
  ``?refresh=5`` reloads the page every 5 s. Everything shown is escaped.

Memory is bounded: the newest 50,000 spans and 50,000 log records are kept (older ones drop out
first), and at most 50,000 metric streams (the least recently updated one drops out first);
``GET /stats`` says how many were dropped.

:func:`render_tree` turns a trace of ``GET /traces/{traceId}`` into indented text, one span a line
with its duration and key attributes, for a console; :func:`fetch_trace` reads a trace from a
running receiver once its spans stop arriving (exporters send them in batches).

Run it with ``python -m devstack.otlp_receiver [--host 127.0.0.1] [--port 7078]``; in tests use
:func:`start_in_thread` or :func:`running`. Never deploy it: it lives in devstack/, which
.funcignore keeps out of the Function App.

How the local stack will use it (``devstack/stack.py`` is not wired yet): a ``--otlp`` flag
starts ``python -m devstack.otlp_receiver --port <otlp port>`` beside the email endpoint (a
``otlp`` port in ``StackPorts``, 7078 or free), gives the app processes
``OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:<port>`` (and ``OTEL_EXPORTER_OTLP_PROTOCOL=
http/protobuf``, short ``OTEL_BSP_SCHEDULE_DELAY`` / ``OTEL_METRIC_EXPORT_INTERVAL`` so the page
fills at once) unless the environment already names an endpoint, and prints
``otlp receiver: http://127.0.0.1:<port>`` on a line of its own like the other helpers. At the end
of ``--story`` the stack reads ``GET /traces/{traceId}`` of the failed payment's trace (the
``traceparent`` it put on the event) with :func:`fetch_trace` and prints :func:`render_tree` of it.
"""

from devstack.otlp_receiver.client import fetch_trace
from devstack.otlp_receiver.server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    OtlpReceiver,
    running,
    start_in_thread,
)
from devstack.otlp_receiver.store import (
    DEFAULT_MAX_LOG_RECORDS,
    DEFAULT_MAX_METRIC_STREAMS,
    DEFAULT_MAX_SPANS,
    KEY_ATTRIBUTES,
    TelemetryStore,
    build_tree,
    render_tree,
)

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_LOG_RECORDS",
    "DEFAULT_MAX_METRIC_STREAMS",
    "DEFAULT_MAX_SPANS",
    "DEFAULT_PORT",
    "KEY_ATTRIBUTES",
    "OtlpReceiver",
    "TelemetryStore",
    "build_tree",
    "fetch_trace",
    "render_tree",
    "running",
    "start_in_thread",
]
