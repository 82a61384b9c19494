"""W3C `traceparent` / `tracestate` parsing (contract §1, §6): a malformed value is ignored."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from shared.telemetry import message_fields, parse_traceparent, parse_tracestate, scrub, span_context_of
from shared.telemetry.tracing import fields_of

VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_a_valid_traceparent_round_trips() -> None:
    parsed = parse_traceparent(VALID)
    assert parsed is not None and str(parsed) == VALID and parsed.sampled
    context = span_context_of(VALID, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    assert context is not None and fields_of(context) == {
        "traceparent": VALID, "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}


def test_a_later_version_may_carry_more() -> None:
    assert parse_traceparent("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future") is not None


def test_malformed_traceparents_are_ignored() -> None:
    for bad in ("", "00", VALID.upper(), VALID + "-", VALID + "-00", "ff" + VALID[2:],
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
                "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
                "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01", None, 42, ["x"], {"a": 1},
                "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01", "\u0660" * 55):
        assert parse_traceparent(bad) is None, bad
        assert span_context_of(bad) is None


@given(st.one_of(st.text(max_size=80), st.binary(max_size=80), st.integers(), st.none(),
                 st.lists(st.text(max_size=5), max_size=3)))
def test_anything_parses_or_is_ignored_never_raises(value: object) -> None:
    parsed = parse_traceparent(value)
    if parsed is not None:
        assert isinstance(value, str) and parsed.trace_id and parsed.span_id


@given(st.from_regex(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", fullmatch=True))
def test_well_formed_ones_round_trip_unless_forbidden(value: str) -> None:
    parsed = parse_traceparent(value)
    forbidden = value.startswith("ff") or value[3:35] == "0" * 32 or value[36:52] == "0" * 16
    assert (parsed is None) == forbidden
    if parsed is not None and value.startswith("00"):
        assert str(parsed) == value


@given(st.text(max_size=120))
def test_tracestate_is_a_list_or_discarded(value: str) -> None:
    members = parse_tracestate(value)
    assert len(members) <= 32 and len({k for k, _ in members}) == len(members)
    assert all(scrub(f"{k}={v}") == f"{k}={v}" for k, v in members)  # nothing to mask is ever kept (issue 22)


def test_a_message_carries_its_trace_at_the_top_level_only() -> None:
    body = json.dumps({"id": "e1", "traceparent": VALID, "data": {"traceparent": "nested"}})
    assert message_fields(body.encode()) == (VALID, None)
    assert message_fields(b'{"data": {"x": 1}}') == (None, None)
    assert message_fields(b'{"traceparent": ') == (None, None)  # not JSON: ignored, never raised
    assert message_fields(b'["traceparent"]') == (None, None)


def test_scrub_masks_cards_secrets_and_billing_links() -> None:
    link = "https://x.example/api/billing/acc-1?expires=1&v=2&sig=abcdef"
    assert scrub(link) == "https://x.example/api/billing/acc-1?<redacted>"
    assert "4111" not in scrub("card 4111 1111 1111 1111 here").replace("1111 here", "")
    assert scrub("DefaultEndpointsProtocol=http;AccountKey=Eby8vdM02xNO==;") == (
        "DefaultEndpointsProtocol=http;AccountKey=<redacted>;")
    assert scrub("Authorization: Bearer sk_test_abcdef123456") == "Authorization: Bearer <redacted>"
    assert scrub("key sk_live_abc123") == "key sk_live_<redacted>"
    assert scrub("decline_code=card_declined") == "decline_code=card_declined"
    same = "nothing to hide"
    assert scrub(same) is same
