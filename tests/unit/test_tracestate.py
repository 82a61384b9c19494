"""`tracestate` as it enters the product (contract §6, issue 22): a list-member whose key or value
holds a card number or a secret is dropped (masking it would corrupt the vendor's value; W3C Trace
Context lets a receiver drop members it cannot accept); a header that is malformed, over 512
characters or over 32 members is dropped whole. The trace itself (`traceparent`) always continues,
and no path that carries trace context on (span contexts, messages, outbox rows, exported spans
and links) holds the raw value."""

from __future__ import annotations

import re
import string
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.span import TraceState

from shared.inbound.card_data import find_card_numbers, luhn
from shared.telemetry import current_fields, fields_of, http_function, parse_tracestate, span_context_of
from shared.telemetry.setup import tracer_provider
from shared.telemetry.traceparent import clean_tracestate
from shared.telemetry.tracing import stored_or_current

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
REPRO = "vendor=5555555555554444,x=sk_live_abcdefghij"
_SECRET_MARKS = re.compile(r"(?:sk|rk)_(?:live|test)_|whsec_")


def _leaks(text: str) -> bool:
    return bool(find_card_numbers(text)) or _SECRET_MARKS.search(text) is not None


def _with_check_digit(body: str) -> str:
    return next(body + d for d in string.digits if luhn(body + d))


# Clean members: keys `v<i>x` plus letters and digits (no boundary inside, so no `sig=`-like key,
# and fewer than 13 digits), values without digits, `_` or spaces (so no card number or secret).
_CLEAN_VALUE = st.text(alphabet=string.ascii_letters + "!#$%&'()*+-./:;<>?@[]^`{|}~", min_size=1, max_size=12)
_KEY_TAIL = st.text(alphabet=string.ascii_lowercase + string.digits, max_size=8)
_CARDS = st.integers(12, 18).flatmap(lambda n: st.text(string.digits, min_size=n, max_size=n)).map(_with_check_digit)
_SEPARATED = st.tuples(_CARDS, st.sampled_from(["", " ", "-", "."])).map(
    lambda c: c[1].join(c[0][i:i + 4] for i in range(0, len(c[0]), 4)))
_SECRETS = st.tuples(st.sampled_from(["sk_live_", "sk_test_", "rk_live_", "whsec_"]),
                     st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=24)).map("".join)
_POISON = st.tuples(st.text(alphabet=string.ascii_letters, max_size=6), st.one_of(_SEPARATED, _SECRETS),
                    st.sampled_from(["", ";x", ":1"])).map(lambda p: f"{p[0]}:{p[1]}{p[2]}" if p[0] else p[1] + p[2])


@st.composite
def _headers(draw: st.DrawFn, *, poisoned: bool = True) -> tuple[str, list[tuple[str, str]]]:
    """A well-formed `tracestate` (≤ 32 members, ≤ 512 characters) and its clean members in order."""
    count = draw(st.integers(1, 32))
    members: list[tuple[str, str, bool]] = []
    for i in range(count):
        key = f"v{i}x{draw(_KEY_TAIL)}"  # the first x ends the index: keys never repeat
        bad = poisoned and draw(st.booleans())
        members.append((key, draw(_POISON if bad else _CLEAN_VALUE), bad))
    joiner = draw(st.sampled_from([",", ", ", " ,\t"]))
    header = joiner.join(f"{k}={v}" for k, v, _ in members)
    while len(header) > 512:
        members.pop()
        header = joiner.join(f"{k}={v}" for k, v, _ in members)
    return header, [(k, v) for k, v, bad in members if not bad]


def test_the_repro_keeps_the_trace_and_drops_both_members() -> None:
    assert parse_tracestate(REPRO) == []
    assert clean_tracestate(REPRO) == ""
    context = span_context_of(TRACEPARENT, REPRO)
    assert context is not None and fields_of(context) == {"traceparent": TRACEPARENT}  # the trace goes on
    assert parse_tracestate("vendor=4111111111111111") == []
    assert parse_tracestate("congo=t61rcWkgMzE,vendor=4111111111111111,rojo=00f067aa0ba902b7") == [
        ("congo", "t61rcWkgMzE"), ("rojo", "00f067aa0ba902b7")]


def test_a_member_is_dropped_for_its_key_too() -> None:
    assert parse_tracestate("5555555555554444@dd=1,ok=1") == [("ok", "1")]
    assert parse_tracestate("sk_live_abcdef=1,ok=1") == [("ok", "1")]
    assert parse_tracestate("sig=c2VjcmV0,code=abcdef,ok=1") == [("ok", "1")]  # a SAS signature, a function key


def test_other_secrets_and_links_are_dropped() -> None:
    assert parse_tracestate("a=Bearer abcdefghij,b=whsec_abc,c=x/api/billing/acc1?expires,ok=1") == [("ok", "1")]
    assert parse_tracestate("a=4111%201111%201111%201111,ok=1") == [("ok", "1")]  # behind URL escapes


