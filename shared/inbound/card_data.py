"""Card data: the one detector of card numbers and security-code fields, and their redaction.

Used by every way text comes in: HTTP bodies and the billing page refuse card data
(`shared/inbound/account_body.refuse_card_data`); a queue message carrying some is refused and kept only
redacted (`redact_message`, in the dead-letter list); log records are masked (`mask_card_numbers`,
from `shared/log_context`). Nothing of a card number but its last four digits is ever stored or
logged; a security code not even that.

A card number (PAN) is a run of 13 to 19 digits passing the Luhn check, written with or without
separators between groups of digits: up to three spaces, tabs, no-break or other Unicode spaces,
dashes, dots, slashes, underscores or invisible format characters, or up to eight spaces alone
(`4111    1111 …`, as a form or a PDF pads them). Digits of any script count
(a full-width `４１１１…` is still a card number), and so does a number written flush against a
word (`card4111…`, `evt4111…`, `x4111…@example.com`). Not one: a run glued to more digits (a
20-digit id is no 16-digit card number), the digits of a word made only of hexadecimal digits
with a letter among them (`0f3a…`, a hash or a random id), which match by chance, the ids of a
W3C `traceparent` (`00-<32 hex>-<16 hex>-01`), whose span id may be all digits, or a canonical
UUID (`8-4-4-4-12` hex digits, any case, also in braces or as `urn:uuid:…`), such as an ACS
operation id, whose first three groups may be 16 digits passing Luhn (about one in a million). In JSON, a card
number is also looked for in numbers (`4111111111111111.0`) and behind string escapes
(`"4111\u00201111…"`), even when the rest of the text is not valid JSON.

The detector guards free text, never an identifier: in JSON, the value of an identifier field
(`shared.domain.identifiers.is_identifier_field`: `id`, `accountId`, `chargeId`, ... matching contract
§1's pattern) is neither a finding nor masked, whatever digits it holds. Prose that quotes an id
(a log line) may still be masked; the stored id and the API's answers keep it whole.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from shared.domain.identifiers import is_identifier_field

MIN_DIGITS, MAX_DIGITS = 13, 19
MASK = "*"

_SPACES = r"\s\u180e\u200b-\u200d\u2060-\u2064\ufeff\u00ad"
_DASHES = r"\-\u058a\u05be\u1806\u2010-\u2015\u2212\u2e3a\u2e3b\ufe58\ufe63\uff0d"
_DOTS_SLASHES = r"./\\_\u00b7\u2024\u2027\u2044\u2215\u3002\u30fb\uff0e\uff0f"
_SEPARATOR = f"[{_SPACES}{_DASHES}{_DOTS_SLASHES}\u202a-\u202e\u2066-\u2069]"
# A digit not preceded by a digit, then the rest of its run (atomic: no shorter reading of a
# longer run); whether a letter glued to either end makes it a hex id is `_hex_glued`'s to say.
_RUN = re.compile(rf"\d(?<!\d\d)(?>\d*(?:(?:{_SEPARATOR}{{1,3}}|[{_SPACES}]{{4,8}})\d+)*)(?!\d)")
_GROUP = re.compile(r"\d+")
# A W3C `traceparent` (CloudEvents distributed tracing, and the logs that will quote it): version,
# trace id, parent (span) id and flags in lower-case hex; a span id of digits only is still an id.
TRACEPARENT = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(?![0-9A-Za-z])")
# A canonical UUID (RFC 9562 text form, any case): an identifier, never a card number, even when
# its first groups are all digits (`39684038-0819-5168-ad1c-e96a19fda06b`, an ACS operation id);
# delimited by anything but a hex digit (`mail|…`, `evt-…`, `op_…`).
UUID = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}(?![0-9A-Fa-f])")
_IDENTIFIERS = (TRACEPARENT, UUID)
_HEX_WORD = re.compile(r"[0-9A-Fa-f]*[A-Fa-f][0-9A-Fa-f]*")

# Field names that only ever hold a card number or a security code, compared without case,
# spaces, dashes, dots or underscores (`CVV`, `card_number`, `Card-Number`, `securityCode`).
CARD_FIELD_NAMES = frozenset({
    "cvv", "cvv2", "cvc", "cvc2", "cvn", "cvn2", "csc", "cav2", "cid", "securitycode", "cardsecuritycode",
    "cardverificationcode", "cardverificationvalue", "cardcode", "cardnumber", "cardno", "cardnum", "ccnumber",
    "ccnum", "ccno", "creditcardnumber", "creditcard", "pan", "primaryaccountnumber",
})


@dataclass(frozen=True)
class CardNumber:
    """Where a card number is in a text: `text[start:end]`, its digits (never log these)."""

    start: int
    end: int
    digits: str


def luhn(digits: str) -> bool:
    """The Luhn checksum over decimal digits (any script); most random digit runs fail it."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _word(text: str, at: int) -> str:
    """The letters and digits around position `at` (one word, as an id or a hash is)."""
    start, end = at, at
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    while end < len(text) and text[end].isalnum():
        end += 1
    return text[start:end]


