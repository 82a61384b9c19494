"""No telemetry carries a card number, a secret or a billing link (contract §6): what the exporter
receives from the product's tracer and logger providers (`shared.telemetry.setup`), and from the
providers the Python worker configures once the product adds its masking to them. The product's
own identifiers stay whole in the attributes that name them, whatever digits they hold (§1)."""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

import shared.log_context  # noqa: F401  # as in the app: log records are masked where they are made, too
from shared.inbound.card_data import contains_card_number, find_card_numbers, luhn
from shared.telemetry.scrub import scrub
from shared.telemetry.setup import logger_provider, scrub_providers, tracer_provider

CARD = "4111 1111 1111 1111"
LINK = "https://billing.example/api/billing/acc-1?expires=1767225600&v=3&sig=c2lnbmF0dXJl"
SECRET = "DefaultEndpointsProtocol=https;AccountName=st;AccountKey=S3cr3tKeyBase64==;"
FUNCTION = {"faas.trigger": "pubsub"}


def _luhn_id(prefix: str, digits: str) -> str:
    """`prefix` + `digits` + a check digit such that every digit of the id passes Luhn together."""
    head = "".join(ch for ch in prefix if ch.isdigit()) + digits
    return f"{prefix}{digits}{next(d for d in string.digits if luhn(head + d))}"


PAYMENT_ID = _luhn_id("pay-20261201-", "0000042")  # a billing engine's id: 16 digits passing Luhn
EVENT_ID = _luhn_id("", "411111111111111")


