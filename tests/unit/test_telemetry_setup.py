"""`telemetry.configure()` from the environment (contract §6, README "Telemetry"), and the metrics'
attributes. Each case runs in a fresh Python process, as the app does: the OpenTelemetry globals
are set once per process and never reset.

Telemetry that is not configured costs nothing: without `APPLICATIONINSIGHTS_CONNECTION_STRING`
or `OTEL_EXPORTER_OTLP_ENDPOINT` no provider, exporter or thread is installed, yet an incoming
`traceparent` is still passed on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TELEMETRY_VARIABLES = ("APPLICATIONINSIGHTS_CONNECTION_STRING", "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY",
                       "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED",
                       "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG")
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

CONFIGURE = f"""
import json, logging, os, threading
from opentelemetry import _logs, metrics, trace
from azure.core.settings import settings
from shared import telemetry

mode = telemetry.configure()
with telemetry.span("payment_events", parent=telemetry.span_context_of({PARENT!r})) as current:
    carried = telemetry.current_fields()
    recording = current.is_recording()
print(json.dumps({{
    "mode": mode,
    "providers": [type(p).__name__ for p in (trace.get_tracer_provider(), metrics.get_meter_provider(),
                                             _logs.get_logger_provider())],
    "threads": sorted(t.name for t in threading.enumerate()),
    "root_handlers": [type(h).__name__ for h in logging.getLogger().handlers],
    "azure_sdk_spans": settings.tracing_implementation() is not None,
    "enabled": telemetry.enabled(),
    "recording": recording,
    "carried": carried,
}}), flush=True)
os._exit(0)  # no exit-time flush to an endpoint that is not there
"""


def _run(code: str, **env: str) -> dict[str, Any]:
    base = {k: v for k, v in os.environ.items() if k not in TELEMETRY_VARIABLES}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          env={**base, "PYTHONPATH": str(ROOT), **env}, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_not_configured_installs_nothing_and_still_passes_the_trace_on() -> None:
    seen = _run(CONFIGURE)
    assert seen["mode"] == "off"
    assert seen["providers"] == ["ProxyTracerProvider", "_ProxyMeterProvider", "ProxyLoggerProvider"]
    assert seen["threads"] == ["MainThread"]  # no batch processor, no metric reader
    assert "LoggingHandler" not in seen["root_handlers"]
    assert not seen["azure_sdk_spans"] and not seen["enabled"] and not seen["recording"]
    assert seen["carried"] == {"traceparent": PARENT}  # the lifecycle event still carries the event's trace


def test_otlp_configured_installs_the_sdk_and_its_exporters() -> None:
    """The same observations with an endpoint: what the test above would see if something were
    installed without one."""
    seen = _run(CONFIGURE, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert seen["mode"] == "otlp"
    assert seen["providers"] == ["TracerProvider", "MeterProvider", "LoggerProvider"]
    assert {"OtelBatchSpanRecordProcessor", "OtelPeriodicExportingMetricReader",
            "OtelBatchLogRecordProcessor"} <= set(seen["threads"])
    assert "LoggingHandler" in seen["root_handlers"]
    assert seen["azure_sdk_spans"] and seen["enabled"] and seen["recording"]
    assert seen["carried"]["traceparent"].split("-")[1] == PARENT.split("-")[1]  # a child in the same trace
    assert seen["carried"]["traceparent"] != PARENT


@pytest.mark.parametrize("env", [{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
                                 {"OTEL_EXPORTER_OTLP_ENDPOINT": "", "APPLICATIONINSIGHTS_CONNECTION_STRING": ""}],
                         ids=["sdk-disabled", "empty-settings"])
def test_disabled_or_empty_settings_install_nothing(env: dict[str, str]) -> None:
    seen = _run(CONFIGURE, **env)
    assert seen["mode"] == "off" and seen["threads"] == ["MainThread"] and not seen["enabled"]


METRICS = """
import json, os
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
from shared import telemetry

card = "4111 1111 1111 1111"
telemetry.count_event("billing.charge.failed", "applied")
telemetry.count_event(f"billing.charge.failed {card}", "dead_lettered")  # a type from outside
telemetry.count_email("payment_failed", "throttled")
telemetry.count_email("payment_failed", "throttled")
telemetry.count_charge("declined", f"do_not_honor card {card}")
telemetry.count_charge("declined", "x" * 52 + "4111111111111111")  # a card number across the 64-character cut
telemetry.count_charge("succeeded", recovered_minor=1234, currency="USD")
telemetry.count_transition("active", "past_due")
telemetry.count_deadletter("payment-events")
telemetry.record_sweep_lag(-3.0)
telemetry.record_sweep_lag(90.0)
points = {}
for rm in reader.get_metrics_data().resource_metrics:
    for sm in rm.scope_metrics:
        for m in sm.metrics:
            points[m.name] = [[dict(p.attributes), getattr(p, "value", None), getattr(p, "count", None),
                               getattr(p, "min", None)] for p in m.data.data_points]
print(json.dumps(points), flush=True)
os._exit(0)
"""


@pytest.fixture(scope="module")
def points() -> dict[str, list[list[Any]]]:
    return _run(METRICS)


def _by_attributes(points: dict[str, list[list[Any]]], name: str) -> dict[str, float]:
    return {json.dumps(a, sort_keys=True): v if v is not None else c for a, v, c, _ in points[name]}


def test_the_metrics_have_the_contracts_names_and_attributes(points: dict[str, list[list[Any]]]) -> None:
    assert _by_attributes(points, "billing.emails") == {'{"kind": "payment_failed", "outcome": "throttled"}': 2}
    assert _by_attributes(points, "billing.events") == {
        '{"outcome": "applied", "type": "billing.charge.failed"}': 1,
        '{"outcome": "dead_lettered", "type": "unknown"}': 1}  # an unknown type: bounded, never its text
    assert _by_attributes(points, "billing.recovered") == {'{"currency": "USD"}': 1234}
    assert _by_attributes(points, "billing.transitions") == {'{"from": "active", "to": "past_due"}': 1}
    assert _by_attributes(points, "billing.deadletters") == {'{"source": "payment-events"}': 1}
    ((attributes, _, count, least),) = points["billing.sweep.lag"]
    assert attributes == {} and count == 2 and least == 0.0  # a step run early is no negative lag


def test_no_metric_attribute_carries_a_card_number_or_its_leading_digits(
        points: dict[str, list[list[Any]]]) -> None:
    codes = sorted(a["decline_code"] for a, *_ in points["billing.charges"] if a["outcome"] == "declined")
    assert codes == ["do_not_honor card **** **** **** 1111", "x" * 52 + "************"]
    text = json.dumps(points)
    assert "4111 1111" not in text and "411111" not in text
