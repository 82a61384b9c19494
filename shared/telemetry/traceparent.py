"""W3C Trace Context (`traceparent`, `tracestate`) as the CloudEvents distributed-tracing extension
carries it: strict parsing, so a malformed value is ignored (never a reason to dead-letter).

A `tracestate` is checked where trace context enters (a queue message's extension, a hand-off, an
HTTP header, a stored outbox row; issue 22, contract §6): a list-member whose key or value holds
what no telemetry may carry (a card number, a secret, a billing link: `shared.telemetry.scrub`) is
dropped, not masked, since a masked value would be a corrupt one to its vendor (W3C Trace Context
lets a receiver drop members it cannot accept); a header that is malformed as a whole (a bad
member, a repeated key, over 32 members or 512 characters) is dropped whole. The `traceparent`
continues either way."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.telemetry.scrub import scrub

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.ASCII)
_TRACESTATE_MEMBER = re.compile(
    r"(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]", re.ASCII)
MAX_TRACESTATE_MEMBERS = 32
MAX_LENGTH = 512


@dataclass(frozen=True)
class TraceParent:
    trace_id: int
    span_id: int
    flags: int

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)

    def __str__(self) -> str:
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{self.flags:02x}"


def parse_traceparent(value: object) -> TraceParent | None:
    """The parent a W3C `traceparent` names, or None for anything malformed: not a string, the
    wrong shape, upper-case hex, version `ff`, an all-zero trace or span id, or a version 00 value
    with more after it. A later version's extra fields are ignored, as the spec asks."""
    if not isinstance(value, str) or len(value) > MAX_LENGTH:
        return None
    match = _TRACEPARENT.fullmatch(value.strip(" \t"))
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or (rest is not None and not rest.startswith("-")):
        return None
    parsed = TraceParent(int(trace_id, 16), int(span_id, 16), int(flags, 16))
    if parsed.trace_id == 0 or parsed.span_id == 0:
        return None
    return parsed


def parse_tracestate(value: object) -> list[tuple[str, str]]:
    """The `tracestate` list members in order, but those holding a card number or a secret
    (`unacceptable_member`); [] when the header is malformed as a whole (a bad member, a repeated
    key, more than 32 members, more than 512 characters): the spec has the whole value discarded."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_LENGTH:
        return []
    members: list[tuple[str, str]] = []
    for part in value.split(","):
        part = part.strip(" \t")
        if not part:
            continue
        if _TRACESTATE_MEMBER.fullmatch(part) is None:
            return []
        key, _, val = part.partition("=")
        if any(k == key for k, _ in members):
            return []
        members.append((key, val))
    if len(members) > MAX_TRACESTATE_MEMBERS:
        return []
    return [(key, val) for key, val in members if not unacceptable_member(key, val)]


def unacceptable_member(key: str, value: str) -> bool:
    """Whether a list-member (key or value) holds what no telemetry may carry: a card number, a
    secret (`sk_live_...`, `sig=...`, `code=...`, a bearer token) or a billing link. The member is
    judged as written (`key=value`), as it would stand in an exported span's trace state."""
    member = f"{key}={value}"
    return scrub(member) != member


def clean_tracestate(value: object) -> str:
    """A `tracestate` as it may be carried on (`parse_tracestate`, written back); "" for none."""
    return ",".join(f"{key}={val}" for key, val in parse_tracestate(value))
