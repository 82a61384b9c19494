"""The local OTLP/HTTP receiver (devstack/otlp_receiver) with the real OpenTelemetry SDK exporters.

No Azurite needed: the receiver runs in-process on a free port, the SDK's OTLP/HTTP exporters
send to it over real HTTP, and the JSON routes and the page are read back with requests.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from devstack.otlp_receiver import DEFAULT_MAX_SPANS, OtlpReceiver, fetch_trace, render_tree, running

RESOURCE = Resource.create({"service.name": "billing-test", "service.instance.id": "test-1"})
HOUR_MS = 3_600_000  # metric readers export only when flushed


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with running() as server:
        yield server


def tracer_provider(url: str, compression: Compression = Compression.NoCompression) -> TracerProvider:
    provider = TracerProvider(resource=RESOURCE)
    exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", compression=compression, timeout=10)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def meter_provider(url: str, resource: Resource = RESOURCE, delta: bool = False) -> MeterProvider:
    temporality: dict[type, AggregationTemporality] | None = (
        {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA} if delta else None
    )
    exporter = OTLPMetricExporter(endpoint=f"{url}/v1/metrics", preferred_temporality=temporality, timeout=10)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=HOUR_MS)
    return MeterProvider(metric_readers=[reader], resource=resource)


def logger_provider(url: str) -> LoggerProvider:
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{url}/v1/logs", timeout=10)))
    return provider


def get(url: str, **params: Any) -> Any:
    response = requests.get(url, params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def a_payment_trace(provider: TracerProvider, account: str = "acc-1") -> tuple[str, str]:
    """payment_events > (apply event > table commit, send email); returns (trace id, root span id)."""
    tracer = provider.get_tracer("billing.tests", "1.0")
    with tracer.start_as_current_span(
        "payment_events process", kind=SpanKind.CONSUMER,
        attributes={"cloudevents.event_id": "evt-1", "cloudevents.event_type": "billing.charge.failed",
                    "billing.account_id": account, "messaging.destination.name": "payment-events"},
    ) as root:
        time.sleep(0.002)
        with tracer.start_as_current_span("apply event", attributes={"billing.account_id": account}) as apply:
            apply.add_event("transition", {"from": "active", "to": "past_due"})
            with tracer.start_as_current_span("Table.submit_transaction", kind=SpanKind.CLIENT,
                                              attributes={"http.request.method": "POST", "az.namespace":
                                                          "Microsoft.Storage", "retries": [1, 2]}):
                time.sleep(0.001)
        with tracer.start_as_current_span("send email", kind=SpanKind.PRODUCER,
                                          attributes={"messaging.destination.name": "email-outbox",
                                                      "billing.email.kind": "payment_failed"}) as send:
            send.set_status(Status(StatusCode.ERROR, "throttled"))
        context = root.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


# --------------------------------------------------------------------------------------------
# Traces
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_spans_from_the_sdk_are_grouped_by_trace_and_shown_as_a_tree(
    receiver: OtlpReceiver, compression: Compression
) -> None:
    provider = tracer_provider(receiver.url, compression)
    trace_id, root_id = a_payment_trace(provider)
    assert provider.force_flush(10_000)
    provider.shutdown()

    traces = get(f"{receiver.url}/traces")["traces"]
    assert [t["traceId"] for t in traces] == [trace_id]
    trace = traces[0]
    assert trace["spanCount"] == 4 and trace["rootName"] == "payment_events process"
    assert trace["services"] == ["billing-test"] and trace["errors"] == 1
    spans = {s["name"]: s for s in trace["spans"]}
    root = spans["payment_events process"]
    assert root["spanId"] == root_id and root["parentSpanId"] is None and root["kind"] == "CONSUMER"
    assert root["attributes"] == {"cloudevents.event_id": "evt-1", "cloudevents.event_type": "billing.charge.failed",
                                  "billing.account_id": "acc-1", "messaging.destination.name": "payment-events"}
    assert root["resource"]["service.name"] == "billing-test" and root["serviceName"] == "billing-test"
    assert root["scope"] == {"name": "billing.tests", "version": "1.0"}
    assert spans["apply event"]["parentSpanId"] == root_id
    assert spans["Table.submit_transaction"]["parentSpanId"] == spans["apply event"]["spanId"]
    assert spans["Table.submit_transaction"]["attributes"]["retries"] == [1, 2]
    assert spans["Table.submit_transaction"]["kind"] == "CLIENT"
    assert spans["send email"]["status"] == {"code": "ERROR", "message": "throttled"}
    assert spans["apply event"]["events"][0]["name"] == "transition"
    assert spans["apply event"]["events"][0]["attributes"] == {"from": "active", "to": "past_due"}
    for span in spans.values():
        assert span["traceId"] == trace_id
        start, end = datetime.fromisoformat(span["start"]), datetime.fromisoformat(span["end"])
        assert span["start"].endswith("Z") and start <= end
        assert span["durationMs"] == pytest.approx((end - start).total_seconds() * 1000, abs=0.01)
    assert root["durationMs"] >= 3
    assert trace["durationMs"] == pytest.approx(root["durationMs"], abs=0.01)

    tree = get(f"{receiver.url}/traces/{trace_id}")
    assert tree["traceId"] == trace_id and "spans" not in tree
    [node] = tree["roots"]
    assert node["name"] == "payment_events process" and node["missingParent"] is False
    assert [c["name"] for c in node["children"]] == ["apply event", "send email"]
    assert [c["name"] for c in node["children"][0]["children"]] == ["Table.submit_transaction"]
    assert node["children"][0]["children"][0]["children"] == []
    assert requests.get(f"{receiver.url}/traces/{'0' * 32}", timeout=10).status_code == 404


def test_render_tree_indents_children_with_durations(receiver: OtlpReceiver) -> None:
    provider = tracer_provider(receiver.url)
    trace_id, _ = a_payment_trace(provider, account="acc-7")
    assert provider.force_flush(10_000)
    provider.shutdown()

    text = render_tree(get(f"{receiver.url}/traces/{trace_id}"))
    lines = text.splitlines()
    assert lines[0].startswith(f"trace {trace_id} · 4 spans · ") and "billing-test" in lines[0]
    assert lines[1].startswith("payment_events process  ")
    assert "cloudevents.event_id=evt-1" in lines[1] and "billing.account_id=acc-7" in lines[1]
    assert "consumer" in lines[1] and "[billing-test]" in lines[1]
    assert lines[2].startswith("├─ apply event  ")
    assert lines[3].startswith("│  └─ Table.submit_transaction  ") and "http.request.method=POST" in lines[3]
    assert lines[4].startswith("└─ send email  ") and "ERROR: throttled" in lines[4]
    assert "messaging.destination.name=email-outbox" in lines[4] and "billing.email.kind=payment_failed" in lines[4]
    assert len(lines) == 5
    for line in lines[1:]:
        assert re.search(r"  \d+(\.\d+)? (ms|s)", line), line
        assert "[billing-test]" not in line or line is lines[1]  # the service only where it changes

    # What the stack's --story will do: wait for the spans to stop arriving, then print.
    fetched = fetch_trace(receiver.url, trace_id, min_spans=4, settle=0.05, timeout=5)
    assert fetched is not None and render_tree(fetched) == text
    assert fetch_trace(receiver.url, "ab" * 16, settle=0.05, timeout=0.2) is None

    # The same from a trace of GET /traces, and in ASCII for consoles without UTF-8.
    grouped = get(f"{receiver.url}/traces")["traces"][0]
    assert render_tree(grouped) == text
    ascii_text = render_tree(grouped, ascii=True)
    assert ascii_text.isascii() and "|  `- Table.submit_transaction" in ascii_text


def test_a_span_whose_parent_never_arrived_is_a_root(receiver: OtlpReceiver) -> None:
    body: dict[str, Any] = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
         "parentSpanId": "eee19b7ec3c1b173", "name": "orphan", "kind": 3,
         "startTimeUnixNano": "1764583200000000000", "endTimeUnixNano": "1764583200001500000"}]}]}]}
    response = requests.post(f"{receiver.url}/v1/traces", json=body, timeout=10)
    assert response.status_code == 200
    tree = get(f"{receiver.url}/traces/5b8efff798038103d269b633813fc60c")
    [root] = tree["roots"]
    assert root["missingParent"] is True and root["parentSpanId"] == "eee19b7ec3c1b173"
    assert root["start"] == "2025-12-01T10:00:00.000000Z" and root["durationMs"] == 1.5
    assert "(parent not received)" in render_tree(tree)


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def test_counters_are_summed_per_attribute_set_across_exports_and_processes(receiver: OtlpReceiver) -> None:
    # One process with the SDK's default cumulative temporality, exported three times: each export
    # repeats the running total, which must not be added again.
    first = meter_provider(receiver.url)
    emails = first.get_meter("billing").create_counter("billing.emails", unit="{email}", description="emails")
    lag = first.get_meter("billing").create_histogram("billing.sweep.lag", unit="s")
    emails.add(1, {"kind": "payment_failed", "outcome": "sent"})
    emails.add(1, {"kind": "payment_failed", "outcome": "sent"})
    emails.add(1, {"kind": "payment_failed", "outcome": "failed"})
    emails.add(1, {"kind": "payment_reminder", "outcome": "sent"})
    lag.record(2.5, {"sweep": "dunning"})
    assert first.force_flush(10_000)
    emails.add(1, {"kind": "payment_failed", "outcome": "sent"})
    lag.record(0.5, {"sweep": "dunning"})
    assert first.force_flush(10_000)
    assert first.force_flush(10_000)
    # A second process (another instance id) exporting deltas.
    second = meter_provider(receiver.url, Resource.create({"service.name": "billing-test",
                                                           "service.instance.id": "test-2"}), delta=True)
    other = second.get_meter("billing").create_counter("billing.emails", unit="{email}")
    other.add(1, {"kind": "payment_failed", "outcome": "sent"})
    assert second.force_flush(10_000)
    other.add(1, {"kind": "payment_failed", "outcome": "sent"})
    assert second.force_flush(10_000)
    first.shutdown()
    second.shutdown()

    metrics = {m["name"]: m for m in get(f"{receiver.url}/metrics")["metrics"]}
    counter = metrics["billing.emails"]
    assert counter["type"] == "sum" and counter["monotonic"] is True and counter["unit"] == "{email}"
    values = {(p["attributes"]["kind"], p["attributes"]["outcome"]): p["value"] for p in counter["dataPoints"]}
    assert values == {("payment_failed", "sent"): 5, ("payment_failed", "failed"): 1,
                      ("payment_reminder", "sent"): 1}
    sent = next(p for p in counter["dataPoints"] if p["attributes"] == {"kind": "payment_failed", "outcome": "sent"})
    assert sent["streams"] == 2 and sent["services"] == ["billing-test"]

    # "How many billing.emails with kind=payment_failed, outcome=sent?"
    asked = get(f"{receiver.url}/metrics/billing.emails", kind="payment_failed", outcome="sent")
    assert asked["value"] == 5 and len(asked["dataPoints"]) == 1
    assert get(f"{receiver.url}/metrics/billing.emails", kind="payment_failed")["value"] == 6
    assert get(f"{receiver.url}/metrics/billing.emails", outcome="sent")["value"] == 6
    assert get(f"{receiver.url}/metrics/billing.emails", outcome="throttled")["value"] == 0
    assert requests.get(f"{receiver.url}/metrics/billing.nothing", timeout=10).status_code == 404

    histogram = metrics["billing.sweep.lag"]
    assert histogram["type"] == "histogram" and histogram["unit"] == "s"
    [point] = histogram["dataPoints"]
    assert point["attributes"] == {"sweep": "dunning"} and point["count"] == 2
    assert point["sum"] == pytest.approx(3.0) and point["min"] == 0.5 and point["max"] == 2.5
    assert sum(point["bucketCounts"]) == 2


# --------------------------------------------------------------------------------------------
# Logs
# --------------------------------------------------------------------------------------------


def test_a_log_record_inside_a_span_carries_its_trace_and_span_ids(receiver: OtlpReceiver) -> None:
    traces = tracer_provider(receiver.url)
    logs = logger_provider(receiver.url)
    from opentelemetry._logs import SeverityNumber

    with traces.get_tracer("billing").start_as_current_span("send email") as span:
        logs.get_logger("billing").emit(severity_number=SeverityNumber.WARN, severity_text="WARNING",
                                        body="email throttled, retry at 10:05",
                                        attributes={"billing.account_id": "acc-1", "attempt": 2})
        context = span.get_span_context()
    logs.get_logger("billing").emit(severity_number=SeverityNumber.INFO, body={"outside": True})
    assert traces.force_flush(10_000) and logs.force_flush(10_000)
    traces.shutdown()
    logs.shutdown()

    trace_id, span_id = f"{context.trace_id:032x}", f"{context.span_id:016x}"
    records = get(f"{receiver.url}/logs")["logs"]
    assert len(records) == 2
    inside, outside = records
    assert inside["traceId"] == trace_id and inside["spanId"] == span_id
    assert inside["body"] == "email throttled, retry at 10:05"
    assert inside["severity"] == "WARN" and inside["severityNumber"] == 13 and inside["severityText"] == "WARNING"
    assert inside["attributes"] == {"billing.account_id": "acc-1", "attempt": 2}
    assert inside["serviceName"] == "billing-test" and inside["time"].endswith("Z")
    assert outside["traceId"] is None and outside["spanId"] is None and outside["body"] == {"outside": True}
    assert get(f"{receiver.url}/logs", traceId=trace_id)["logs"] == [inside]
    assert get(f"{receiver.url}/traces/{trace_id}")["roots"][0]["spanId"] == span_id

    page = requests.get(f"{receiver.url}/?trace={trace_id}", timeout=10).text
    assert "email throttled, retry at 10:05" in page  # shown under its span


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------


def test_the_page_shows_traces_as_trees_newest_first_with_everything_escaped(receiver: OtlpReceiver) -> None:
    provider = tracer_provider(receiver.url)
    older, _ = a_payment_trace(provider, account="acc-older")
    time.sleep(0.01)
    tracer = provider.get_tracer("billing")
    with tracer.start_as_current_span("billing page <b>visit</b>",
                                      attributes={"billing.account_id": "<script>alert('x')</script>",
                                                  "http.request.method": "GET"}) as page_span:
        with tracer.start_as_current_span("child & co", attributes={"note": '"><img src=x onerror=alert(1)>'}):
            pass
        newer = f"{page_span.get_span_context().trace_id:032x}"
    assert provider.force_flush(10_000)
    provider.shutdown()

    response = requests.get(f"{receiver.url}/", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    assert "script-src 'none'" in response.headers["Content-Security-Policy"]
    page = response.text
    assert "<script" not in page and "<img" not in page and "<b>visit" not in page
    assert "billing.account_id=&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "billing page &lt;b&gt;visit&lt;/b&gt;" in page and "child &amp; co" in page
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in page  # in the attributes table
    # Newest trace first, each a <details>; the tree nests the child span inside its parent's list.
    assert page.index(f'id="t-{newer}"') < page.index(f'id="t-{older}"')
    assert page.count('<details class="trace"') == 2
    parent_at = page.index("billing page &lt;b&gt;visit")
    child_at = page.index("child &amp; co")
    assert parent_at < child_at and "<ul>" in page[parent_at:child_at]
    for shown in ("payment_events process", "cloudevents.event_id=evt-1", "billing.account_id=acc-older",
                  "messaging.destination.name=email-outbox", "http.request.method=POST", "Table.submit_transaction"):
        assert shown in page
    assert re.search(r'<span class="dur muted">\d+(\.\d+)? ms</span>', page)

    one = requests.get(f"{receiver.url}/?trace={older}", timeout=10)
    assert one.status_code == 200 and one.text.count('<details class="trace"') == 1
    missing = requests.get(f"{receiver.url}/?trace={'ab' * 16}", timeout=10)
    assert missing.status_code == 404 and "No span of trace" in missing.text
    assert requests.get(f"{receiver.url}/?limit=1", timeout=10).text.count('<details class="trace"') == 1


def test_an_empty_receiver_has_a_page_and_empty_lists(receiver: OtlpReceiver) -> None:
    page = requests.get(f"{receiver.url}/", timeout=10)
    assert page.status_code == 200 and "No traces yet" in page.text
    assert get(f"{receiver.url}/traces") == {"traces": []}
    assert get(f"{receiver.url}/metrics") == {"metrics": []}
    assert get(f"{receiver.url}/logs") == {"logs": []}


# --------------------------------------------------------------------------------------------
# OTLP/JSON, bad bodies, clearing, the bound
# --------------------------------------------------------------------------------------------


def test_otlp_json_posts_are_accepted_for_all_three_signals(receiver: OtlpReceiver) -> None:
    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    spans: dict[str, Any] = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-app"}}]},
        "scopeSpans": [{"scope": {"name": "manual"}, "spans": [{
            "traceId": trace_id, "spanId": span_id, "name": "json span", "kind": 2,
            "startTimeUnixNano": "1764583200000000000", "endTimeUnixNano": "1764583200250000000",
            "attributes": [{"key": "billing.account_id", "value": {"stringValue": "acc-j"}},
                           {"key": "n", "value": {"intValue": "42"}},
                           {"key": "ok", "value": {"boolValue": True}},
                           {"key": "ratio", "value": {"doubleValue": 0.5}},
                           {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}]}}}],
            "status": {"code": 1}, "futureField": "ignored"}]}]}]}
    response = requests.post(f"{receiver.url}/v1/traces", json=spans, timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    assert response.json() == {}
    [span] = get(f"{receiver.url}/traces")["traces"][0]["spans"]
    assert span["traceId"] == trace_id and span["spanId"] == span_id and span["kind"] == "SERVER"
    assert span["attributes"] == {"billing.account_id": "acc-j", "n": 42, "ok": True, "ratio": 0.5, "tags": ["a"]}
    assert span["status"]["code"] == "OK" and span["durationMs"] == 250 and span["serviceName"] == "json-app"

    def counter(value: str) -> dict[str, Any]:
        return {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{
            "name": "billing.events", "unit": "1", "sum": {
                "aggregationTemporality": 1, "isMonotonic": True, "dataPoints": [{
                    "attributes": [{"key": "type", "value": {"stringValue": "billing.charge.failed"}},
                                   {"key": "outcome", "value": {"stringValue": "applied"}}],
                    "timeUnixNano": "1764583200000000000", "asInt": value}]}}]}]}]}

    for value in ("3", "4"):  # deltas add up; gzip works for JSON too
        data = gzip.compress(json.dumps(counter(value)).encode())
        response = requests.post(f"{receiver.url}/v1/metrics", data=data, timeout=10,
                                 headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert response.status_code == 200, response.text
    events = get(f"{receiver.url}/metrics/billing.events", type="billing.charge.failed", outcome="applied")
    assert events["value"] == 7 and events["temporality"] == "delta"

    logs: dict[str, Any] = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{
        "timeUnixNano": "1764583200100000000", "severityNumber": 17, "severityText": "ERROR",
        "body": {"stringValue": "dead-lettered"}, "traceId": trace_id, "spanId": span_id,
        "attributes": [{"key": "reason", "value": {"stringValue": "bad json"}}]}]}]}]}
    assert requests.post(f"{receiver.url}/v1/logs", json=logs, timeout=10).status_code == 200
    [record] = get(f"{receiver.url}/logs")["logs"]
    assert (record["traceId"], record["spanId"], record["severity"], record["body"]) == \
        (trace_id, span_id, "ERROR", "dead-lettered")
    assert record["time"] == "2025-12-01T10:00:00.100000Z"


def test_malformed_bodies_answer_400_and_the_server_keeps_serving(receiver: OtlpReceiver) -> None:
    url = receiver.url
    protobuf = {"Content-Type": "application/x-protobuf"}
    # A length-delimited field that claims more bytes than there are.
    response = requests.post(f"{url}/v1/traces", data=b"\x0a\xff\xff\xff\x0f\x01", headers=protobuf, timeout=10)
    assert response.status_code == 400 and response.headers["Content-Type"] == "application/x-protobuf"
    status = status_pb2.Status.FromString(response.content)
    assert status.code == 3 and "ExportTraceServiceRequest" in status.message

    cases: list[tuple[str, bytes, dict[str, str], int]] = [
        ("/v1/metrics", b"\xff\xff\xff", protobuf, 400),
        ("/v1/logs", b"{not json", {"Content-Type": "application/json"}, 400),
        ("/v1/traces", b'{"resourceSpans": "nope"}', {"Content-Type": "application/json"}, 400),
        ("/v1/traces", b'[1, 2]', {"Content-Type": "application/json"}, 400),
        ("/v1/traces", b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
         {"Content-Type": "application/json"}, 400),
        ("/v1/traces", b"not gzip", {**protobuf, "Content-Encoding": "gzip"}, 400),
        ("/v1/traces", gzip.compress(b"\x0a\x05ab")[:-6], {**protobuf, "Content-Encoding": "gzip"}, 400),
        ("/v1/traces", b"", {**protobuf, "Content-Encoding": "br"}, 415),
        ("/v1/traces", b"{}", {"Content-Type": "text/plain"}, 415),
    ]
    for path, data, headers, expected in cases:
        response = requests.post(f"{url}{path}", data=data, headers=headers, timeout=10)
        assert response.status_code == expected, (path, data, response.text)
        if headers["Content-Type"] == "application/json" and expected == 400:
            assert response.json()["code"] == 3 and response.json()["message"]
    assert requests.get(f"{url}/v1/traces", timeout=10).status_code == 405
    assert requests.get(f"{url}/nowhere", timeout=10).status_code == 404
    assert requests.get(f"{url}/traces", params={"limit": "x"}, timeout=10).status_code == 400

    stats = get(f"{url}/stats")
    assert stats["rejected"] == 10 and stats["spans"] == 0
    # Still serving, and an empty export is a valid one.
    response = requests.post(f"{url}/v1/traces", data=b"", headers=protobuf, timeout=10)
    assert response.status_code == 200 and ExportTraceServiceResponse.FromString(response.content) == \
        ExportTraceServiceResponse()
    provider = tracer_provider(url)
    trace_id, _ = a_payment_trace(provider)
    assert provider.force_flush(10_000)
    provider.shutdown()
    assert get(f"{url}/traces")["traces"][0]["traceId"] == trace_id


def test_delete_data_clears_everything(receiver: OtlpReceiver) -> None:
    provider = tracer_provider(receiver.url)
    a_payment_trace(provider)
    assert provider.force_flush(10_000)
    provider.shutdown()
    meters = meter_provider(receiver.url)
    meters.get_meter("billing").create_counter("billing.events").add(1, {"outcome": "applied"})
    assert meters.force_flush(10_000)
    meters.shutdown()
    assert get(f"{receiver.url}/traces")["traces"] and get(f"{receiver.url}/metrics")["metrics"]

    assert requests.delete(f"{receiver.url}/data", timeout=10).status_code == 204
    assert get(f"{receiver.url}/traces") == {"traces": []}
    assert get(f"{receiver.url}/metrics") == {"metrics": []}
    assert get(f"{receiver.url}/stats")["spansReceived"] == 0


def test_memory_is_bounded_oldest_first() -> None:
    assert DEFAULT_MAX_SPANS == 50_000
    with running(max_spans=100, max_log_records=30, max_metric_streams=10) as receiver:
        provider = tracer_provider(receiver.url)
        tracer = provider.get_tracer("bound")
        for index in range(250):
            with tracer.start_as_current_span(f"span-{index:03d}"):
                pass
        assert provider.force_flush(10_000)
        provider.shutdown()
        logs = logger_provider(receiver.url)
        for index in range(45):
            logs.get_logger("bound").emit(body=f"record {index}")
        assert logs.force_flush(10_000)
        logs.shutdown()
        meters = meter_provider(receiver.url)
        counter = meters.get_meter("bound").create_counter("billing.deadletters")
        for index in range(25):
            counter.add(1, {"source": f"queue-{index:02d}"})
        assert meters.force_flush(10_000)
        meters.shutdown()

        stats = get(f"{receiver.url}/stats")
        assert (stats["spans"], stats["spansReceived"], stats["spansDropped"]) == (100, 250, 150)
        assert (stats["logRecords"], stats["logRecordsDropped"]) == (30, 15)
        # shutdown() exported the 25 cumulative streams once more: each export pushes out the oldest.
        assert stats["metricStreams"] == 10 and stats["metricStreamsDropped"] >= 15
        names = sorted(s["name"] for t in get(f"{receiver.url}/traces")["traces"] for s in t["spans"])
        assert names == [f"span-{index:03d}" for index in range(150, 250)]
        bodies = [r["body"] for r in get(f"{receiver.url}/logs")["logs"]]
        assert bodies == [f"record {index}" for index in range(15, 45)]
        [metric] = get(f"{receiver.url}/metrics")["metrics"]
        assert [p["attributes"]["source"] for p in metric["dataPoints"]] == [f"queue-{i}" for i in range(15, 25)]
        assert requests.get(f"{receiver.url}/", timeout=10).status_code == 200


def test_python_m_runs_it_on_the_given_port() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.otlp_receiver", "--port", "0", "--quiet"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        match = re.search(r"on (http://127\.0\.0\.1:\d+)", first)
        assert match, first
        url = match.group(1)
        body: dict[str, Any] = {"resourceSpans": [{"scopeSpans": [{"spans": [{
            "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331", "name": "cli",
            "startTimeUnixNano": "1764583200000000000", "endTimeUnixNano": "1764583200000000001"}]}]}]}
        assert requests.post(f"{url}/v1/traces", json=body, timeout=10).status_code == 200
        assert get(f"{url}/traces/0af7651916cd43dd8448eb211c80319c")["roots"][0]["name"] == "cli"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


def test_hex_ids_in_json_keep_base64_meaning_for_protobuf_json() -> None:
    # The converter only rewrites hex ids; a base64 id (protobuf's own JSON mapping) passes as is.
    from devstack.otlp_receiver.store import decode_request

    raw = bytes(range(16))
    body: dict[str, Any] = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": base64.b64encode(raw).decode(), "spanId": base64.b64encode(raw[:8]).decode()}]}]}]}
    request = decode_request("/v1/traces", json.dumps(body).encode(), json_body=True)
    assert request.resource_spans[0].scope_spans[0].spans[0].trace_id == raw