def _hex_glued(text: str, at: int, glued_to: int) -> bool:
    """Whether the digit group at `at` is glued to the letter at `glued_to` inside a hex word."""
    return 0 <= glued_to < len(text) and text[glued_to].isalpha() and _HEX_WORD.fullmatch(_word(text, at)) is not None


def _candidates(run: re.Match[str]) -> Iterator[CardNumber]:
    """Every span of whole digit groups of one run that holds 13-19 digits and passes Luhn; a
    group that is part of a hex word (`_hex_glued`) is not part of any."""
    groups = list(_GROUP.finditer(run.group()))
    text = run.string
    if groups and _hex_glued(text, run.start(), run.start() - 1):
        groups = groups[1:]
    if groups and _hex_glued(text, run.end() - 1, run.end()):
        groups = groups[:-1]
    for i in range(len(groups)):
        digits = ""
        for j in range(i, len(groups)):
            digits += groups[j].group()
            if len(digits) > MAX_DIGITS:
                break
            if len(digits) >= MIN_DIGITS and luhn(digits):
                yield CardNumber(run.start() + groups[i].start(), run.start() + groups[j].end(), digits)


def _too_few_digits(text: str) -> bool:
    """A cheap first look: fewer than 13 digits cannot hold a card number (`isdigit` counts a
    superset of the digits `\\d` matches, so this never hides one)."""
    return len(text) < MIN_DIGITS or sum(map(str.isdigit, text)) < MIN_DIGITS


def _outside_identifiers(text: str) -> tuple[Callable[[CardNumber], bool], Iterator[re.Match[str]]]:
    """Whether a candidate lies outside every `traceparent` and UUID in `text` (one overlapping
    one is made of its digits), and the digit runs not wholly inside one (a log line's invocation
    id is never checked digit by digit)."""
    spans = [m.span() for pattern in _IDENTIFIERS for m in pattern.finditer(text)] if "-" in text else []
    runs = (run for run in _RUN.finditer(text)
            if not any(start <= run.start() and run.end() <= end for start, end in spans))
    return (lambda card: not any(card.start < end and start < card.end for start, end in spans)), runs


def find_card_numbers(text: str) -> list[CardNumber]:
    """The card numbers in `text`, left to right, not overlapping (the longest at each place)."""
    found: list[CardNumber] = []
    if _too_few_digits(text):
        return found
    outside, runs = _outside_identifiers(text)
    for run in runs:
        for card in sorted(filter(outside, _candidates(run)), key=lambda c: (c.start, -c.end)):
            if not found or card.start >= found[-1].end:
                found.append(card)
    return found


def contains_card_number(text: str) -> bool:
    if _too_few_digits(text):
        return False
    outside, runs = _outside_identifiers(text)
    return any(outside(card) for run in runs for card in _candidates(run))


def mask_card_numbers(text: str) -> str:
    """`text` with every digit of each card number but the last four replaced by `*`; the
    separators stay, so `4111 1111 1111 1111` becomes `**** **** **** 1111`."""
    cards = find_card_numbers(text)
    if not cards:
        return text
    out, pos = [], 0
    for card in cards:
        out.append(text[pos:card.start])
        span = text[card.start:card.end]
        keep = len(card.digits) - 4
        masked = []
        for ch in span:
            if ch.isdigit() and keep > 0:
                masked.append(MASK)
                keep -= 1
            else:
                masked.append(ch)
        out.append("".join(masked))
        pos = card.end
    out.append(text[pos:])
    return "".join(out)


_NAME_NOISE = re.compile(r"[\s_.\-]")


@functools.lru_cache(maxsize=1024)
def is_card_field(name: str) -> bool:
    """A field name that only ever holds card data (`cvv`, `CardNumber`, `security_code`, ...)."""
    return len(name) <= 64 and _NAME_NOISE.sub("", name).lower() in CARD_FIELD_NAMES


@dataclass(frozen=True)
class Redaction:
    """A message with its card data taken out: `text` to keep, `findings` saying where
    (field paths like `data.reason`, or `text` for a message that is not JSON)."""

    text: str
    findings: tuple[str, ...]

    @property
    def redacted(self) -> bool:
        return bool(self.findings)

    @property
    def note(self) -> str:
        """One line for a dead letter's reason; names fields, never values."""
        return ("card data found and redacted (card numbers masked to their last four digits, security "
                f"codes removed): {', '.join(self.findings)}")


class JsonPairs(list[tuple[str, Any]]):
    """A JSON object as its key/value pairs, duplicates and order kept."""


_Object = JsonPairs


class _Number(str):
    """A JSON number as it was written (`4111111111111111.0`, `1e3`): masked as text, and
    written back as a number when nothing in it needs masking."""


def _mask_number(literal: str) -> str:
    """A number's mantissa masked (`4111111111111111e0` holds a card number before its `e`)."""
    mantissa, e, exponent = literal.replace("E", "e").partition("e")
    masked = mask_card_numbers(mantissa)
    return literal if masked == mantissa else masked + literal[len(mantissa):len(mantissa) + len(e) + len(exponent)]


