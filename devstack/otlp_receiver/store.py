"""What the receiver keeps: OTLP requests decoded into spans, metric streams and log records.

Everything is plain Python (dicts, lists, numbers, strings) ready for ``json.dumps``. The store is
bounded (oldest spans and log records fall out first; the least recently updated metric stream is
dropped first) and guarded by one lock: exports are few and small.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, DataPointFlags
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

DEFAULT_MAX_SPANS = 50_000
DEFAULT_MAX_LOG_RECORDS = 50_000
DEFAULT_MAX_METRIC_STREAMS = 50_000

# The three OTLP/HTTP signals: URL path -> (name, request type, response type).
SIGNALS: dict[str, tuple[str, type[Message], type[Message]]] = {
    "/v1/traces": ("traces", ExportTraceServiceRequest, ExportTraceServiceResponse),
    "/v1/metrics": ("metrics", ExportMetricsServiceRequest, ExportMetricsServiceResponse),
    "/v1/logs": ("logs", ExportLogsServiceRequest, ExportLogsServiceResponse),
}

# Shown beside a span's name on the page and in render_tree, in this order, when the span has them;
# then any other ``billing.*`` attribute.
KEY_ATTRIBUTES: tuple[str, ...] = (
    "cloudevents.event_id",
    "cloudevents.event_type",
    "billing.account_id",
    "billing.subscription_id",
    "billing.charge_id",
    "billing.email.kind",
    "messaging.system",
    "messaging.operation.type",
    "messaging.destination.name",
    "faas.trigger",
    "faas.name",
    "http.request.method",
    "http.route",
    "url.full",
    "server.address",
    "http.response.status_code",
    "db.operation.name",
    "az.namespace",
    "error.type",
)


class OtlpDecodeError(ValueError):
    """The body is not an OTLP export request of the kind its path and content type say."""


# --------------------------------------------------------------------------------------------
# Decoding: protobuf or OTLP/JSON bytes -> Export*ServiceRequest
# --------------------------------------------------------------------------------------------

_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})
_HEX_ID = re.compile(r"(?:[0-9a-fA-F]{16}){1,2}")


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex, where protobuf's JSON mapping expects base64
    (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding): convert them in place.
    Attribute keys cannot collide, they are ``{"key": ..., "value": ...}`` objects."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in _ID_KEYS and isinstance(value, str) and _HEX_ID.fullmatch(value):
                    item[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, dict | list))
    return node


def decode_request(signal_path: str, body: bytes, json_body: bool) -> Message:
    """The ``Export*ServiceRequest`` for ``signal_path`` (``/v1/traces`` ...) held in ``body``.

    ``json_body``: OTLP/JSON (hex ids, enums as numbers, unknown fields ignored as the spec asks);
    else binary protobuf. Anything else raises :class:`OtlpDecodeError`.
    """
    request_type = SIGNALS[signal_path][1]
    request = request_type()
    if json_body:
        try:
            document = json.loads(body.decode("utf-8")) if body.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise OtlpDecodeError(f"the body is not JSON: {error}") from None
        if not isinstance(document, dict):
            raise OtlpDecodeError("an OTLP/JSON body is a JSON object")
        try:
            json_format.ParseDict(_hex_ids_to_base64(document), request, ignore_unknown_fields=True)
        except (json_format.ParseError, RecursionError, ValueError, TypeError) as error:
            raise OtlpDecodeError(f"not an OTLP/JSON {request_type.__name__}: {error}") from None
    else:
        try:
            request.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as error:
            raise OtlpDecodeError(f"not a protobuf {request_type.__name__}: {error}") from None
    _check_ids(request)
    return request


def _check_id(value: bytes, size: int, what: str, optional: bool) -> None:
    if len(value) != size and not (optional and not value):
        raise OtlpDecodeError(f"{what} must be {size} bytes ({size * 2} hex digits), not {len(value)}")


def _check_ids(request: Message) -> None:
    """Trace ids are 16 bytes and span ids 8, as the OpenTelemetry Collector insists too."""
    if isinstance(request, ExportTraceServiceRequest):
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    _check_id(span.trace_id, 16, "a span's traceId", False)
                    _check_id(span.span_id, 8, "a span's spanId", False)
                    _check_id(span.parent_span_id, 8, "a span's parentSpanId", True)
                    for link in span.links:
                        _check_id(link.trace_id, 16, "a link's traceId", False)
                        _check_id(link.span_id, 8, "a link's spanId", False)
    elif isinstance(request, ExportLogsServiceRequest):
        for resource_logs in request.resource_logs:
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    _check_id(record.trace_id, 16, "a log record's traceId", True)
                    _check_id(record.span_id, 8, "a log record's spanId", True)


# --------------------------------------------------------------------------------------------
# Small conversions
# --------------------------------------------------------------------------------------------


def rfc3339(unix_nano: int) -> str | None:
    """``2026-12-01T10:00:00.123456Z`` (microseconds) for nanoseconds since the epoch; None for 0."""
    if unix_nano <= 0:
        return None
    seconds, nanos = divmod(unix_nano, 1_000_000_000)
    try:
        moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=nanos // 1000)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _hex(raw: bytes) -> str | None:
    return raw.hex() if raw and any(raw) else None


def any_value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as plain JSON-able Python (bytes as base64 text)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return getattr(value, kind)


def attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    """OTLP key/value pairs as a flat dict (a repeated key: the last one wins)."""
    return {pair.key: any_value(pair.value) for pair in pairs}


def _scope(scope: InstrumentationScope) -> dict[str, Any]:
    return {"name": scope.name, "version": scope.version or None}


def _enum_name(prefix: str, name: str) -> str:
    return name.removeprefix(prefix)


def _attr_key(attrs: Mapping[str, Any]) -> str:
    return json.dumps(attrs, sort_keys=True, ensure_ascii=False, default=str)


def duration_ms(start_unix_nano: int, end_unix_nano: int) -> float | None:
    if start_unix_nano <= 0 or end_unix_nano <= 0:
        return None
    return round((end_unix_nano - start_unix_nano) / 1_000_000, 3)


# --------------------------------------------------------------------------------------------
# Spans
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredSpan:
    """One received span, already flattened; ``data`` is its JSON form."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    start: int
    end: int
    data: dict[str, Any]