def _texts(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _texts(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _texts(value)


def _span_texts(span: ReadableSpan) -> list[str]:
    events = [(e.name, dict(e.attributes or {})) for e in span.events]
    return list(_texts([span.name, dict(span.attributes or {}), events, span.status.description or ""]))


def _assert_clean(texts: list[str]) -> None:
    for text in texts:
        assert not find_card_numbers(text), text
        assert "S3cr3tKeyBase64" not in text and "c2lnbmF0dXJl" not in text, text
        assert not re.search(r"/api/billing/[^?\s]*\?(?!<redacted>)", text), text


@pytest.fixture(scope="module")
def traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = tracer_provider({})
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.fixture
def spans(traced: tuple[TracerProvider, InMemorySpanExporter]) -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    traced[1].clear()
    yield traced


def _one_span(traced: tuple[TracerProvider, InMemorySpanExporter], attributes: dict[str, Any]) -> ReadableSpan:
    provider, exporter = traced
    exporter.clear()
    with provider.get_tracer("test").start_as_current_span("work", attributes={**FUNCTION, **attributes}):
        pass
    (span,) = exporter.get_finished_spans()
    return span


def test_span_name_attributes_events_exceptions_and_status_are_masked(
        spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(f"GET {LINK}", kind=SpanKind.SERVER, attributes=FUNCTION) as span:
        span.set_attribute("note", f"customer typed {CARD} in the name field")
        span.set_attribute("url.full", LINK)
        span.set_attribute("db.connection_string", SECRET)
        span.set_attribute("tokens", ["sk_live_abcdefghijkl", f"card={CARD}"])
        span.add_event("retry", {"reason": f"gateway said 4111111111111111 {LINK}"})
        span.record_exception(ValueError(f"bad card {CARD}"))
        span.set_status(Status(StatusCode.ERROR, f"declined card {CARD}"))
    (out,) = exporter.get_finished_spans()
    texts = _span_texts(out)
    _assert_clean(texts)
    attrs = dict(out.attributes or {})
    assert attrs["note"] == "customer typed **** **** **** 1111 in the name field"  # the last four stay
    assert attrs["url.full"] == "https://billing.example/api/billing/acc-1?<redacted>"
    assert attrs["db.connection_string"] == "DefaultEndpointsProtocol=https;AccountName=st;AccountKey=<redacted>;"
    assert attrs["tokens"] == ("sk_live_<redacted>", "card=**** **** **** 1111")
    assert out.name == "GET https://billing.example/api/billing/acc-1?<redacted>"
    exception = next(e for e in out.events if e.name == "exception")
    assert "**** **** **** 1111" in str(dict(exception.attributes or {})["exception.message"])
    assert out.status.description == "declined card **** **** **** 1111"
    assert [e.name for e in out.events] == ["retry", "exception"]  # masked, none lost


def test_the_products_identifiers_stay_whole_whatever_their_digits(
        spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    assert contains_card_number(PAYMENT_ID) and contains_card_number(EVENT_ID)  # what the detector would mask
    span = _one_span(spans, {"billing.account_id": PAYMENT_ID, "cloudevents.event_id": EVENT_ID,
                             "billing.subscription_id": "sub-4111111111111111"})
    attrs = dict(span.attributes or {})
    assert attrs["billing.account_id"] == PAYMENT_ID
    assert attrs["cloudevents.event_id"] == EVENT_ID
    assert attrs["billing.subscription_id"] == "sub-4111111111111111"


def test_only_an_identifier_is_kept_whole(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """Free text under an identifier's name (spaces are no part of an id), or an id under another
    name, is masked."""
    span = _one_span(spans, {"billing.account_id": f"acc {CARD}", "detail": f"applied {PAYMENT_ID}"})
    _assert_clean(_span_texts(span))


cards = st.from_regex(r"[3-6][0-9]{14}", fullmatch=True).map(
    lambda body: body + next(d for d in string.digits if luhn(body + d)))
separators = st.sampled_from(["", " ", "-", "  ", "."])
words = st.text(alphabet="xyz QRST:/,;!", max_size=24)


@st.composite
def written_cards(draw: st.DrawFn) -> tuple[str, str]:
    """A card number as a person or a system writes it, amid other text; and its digits."""
    digits, sep = draw(cards), draw(separators)
    written = sep.join(digits[i:i + 4] for i in range(0, 16, 4))
    return f"{draw(words)} {written} {draw(words)}", digits


@settings(max_examples=80, deadline=None)
@given(card=written_cards(), where=st.sampled_from(["name", "attribute", "list", "event", "status", "exception"]))
def test_a_card_number_anywhere_in_a_span_is_masked(
        traced: tuple[TracerProvider, InMemorySpanExporter], card: tuple[str, str], where: str) -> None:
    text, digits = card
    provider, exporter = traced
    exporter.clear()
    with provider.get_tracer("test").start_as_current_span(text if where == "name" else "work",
                                                           attributes=FUNCTION) as span:
        if where in ("attribute", "list"):
            span.set_attribute("detail", text if where == "attribute" else ["ok", text])
        elif where == "event":
            span.add_event("note", {"detail": text})
        elif where == "status":
            span.set_status(Status(StatusCode.ERROR, text))
        elif where == "exception":
            span.record_exception(RuntimeError(text))
    (out,) = exporter.get_finished_spans()
    texts = _span_texts(out)
    _assert_clean(texts)
    assert not any(digits in re.sub(r"\D", "", t) for t in texts)
    assert any(digits[-4:] in t for t in texts)  # masked to its last four, not dropped


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(words, st.sampled_from([LINK, SECRET, CARD, "sk_test_abc123", "Bearer abcdefgh", "sig=",
                                                  "/api/billing/x?", "<redacted>", "?"])), max_size=6))
def test_masking_twice_is_masking_once(pieces: list[str]) -> None:
    """A log line is masked where it is made and again by the log processor: one `<redacted>` each."""
    once = scrub(" ".join(pieces))
    assert scrub(once) == once


# -- logs -------------------------------------------------------------------------------------------


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, InMemoryLogRecordExporter]]:
    """A logger whose records go through the product's logger provider to memory, as the root
    logger's go to OTLP (`configure()`)."""
    provider = logger_provider()
    exporter = InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    yield from _logger(provider, exporter)


def _logger(provider: LoggerProvider, exporter: InMemoryLogRecordExporter) -> Iterator[tuple[logging.Logger,
                                                                                         InMemoryLogRecordExporter]]:
    logger = logging.getLogger(f"tests.telemetry.masking.{id(provider)}")
    logger.propagate, logger.level = False, logging.INFO
    handler = LoggingHandler(level=logging.NOTSET, logger_provider=provider)
    logger.addHandler(handler)
    try:
        yield logger, exporter
    finally:
        logger.removeHandler(handler)
        provider.shutdown()


def _records(exporter: InMemoryLogRecordExporter) -> list[tuple[str, dict[str, Any]]]:
    return [(str(r.log_record.body), dict(r.log_record.attributes or {})) for r in exporter.get_finished_logs()]


def _log_everything(logger: logging.Logger) -> None:
    logger.warning("charge for card %s failed", CARD)  # a log argument
    logger.info(f"billing page visited: {LINK}")  # the message itself
    logger.info("connecting with %s", SECRET)
    logger.info("event applied", extra={"account_id": PAYMENT_ID, "event_id": EVENT_ID, "note": f"card {CARD}"})
    try:
        raise ValueError(f"gateway refused 4111-1111-1111-1111 for {LINK}")
    except ValueError:
        logger.exception("settlement failed")


def test_log_messages_arguments_attributes_and_exceptions_are_masked(
        logged: tuple[logging.Logger, InMemoryLogRecordExporter]) -> None:
    logger, exporter = logged
    _log_everything(logger)
    records = _records(exporter)
    assert len(records) == 5
    _assert_clean(list(_texts([[body, {k: v for k, v in attrs.items() if k not in ("account_id", "event_id")}]
                               for body, attrs in records])))
    bodies = [body for body, _ in records]
    assert bodies[0] == "charge for card **** **** **** 1111 failed"
    assert bodies[1] == "billing page visited: https://billing.example/api/billing/acc-1?<redacted>"
    applied = records[3][1]
    assert applied["account_id"] == PAYMENT_ID and applied["event_id"] == EVENT_ID  # ids stay whole
    assert applied["note"] == "card **** **** **** 1111"
    failure = records[4][1]
    assert "****-****-****-1111" in str(failure["exception.message"])
    assert "ValueError" in str(failure["exception.stacktrace"])


def test_the_workers_own_providers_are_masked_before_their_exporters_see_anything() -> None:
    """Deployed, the Python worker configures Azure Monitor itself, exporter first; the product
    adds its masking to those providers (`scrub_providers`), and it still comes first."""
    spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
    worker_traces, worker_logs = TracerProvider(), LoggerProvider()
    worker_traces.add_span_processor(SimpleSpanProcessor(spans))
    worker_logs.add_log_record_processor(SimpleLogRecordProcessor(logs))
    scrub_providers(worker_traces, worker_logs)
    with worker_traces.get_tracer("test").start_as_current_span("work", attributes={"url.full": LINK}) as span:
        span.record_exception(ValueError(f"card {CARD}"))
    for logger, _ in _logger(worker_logs, logs):
        _log_everything(logger)
    (out,) = spans.get_finished_spans()
    _assert_clean(_span_texts(out))
    records = _records(logs)
    assert len(records) == 5
    _assert_clean(list(_texts([[body, {k: v for k, v in attrs.items() if k not in ("account_id", "event_id")}]
                               for body, attrs in records])))
