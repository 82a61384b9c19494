"""Which traces are kept (contract §6, README "Telemetry"): the tracer provider `configure()` builds
for OTLP (`shared.telemetry.setup.tracer_provider`), with an in-memory exporter in place of OTLP.

Without `OTEL_TRACES_SAMPLER` the product keeps every trace a function starts or continues and no
root span of an SDK call made outside one; a remote parent's decision (the `traceparent` flags) is
kept, across the product's own queue hops too. With `OTEL_TRACES_SAMPLER=parentbased_traceidratio`
and `OTEL_TRACES_SAMPLER_ARG` new traces are kept at that ratio, the same way by every process."""

from __future__ import annotations

import functools
import math
import os
import random
from collections.abc import Iterator
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from shared.telemetry import fields_of, span_context_of
from shared.telemetry.setup import tracer_provider

FUNCTION = {"faas.trigger": "pubsub", "messaging.destination.name": "payment-events"}
"""What the product's entry points put on their span (`queue_function`, `http_function`, ...)."""
SAMPLERS = ("product", "parentbased_traceidratio")
trace_ids = st.integers(min_value=1, max_value=2**128 - 1)
span_ids = st.integers(min_value=1, max_value=2**64 - 1)


def _env(sampler: str, ratio: float = 0.25) -> dict[str, str]:
    if sampler == "product":
        return {}
    return {"OTEL_TRACES_SAMPLER": sampler, "OTEL_TRACES_SAMPLER_ARG": str(ratio)}


def _provider(sampler: str, ratio: float = 0.25) -> tuple[TracerProvider, InMemorySpanExporter]:
    """The product's provider for that environment (the SDK reads OTEL_TRACES_SAMPLER* from the
    process environment when it is built), exporting to memory; one per environment."""
    return _built(sampler, ratio)


@functools.cache
def _built(sampler: str, ratio: float) -> tuple[TracerProvider, InMemorySpanExporter]:
    env = _env(sampler, ratio)
    with mock.patch.dict(os.environ, env):
        provider = tracer_provider(env)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _exported(sampler: str = "product", ratio: float = 0.25) -> Iterator[str]:
    _, exporter = _provider(sampler, ratio)
    yield from (s.name for s in exporter.get_finished_spans())


def _fresh(sampler: str = "product", ratio: float = 0.25) -> trace.Tracer:
    provider, exporter = _provider(sampler, ratio)
    exporter.clear()
    return provider.get_tracer("test")


def _under(parent: SpanContext) -> Context:
    return trace.set_span_in_context(NonRecordingSpan(parent))


def test_a_function_starts_a_trace_and_what_it_calls_is_in_it() -> None:
    tracer = _fresh()
    with (tracer.start_as_current_span("payment_events", kind=SpanKind.CONSUMER, attributes=FUNCTION) as root,
          tracer.start_as_current_span("Table.submit_transaction", kind=SpanKind.CLIENT) as call):
        pass
    assert sorted(_exported()) == ["Table.submit_transaction", "payment_events"]
    assert call.get_span_context().trace_id == root.get_span_context().trace_id


def test_an_sdk_call_outside_any_function_makes_no_trace() -> None:
    """The local host polling its queues: no trace of its own, nor of what the call does inside."""
    tracer = _fresh()
    with (tracer.start_as_current_span("Queue.receive_messages", kind=SpanKind.CLIENT) as poll,
          tracer.start_as_current_span("GET /devstoreaccount1/payment-events/messages", kind=SpanKind.CLIENT)):
        pass
    assert list(_exported()) == []
    assert not poll.get_span_context().trace_flags.sampled


@settings(max_examples=60, deadline=None)
@given(trace_id=trace_ids, span_id=span_ids, sampled=st.booleans(), sampler=st.sampled_from(SAMPLERS))
def test_a_remote_parents_decision_is_kept(trace_id: int, span_id: int, sampled: bool, sampler: str) -> None:
    """An event whose `traceparent` says sampled is traced whole, in its trace; one that says not
    sampled leaves no span, whatever the ratio or the span."""
    parent = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(sampled)))
    tracer = _fresh(sampler)
    with (tracer.start_as_current_span("payment_events", context=_under(parent), attributes=FUNCTION) as consumer,
          tracer.start_as_current_span("send subscription-lifecycle", kind=SpanKind.PRODUCER)):
        pass
    spans = _provider(sampler)[1].get_finished_spans()
    assert len(spans) == (2 if sampled else 0)
    assert all(s.context.trace_id == trace_id for s in spans)
    assert consumer.get_span_context().trace_id == trace_id  # carried on even when not sampled


@settings(max_examples=30, deadline=None)
@given(trace_id=trace_ids, span_id=span_ids, sampled=st.booleans())
def test_the_decision_crosses_the_products_own_queue_hops(trace_id: int, span_id: int, sampled: bool) -> None:
    """What a traced function sends carries the decision on (`fields_of`), so the email_outbox run
    it causes is kept or dropped with it, in the same trace."""
    tracer = _fresh()
    parent = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(sampled)))
    with tracer.start_as_current_span("payment_events", context=_under(parent), attributes=FUNCTION) as first:
        handoff = fields_of(first.get_span_context())
    carried = span_context_of(handoff["traceparent"])
    assert carried is not None and carried.trace_id == trace_id
    with tracer.start_as_current_span("email_outbox", context=_under(carried), attributes=FUNCTION):
        pass
    assert sorted(_exported()) == (["email_outbox", "payment_events"] if sampled else [])


def _kept(sampler: str, ratio: float, trace_id: int) -> bool:
    provider, _ = _provider(sampler, ratio)
    result = provider.sampler.should_sample(None, trace_id, "payment_events", SpanKind.CONSUMER, FUNCTION)
    return result.decision is Decision.RECORD_AND_SAMPLE


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), ratio=st.sampled_from((0.05, 0.25, 0.5, 0.9)))
def test_new_traces_are_kept_at_the_configured_ratio(seed: int, ratio: float) -> None:
    draw = random.Random(seed)
    n = 4000
    kept = sum(_kept("parentbased_traceidratio", ratio, draw.getrandbits(128) or 1) for _ in range(n))
    bound = 5 * math.sqrt(ratio * (1 - ratio) / n)  # five standard deviations: a false alarm never happens
    assert abs(kept / n - ratio) <= bound, (kept, n, ratio)


@settings(max_examples=200, deadline=None)
@given(trace_id=trace_ids)
def test_every_process_decides_alike_and_a_higher_ratio_keeps_more(trace_id: int) -> None:
    """The decision is the trace id's, so every instance keeps or drops a trace the same way, and a
    trace kept at 5 % is kept at any higher ratio."""
    decisions = [_kept("parentbased_traceidratio", r, trace_id) for r in (0.05, 0.25, 0.5, 0.9)]
    assert decisions == sorted(decisions)  # False ... then True
    assert decisions == [_kept("parentbased_traceidratio", r, trace_id) for r in (0.05, 0.25, 0.5, 0.9)]


def test_a_ratio_of_zero_keeps_no_new_trace_but_every_sampled_parents() -> None:
    draw = random.Random(7)
    assert not any(_kept("parentbased_traceidratio", 0.0, draw.getrandbits(128) or 1) for _ in range(500))
    tracer = _fresh("parentbased_traceidratio", 0.0)
    parent = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
                         trace_flags=TraceFlags(1))
    with tracer.start_as_current_span("payment_events", context=_under(parent), attributes=FUNCTION):
        pass
    assert list(_exported("parentbased_traceidratio", 0.0)) == ["payment_events"]