def _span(span: Span, resource: dict[str, Any], scope: dict[str, Any]) -> StoredSpan:
    trace_id = span.trace_id.hex()
    span_id = span.span_id.hex()
    parent = _hex(span.parent_span_id)
    status_code = _enum_name("STATUS_CODE_", Status.StatusCode.Name(span.status.code)) \
        if span.status.code in Status.StatusCode.values() else str(span.status.code)
    kind = _enum_name("SPAN_KIND_", Span.SpanKind.Name(span.kind)) \
        if span.kind in Span.SpanKind.values() else str(span.kind)
    data: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": span.name,
        "kind": kind,
        "start": rfc3339(span.start_time_unix_nano),
        "end": rfc3339(span.end_time_unix_nano),
        "durationMs": duration_ms(span.start_time_unix_nano, span.end_time_unix_nano),
        "startTimeUnixNano": span.start_time_unix_nano,
        "endTimeUnixNano": span.end_time_unix_nano,
        "status": {"code": status_code, "message": span.status.message or None},
        "attributes": attributes(span.attributes),
        "events": [
            {"name": e.name, "time": rfc3339(e.time_unix_nano), "attributes": attributes(e.attributes)}
            for e in span.events
        ],
        "links": [
            {"traceId": link.trace_id.hex(), "spanId": link.span_id.hex(), "attributes": attributes(link.attributes)}
            for link in span.links
        ],
        "traceState": span.trace_state or None,
        "serviceName": resource.get("service.name"),
        "resource": resource,
        "scope": scope,
    }
    return StoredSpan(trace_id, span_id, parent, span.start_time_unix_nano, span.end_time_unix_nano, data)