def test_vendor_values_that_are_no_card_number_are_kept_whole() -> None:
    header = "dd=s:1;o:rum;t.dm:-0,rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,tenant@sys=4111"
    assert clean_tracestate(header) == header
    digits_in_hex = "ot=p:0af7651916cd43dd"  # a 16-hex span id; its digits are no card number
    assert clean_tracestate(digits_in_hex) == digits_in_hex


@given(_headers())
def test_members_holding_a_card_number_or_a_secret_are_dropped_the_rest_kept_in_order(
        case: tuple[str, list[tuple[str, str]]]) -> None:
    header, clean = case
    assert parse_tracestate(header) == clean
    kept = clean_tracestate(header)
    assert kept == ",".join(f"{k}={v}" for k, v in clean) and not _leaks(kept)
    context = span_context_of(TRACEPARENT, header)
    assert context is not None and not _leaks(str(fields_of(context)))
    assert fields_of(context)["traceparent"] == TRACEPARENT


@given(_headers(poisoned=False))
def test_a_clean_header_is_kept_as_it_came(case: tuple[str, list[tuple[str, str]]]) -> None:
    header, clean = case
    assert parse_tracestate(header) == clean


@given(_headers(), st.sampled_from(["UPPER=x", "k=", "=v", "k=a=b", "k=\u00e9", "9=x", "a@b@c=x", "k", "k=x\ny",
                                    "repeated key"]), st.integers(0, 40))
def test_a_malformed_header_is_dropped_whole(case: tuple[str, list[tuple[str, str]]], bad: str, at: int) -> None:
    header, _ = case
    parts = header.split(",")
    parts.insert(at % (len(parts) + 1), parts[0] if bad == "repeated key" else bad)
    malformed = ",".join(parts)
    assert parse_tracestate(malformed) == []
    assert clean_tracestate(malformed) == ""
    context = span_context_of(TRACEPARENT, malformed)
    assert context is not None and not context.trace_state  # the trace still continues


def test_too_long_or_too_many_is_dropped_whole() -> None:
    assert parse_tracestate(",".join(f"k{i}=v" for i in range(33))) == []
    assert len(parse_tracestate(",".join(f"k{i}=v" for i in range(32)))) == 32
    assert parse_tracestate("a=" + "x" * 255 + ",b=" + "y" * 255) == []  # 515 characters
    assert parse_tracestate(None) == [] and parse_tracestate(42) == [] and parse_tracestate("") == []


def test_a_stored_tracestate_is_cleaned_before_it_is_carried_on() -> None:
    """An outbox row written before the fix (or by hand) forwards no raw value."""
    stored = {"traceparent": TRACEPARENT, "tracestate": "ok=1," + REPRO}
    assert stored_or_current(stored, {}) == {"traceparent": TRACEPARENT, "tracestate": "ok=1"}
    assert stored_or_current({"traceparent": TRACEPARENT, "tracestate": REPRO}, {}) == {"traceparent": TRACEPARENT}


def _dirty(state: str = "ok=1," + REPRO) -> SpanContext:
    """A context whose trace state was never checked (a host's, or one built by other code)."""
    return SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
                       trace_flags=TraceFlags(1), trace_state=TraceState.from_header([state]))


def test_what_a_message_carries_never_holds_the_raw_value() -> None:
    dirty = _dirty()
    assert dirty.trace_state.to_header() == "ok=1," + REPRO  # OpenTelemetry itself keeps it
    assert fields_of(dirty) == {"traceparent": TRACEPARENT, "tracestate": "ok=1"}
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(dirty), Context()))
    try:
        assert current_fields() == {"traceparent": TRACEPARENT, "tracestate": "ok=1"}
    finally:
        otel_context.detach(token)


def test_an_http_request_header_continues_the_trace_cleaned() -> None:
    seen: dict[str, str] = {}

    request = SimpleNamespace(method="GET", url="http://127.0.0.1:7071/api/accounts/acc1",
                              headers={"traceparent": TRACEPARENT, "tracestate": "vendor=4111111111111111,ok=1"})

    @http_function("accounts/{accountId}")
    def handler(req: object) -> None:
        seen.update(current_fields())

    handler(request)
    assert seen == {"traceparent": TRACEPARENT, "tracestate": "ok=1"}


def test_no_exported_span_or_link_holds_the_raw_value() -> None:
    """Whatever context a span starts from, the product's providers export it cleaned."""
    provider = tracer_provider({})
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    parent = trace.set_span_in_context(NonRecordingSpan(_dirty()), Context())
    with (tracer.start_as_current_span("payment_events", context=parent, attributes={"faas.trigger": "pubsub"},
                                       links=[Link(_dirty("x=" + "4111111111111111"))]),
          tracer.start_as_current_span("send subscription-lifecycle")):
        pass
    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    for span in spans:
        assert span.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C  # the same trace
        assert span.context.trace_state.to_header() == "ok=1", span.name
        assert all(not _leaks(link.context.trace_state.to_header()) for link in span.links)
    assert spans[1].links and spans[1].links[0].context.span_id == 0xB7AD6B7169203331  # the link stays