def read_json_as_written(text: str) -> Any:
    """`text` read as JSON with objects as `JsonPairs` and numbers as written (so a card number
    written as a number is found); `ValueError` (or `RecursionError`) when it is not JSON."""
    return json.loads(text, object_pairs_hook=_Object, parse_float=_Number, parse_int=_Number)


def card_findings(node: Any) -> tuple[str, ...]:
    """Where card data is in a tree from `read_json_as_written`: field paths (`data.reason`),
    card fields by name included; empty when there is none."""
    findings: list[str] = []
    _walk(node, "", findings)
    return tuple(findings)


def redact_message(text: str) -> Redaction:
    """Mask card numbers and drop card fields from a message, JSON or not.

    A JSON message is walked: card fields (`is_card_field`) are removed with their values, card
    numbers in keys, strings and numbers are masked, and the result is written back as JSON; a
    message that is not JSON has its card numbers masked and the values after `"cvv":`-like keys
    removed; a message that is base64 of such text is redacted inside and stays base64. A message
    without card data comes back exactly as it was."""
    try:
        tree = read_json_as_written(text)
    except (ValueError, RecursionError):
        return _redact_base64(text) or _redact_raw(text)
    findings: list[str] = []
    try:
        clean = _walk(tree, "", findings)
    except RecursionError:
        return _redact_raw(text)
    if not findings:
        return Redaction(text, ())
    return Redaction(_dump(clean), tuple(findings))


def _walk(node: Any, path: str, findings: list[str]) -> Any:
    if isinstance(node, _Object):
        kept = _Object()
        for key, value in node:
            safe_key = mask_card_numbers(key)
            where = f"{path}.{safe_key}" if path else safe_key
            if is_card_field(key):
                findings.append(where)
                continue
            if safe_key != key:
                findings.append(where)
            # An identifier is applied whatever digits it holds (contract §1), so it is kept whole.
            kept.append((safe_key, value if is_identifier_field(key, value) else _walk(value, where, findings)))
        return kept
    if isinstance(node, list):
        return [_walk(v, f"{path}.{i}" if path else str(i), findings) for i, v in enumerate(node)]
    if isinstance(node, str):
        masked = _mask_number(node) if isinstance(node, _Number) else mask_card_numbers(node)
        if masked != node:
            findings.append(path or "message")
            return masked  # a string from now on
    return node


def _dump(node: Any) -> str:
    if isinstance(node, _Object):
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_dump(v)}" for k, v in node) + "}"
    if isinstance(node, list):
        return "[" + ",".join(_dump(v) for v in node) + "]"
    if isinstance(node, _Number):
        return str(node)
    return json.dumps(node, ensure_ascii=False)


_STRING_LITERAL = re.compile(r'"(?:[^"\\\n]|\\.)*"')


def mask_escaped_card_numbers(text: str) -> str:
    """`text` with every JSON string literal that holds a card number only once its escapes are
    read (`"4111\\u00201111\\u00201111\\u00201111"`, digits written as `\\u0034`) written again,
    unescaped, with the number masked. For text that is not valid JSON as a whole (a JSON text is
    read whole by `redact_message`); literals without a backslash are left to `mask_card_numbers`."""
    if "\\" not in text:
        return text

    def unescaped(m: re.Match[str]) -> str:
        if "\\" not in m.group():
            return m.group()
        try:
            value = json.loads(m.group())
        except ValueError:
            return m.group()
        masked = mask_card_numbers(value)
        return m.group() if masked == value else json.dumps(masked, ensure_ascii=False)

    return _STRING_LITERAL.sub(unescaped, text)


_RAW_FIELD = re.compile(r'"(?P<key>[^"\\]{1,64})"(?P<colon>\s*:\s*)(?P<value>"(?:[^"\\]|\\.)*"|[^,}\]\s]*)')


_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})+(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def _redact_base64(text: str) -> Redaction | None:
    """A message base64-encoded by mistake (a producer's SDK default; host.json says `none`):
    redacted inside, and kept base64-encoded again. None when it is not base64 of UTF-8 text
    holding card data."""
    if len(text) < 20 or not _BASE64.fullmatch(text.strip()):
        return None
    try:
        decoded = base64.b64decode(text.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None
    inner = redact_message(decoded)
    if not inner.redacted:
        return None
    encoded = base64.b64encode(inner.text.encode()).decode("ascii")
    return Redaction(encoded, tuple(f"base64:{f}" for f in inner.findings))


def _redact_raw(text: str) -> Redaction:
    findings: list[str] = []

    def drop(m: re.Match[str]) -> str:
        if not is_card_field(m["key"]):
            return m.group()
        findings.append(mask_card_numbers(m["key"]))
        return f'"{m["key"]}"{m["colon"]}"[removed]"'

    without_codes = _RAW_FIELD.sub(drop, text)
    masked = mask_card_numbers(mask_escaped_card_numbers(without_codes))
    if masked != without_codes:
        findings.append("text")
    return Redaction(masked, tuple(findings)) if findings else Redaction(text, ())