def _trace_summary(trace_id: str, spans: Sequence[StoredSpan]) -> dict[str, Any]:
    ordered = sorted(spans, key=lambda s: (s.start, s.span_id))
    ids = {s.span_id for s in ordered}
    roots = [s for s in ordered if s.parent_span_id is None or s.parent_span_id not in ids]
    starts = [s.start for s in ordered if s.start > 0]
    ends = [s.end for s in ordered if s.end > 0]
    start, end = (min(starts) if starts else 0), (max(ends) if ends else 0)
    services = sorted({str(s.data["serviceName"]) for s in ordered if s.data["serviceName"] is not None})
    return {
        "traceId": trace_id,
        "rootName": roots[0].data["name"] if roots else None,
        "spanCount": len(ordered),
        "services": services,
        "start": rfc3339(start),
        "end": rfc3339(end),
        "durationMs": duration_ms(start, end),
        "errors": sum(1 for s in ordered if s.data["status"]["code"] == "ERROR"),
        "spans": [dict(s.data) for s in ordered],
    }


def build_tree(trace: Mapping[str, Any]) -> dict[str, Any]:
    """A trace of ``GET /traces`` (its ``spans``) as a tree: ``roots``, each span with ``children``
    (by start time). A span whose parent was not received is a root with ``missingParent: true``."""
    spans = [dict(s) for s in trace.get("spans", [])]
    by_id = {s["spanId"]: s for s in spans}
    roots: list[dict[str, Any]] = []
    for span in spans:
        span["children"] = []
    for span in spans:
        parent = by_id.get(span["parentSpanId"]) if span.get("parentSpanId") else None
        if parent is None or parent is span:
            span["missingParent"] = bool(span.get("parentSpanId"))
            roots.append(span)
        else:
            span["missingParent"] = False
            parent["children"].append(span)
    tree = {k: v for k, v in trace.items() if k != "spans"}
    tree["roots"] = roots
    return tree


# --------------------------------------------------------------------------------------------
# Metrics: one stream per (resource, scope, metric, attribute set[, start time]); the value shown
# for an attribute set is the sum over its streams.
# --------------------------------------------------------------------------------------------


@dataclass
class _MetricInfo:
    name: str
    type: str
    unit: str
    description: str
    monotonic: bool | None
    temporality: str | None


@dataclass
class _Stream:
    attributes: dict[str, Any]
    service: str | None
    time: int
    value: dict[str, Any]
    """``{"value": n}`` for sums and gauges, ``{"count", "sum", "min", "max", ...}`` for the rest."""
    points: int = 1


def _number(point: Any) -> int | float:
    value: int | float = point.as_int if point.WhichOneof("value") == "as_int" else point.as_double
    return value


def _histogram_value(point: Any, kind: str) -> dict[str, Any]:
    value: dict[str, Any] = {
        "count": point.count,
        "sum": point.sum if point.HasField("sum") else None,
        "min": point.min if point.HasField("min") else None,
        "max": point.max if point.HasField("max") else None,
    }
    if kind == "histogram":
        value["bucketCounts"] = list(point.bucket_counts)
        value["explicitBounds"] = list(point.explicit_bounds)
    else:
        value["scale"] = point.scale
        value["zeroCount"] = point.zero_count
    return value


def _summary_value(point: Any) -> dict[str, Any]:
    return {
        "count": point.count,
        "sum": point.sum,
        "quantiles": [{"quantile": q.quantile, "value": q.value} for q in point.quantile_values],
    }


def _add_values(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two values of one metric combined: numbers, counts, sums and buckets add up, min/max hold."""
    if "value" in a:
        return {"value": a["value"] + b["value"]}
    out = dict(b)
    out["count"] = a["count"] + b["count"]
    if a.get("sum") is not None or b.get("sum") is not None:
        out["sum"] = (a.get("sum") or 0) + (b.get("sum") or 0)
    mins = [v for v in (a.get("min"), b.get("min")) if v is not None]
    maxes = [v for v in (a.get("max"), b.get("max")) if v is not None]
    if "min" in out:
        out["min"] = min(mins) if mins else None
        out["max"] = max(maxes) if maxes else None
    if "bucketCounts" in out:
        if a.get("explicitBounds") == b.get("explicitBounds") and len(a["bucketCounts"]) == len(b["bucketCounts"]):
            out["bucketCounts"] = [x + y for x, y in zip(a["bucketCounts"], b["bucketCounts"], strict=True)]
        else:  # buckets with other bounds cannot be added: keep the counts that can
            out["bucketCounts"], out["explicitBounds"] = None, None
    if "zeroCount" in out:
        out["zeroCount"] = a.get("zeroCount", 0) + b.get("zeroCount", 0)
    return out


def _matches(attrs: Mapping[str, Any], wanted: Mapping[str, str]) -> bool:
    for key, expected in wanted.items():
        if key not in attrs:
            return False
        actual = attrs[key]
        text = json.dumps(actual) if isinstance(actual, bool) else str(actual)
        if text != expected:
            return False
    return True


# --------------------------------------------------------------------------------------------
# Logs
# --------------------------------------------------------------------------------------------


def _log(record: Any, resource: dict[str, Any], scope: dict[str, Any]) -> dict[str, Any]:
    severity = record.severity_number
    severity_name = SeverityNumber.Name(severity).removeprefix("SEVERITY_NUMBER_") \
        if severity in SeverityNumber.values() else str(severity)
    return {
        "time": rfc3339(record.time_unix_nano or record.observed_time_unix_nano),
        "observedTime": rfc3339(record.observed_time_unix_nano),
        "severityNumber": severity,
        "severity": severity_name,
        "severityText": record.severity_text or None,
        "body": any_value(record.body),
        "attributes": attributes(record.attributes),
        "traceId": _hex(record.trace_id),
        "spanId": _hex(record.span_id),
        "eventName": record.event_name or None,
        "serviceName": resource.get("service.name"),
        "resource": resource,
        "scope": scope,
    }


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


@dataclass
class Counters:
    requests: dict[str, int] = field(default_factory=lambda: {"traces": 0, "metrics": 0, "logs": 0})
    rejected: int = 0
    spans_received: int = 0
    spans_dropped: int = 0
    log_records_received: int = 0
    log_records_dropped: int = 0
    data_points_received: int = 0
    metric_streams_dropped: int = 0


class TelemetryStore:
    """Spans, metric streams and log records received, in memory, bounded, thread-safe."""

    def __init__(
        self,
        max_spans: int = DEFAULT_MAX_SPANS,
        max_log_records: int = DEFAULT_MAX_LOG_RECORDS,
        max_metric_streams: int = DEFAULT_MAX_METRIC_STREAMS,
    ) -> None:
        if min(max_spans, max_log_records, max_metric_streams) < 1:
            raise ValueError("every bound must be at least 1")
        self.max_spans = max_spans
        self.max_log_records = max_log_records
        self.max_metric_streams = max_metric_streams
        self._lock = threading.Lock()
        self._spans: deque[StoredSpan] = deque(maxlen=max_spans)
        self._logs: deque[dict[str, Any]] = deque(maxlen=max_log_records)
        self._metrics: dict[str, _MetricInfo] = {}
        # (metric name, stream key) -> stream, least recently updated first.
        self._streams: OrderedDict[tuple[str, tuple[str, ...]], _Stream] = OrderedDict()
        self._counters = Counters()

    # -- intake ----------------------------------------------------------------------------

    def count_rejected(self) -> None:
        with self._lock:
            self._counters.rejected += 1

    def add(self, signal: str, request: Message) -> int:
        """Keep what one decoded export request holds; returns how many items it held."""
        if isinstance(request, ExportTraceServiceRequest):
            return self.add_traces(request)
        if isinstance(request, ExportMetricsServiceRequest):
            return self.add_metrics(request)
        if isinstance(request, ExportLogsServiceRequest):
            return self.add_logs(request)
        raise TypeError(f"not an OTLP export request: {type(request).__name__} for {signal}")

    def add_traces(self, request: ExportTraceServiceRequest) -> int:
        spans = [
            _span(span, resource, _scope(scope_spans.scope))
            for resource_spans in request.resource_spans
            for resource in [attributes(resource_spans.resource.attributes)]
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self._lock:
            self._counters.requests["traces"] += 1
            self._counters.spans_received += len(spans)
            overflow = max(0, len(self._spans) + len(spans) - self.max_spans)
            self._counters.spans_dropped += overflow
            self._spans.extend(spans)
        return len(spans)

    def add_logs(self, request: ExportLogsServiceRequest) -> int:
        records = [
            _log(record, resource, _scope(scope_logs.scope))
            for resource_logs in request.resource_logs
            for resource in [attributes(resource_logs.resource.attributes)]
            for scope_logs in resource_logs.scope_logs
            for record in scope_logs.log_records
        ]
        with self._lock:
            self._counters.requests["logs"] += 1
            self._counters.log_records_received += len(records)
            overflow = max(0, len(self._logs) + len(records) - self.max_log_records)
            self._counters.log_records_dropped += overflow
            self._logs.extend(records)
        return len(records)

    def add_metrics(self, request: ExportMetricsServiceRequest) -> int:
        received = 0
        with self._lock:
            self._counters.requests["metrics"] += 1
            for resource_metrics in request.resource_metrics:
                resource = attributes(resource_metrics.resource.attributes)
                resource_key = _attr_key(resource)
                service = resource.get("service.name")
                for scope_metrics in resource_metrics.scope_metrics:
                    scope = scope_metrics.scope
                    scope_key = f"{scope.name}@{scope.version}"
                    for metric in scope_metrics.metrics:
                        received += self._add_metric(metric, resource_key, scope_key, service)
            self._counters.data_points_received += received
        return received

    def _add_metric(self, metric: Any, resource_key: str, scope_key: str, service: Any) -> int:
        kind = metric.WhichOneof("data")
        if kind is None:
            return 0
        data = getattr(metric, kind)
        temporality: str | None = None
        if kind in ("sum", "histogram", "exponential_histogram"):
            temporality = AggregationTemporality.Name(data.aggregation_temporality) \
                .removeprefix("AGGREGATION_TEMPORALITY_").lower() \
                if data.aggregation_temporality in AggregationTemporality.values() else None
        type_name = {"exponential_histogram": "exponentialHistogram"}.get(kind, kind)
        self._metrics[metric.name] = _MetricInfo(
            name=metric.name,
            type=type_name,
            unit=metric.unit,
            description=metric.description,
            monotonic=data.is_monotonic if kind == "sum" else None,
            temporality=temporality,
        )
        count = 0
        for point in data.data_points:
            count += 1
            if point.flags & DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK:
                continue
            attrs = attributes(point.attributes)
            if kind in ("sum", "gauge"):
                value: dict[str, Any] = {"value": _number(point)}
            elif kind == "summary":
                value = _summary_value(point)
            else:
                value = _histogram_value(point, kind)
            # A cumulative stream restarts (a new process, a reset) with a new start time: a new
            # stream whose value adds to the old one's. A delta point adds to its stream; a gauge
            # or cumulative point replaces its stream's value.
            cumulative = temporality == "cumulative" or kind == "summary"
            start = str(point.start_time_unix_nano) if cumulative else ""
            key = (metric.name, (resource_key, scope_key, _attr_key(attrs), start))
            stream = self._streams.get(key)
            if stream is None:
                stream = _Stream(attrs, service if isinstance(service, str) else None, point.time_unix_nano, value)
                self._streams[key] = stream
            else:
                if temporality == "delta":
                    stream.value = _add_values(stream.value, value)
                elif point.time_unix_nano >= stream.time:
                    stream.value = value
                stream.time = max(stream.time, point.time_unix_nano)
                stream.points += 1
                self._streams.move_to_end(key)
            while len(self._streams) > self.max_metric_streams:
                self._streams.popitem(last=False)
                self._counters.metric_streams_dropped += 1
        return count

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()
            self._logs.clear()
            self._metrics.clear()
            self._streams.clear()
            self._counters = Counters()

    # -- reading ---------------------------------------------------------------------------

    def traces(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Spans grouped by trace, newest trace (by its first span's start) first."""
        with self._lock:
            spans = list(self._spans)
        groups: dict[str, list[StoredSpan]] = {}
        for span in spans:
            groups.setdefault(span.trace_id, []).append(span)

        def newest(item: tuple[str, list[StoredSpan]]) -> int:
            starts = [s.start for s in item[1] if s.start > 0]
            return min(starts) if starts else 0

        ordered = sorted(groups.items(), key=newest, reverse=True)
        if limit is not None:
            ordered = ordered[: max(0, limit)]
        return [_trace_summary(trace_id, group) for trace_id, group in ordered]

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """One trace as a tree (see :func:`build_tree`), or None when no span of it is held."""
        wanted = trace_id.lower()
        with self._lock:
            spans = [s for s in self._spans if s.trace_id == wanted]
        if not spans:
            return None
        return build_tree(_trace_summary(wanted, spans))

    def logs(self, trace_id: str | None = None, span_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            records = list(self._logs)
        if trace_id:
            records = [r for r in records if r["traceId"] == trace_id.lower()]
        if span_id:
            records = [r for r in records if r["spanId"] == span_id.lower()]
        return [dict(r) for r in records]

    def metrics(self) -> list[dict[str, Any]]:
        """Per metric name: type, unit, and one data point per attribute set, summed over streams
        (processes, restarts, delta exports); gauges show the latest value instead."""
        with self._lock:
            infos = dict(self._metrics)
            streams = [(name, stream.attributes, stream.service, stream.time, dict(stream.value), stream.points)
                       for (name, _), stream in self._streams.items()]
        by_metric: dict[str, dict[str, dict[str, Any]]] = {}
        for name, attrs, service, time, value, points in streams:
            info = infos[name]
            points_by_attrs = by_metric.setdefault(name, {})
            key = _attr_key(attrs)
            current = points_by_attrs.get(key)
            if current is None:
                points_by_attrs[key] = {"attributes": attrs, **value, "time": time, "streams": 1,
                                        "exports": points, "services": {service} - {None}}
                continue
            if info.type == "gauge":
                if time >= current["time"]:
                    current["value"] = value["value"]
            else:
                combined = _add_values({k: current[k] for k in value}, value)
                current.update(combined)
            current["time"] = max(current["time"], time)
            current["streams"] += 1
            current["exports"] += points
            if service is not None:
                current["services"].add(service)
        out: list[dict[str, Any]] = []
        for name in sorted(by_metric):
            info = infos[name]
            points_out = []
            for key in sorted(by_metric[name]):
                point = by_metric[name][key]
                point["time"] = rfc3339(point["time"])
                point["services"] = sorted(point["services"])
                points_out.append(point)
            out.append({
                "name": name,
                "type": info.type,
                "unit": info.unit,
                "description": info.description,
                "monotonic": info.monotonic,
                "temporality": info.temporality,
                "dataPoints": points_out,
            })
        return out

    def metric(self, name: str, wanted: Mapping[str, str] | None = None) -> dict[str, Any] | None:
        """One metric with only the data points whose attributes include ``wanted`` (values compared
        as text), and ``value``: their total (sums), latest value (gauges) or total count (others)."""
        found = next((m for m in self.metrics() if m["name"] == name), None)
        if found is None:
            return None
        points = [p for p in found["dataPoints"] if _matches(p["attributes"], wanted or {})]
        total: int | float | None
        if found["type"] == "gauge":
            latest = max(points, key=lambda p: p["time"] or "", default=None)
            total = latest["value"] if latest else None
        elif found["type"] == "sum":
            total = sum(p["value"] for p in points)
        else:
            total = sum(p["count"] for p in points)
        return {**found, "dataPoints": points, "filter": dict(wanted or {}), "value": total}

    def stats(self) -> dict[str, Any]:
        with self._lock:
            c = self._counters
            return {
                "requests": dict(c.requests),
                "rejected": c.rejected,
                "spans": len(self._spans),
                "spansReceived": c.spans_received,
                "spansDropped": c.spans_dropped,
                "logRecords": len(self._logs),
                "logRecordsReceived": c.log_records_received,
                "logRecordsDropped": c.log_records_dropped,
                "metricStreams": len(self._streams),
                "dataPointsReceived": c.data_points_received,
                "metricStreamsDropped": c.metric_streams_dropped,
                "limits": {"spans": self.max_spans, "logRecords": self.max_log_records,
                           "metricStreams": self.max_metric_streams},
            }


# --------------------------------------------------------------------------------------------
# Views shared by the page and the text tree
# --------------------------------------------------------------------------------------------


def _short(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())  # one line, whatever the value holds
    return text if len(text) <= limit else text[: limit - 1] + "…"


def key_attributes(span: Mapping[str, Any], limit: int = 80) -> list[tuple[str, str]]:
    """The span's attributes worth showing beside its name: :data:`KEY_ATTRIBUTES`, then other
    ``billing.*`` ones, values on one line and cut at ``limit`` characters."""
    attrs: Mapping[str, Any] = span.get("attributes") or {}
    names = [k for k in KEY_ATTRIBUTES if k in attrs]
    names += sorted(k for k in attrs if k.startswith("billing.") and k not in KEY_ATTRIBUTES)
    return [(k, _short(attrs[k], limit)) for k in names]


def format_duration(ms: float | None) -> str:
    if ms is None:
        return "?"
    if ms >= 10_000:
        return f"{ms / 1000:.1f} s"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 1:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


def render_tree(trace: Mapping[str, Any], *, ascii: bool = False, attribute_width: int = 60) -> str:
    """A trace as indented text, one span a line with its duration, kind, service (where it
    changes) and key attributes; what ``python -m devstack.stack --story`` prints at its end.

    ``trace``: a tree from ``GET /traces/{traceId}`` (``roots``) or a trace of ``GET /traces``
    (``spans``). ``ascii=True`` draws the branches with ``|-``/``` `- ``` for consoles without UTF-8.
    """
    tree = trace if "roots" in trace else build_tree(trace)
    branch, last, pipe, blank = ("|- ", "`- ", "|  ", "   ") if ascii else ("├─ ", "└─ ", "│  ", "   ")
    span_count = tree.get("spanCount", 0)
    header = f"trace {tree.get('traceId', '?')} · {span_count} span{'' if span_count == 1 else 's'}"
    if tree.get("durationMs") is not None:
        header += f" · {format_duration(tree['durationMs'])}"
    services = tree.get("services") or []
    if services:
        header += f" · {', '.join(services)}"
    lines = [header.replace("·", "-") if ascii else header]

    def line(span: Mapping[str, Any], parent_service: Any) -> str:
        parts = [str(span.get("name") or "(unnamed)"), format_duration(span.get("durationMs"))]
        kind = span.get("kind")
        if kind and kind not in ("INTERNAL", "UNSPECIFIED"):
            parts.append(str(kind).lower())
        service = span.get("serviceName")
        if service and service != parent_service:
            parts.append(f"[{service}]")
        status = span.get("status") or {}
        if status.get("code") == "ERROR":
            parts.append("ERROR" + (f": {_short(status['message'], attribute_width)}" if status.get("message") else ""))
        if span.get("missingParent"):
            parts.append("(parent not received)")
        parts += [f"{k}={v}" for k, v in key_attributes(span, attribute_width)]
        return "  ".join(parts)

    def walk(nodes: Sequence[Mapping[str, Any]], prefix: str, parent_service: Any, top: bool) -> None:
        for index, node in enumerate(nodes):
            final = index == len(nodes) - 1
            connector = "" if top else (last if final else branch)
            text = line(node, parent_service)
            lines.append(prefix + connector + (text.encode("ascii", "replace").decode() if ascii else text))
            child_prefix = prefix if top else prefix + (blank if final else pipe)
            walk(node.get("children") or [], child_prefix, node.get("serviceName"), False)

    walk(tree.get("roots") or [], "", None, True)
    return "\n".join(lines)

