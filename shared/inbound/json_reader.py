"""The one JSON reader for outside text: queue messages and HTTP bodies alike.

`json.loads` alone is too trusting for input a person must be able to read one way only:
- duplicate keys (`"amount": "1.00", "amount": "900.00"`) keep the last value silently: refused
  as ambiguous, naming the key's path;
- deep nesting raises `RecursionError` and a number of more than 4,300 digits `ValueError`,
  neither a `JSONDecodeError`: both refused here before or while reading, with the real reason;
- `NaN`, `Infinity` are not JSON: refused.
Every refusal is a `JsonRefused` with a reason for a person and the field it concerns (a dotted
path, or None for the text as a whole).
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64
MAX_NUMBER_CHARS = 40  # any number the product reads fits in far fewer; 5,000 digits is an attack


class JsonRefused(ValueError):
    """Text that is not one unambiguous JSON value of reasonable shape."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class _Ambiguous(dict[str, Any]):
    """An object that carried a key twice; found with its path after the parse."""

    def __init__(self, pairs: list[tuple[str, Any]], repeated: str) -> None:
        super().__init__(pairs)
        self.repeated = repeated


def read_json(raw: bytes | str, *, fractions: bool = True) -> Any:
    """Parse `raw` (UTF-8 bytes or text) into plain JSON values; `JsonRefused` with the reason.

    `fractions=False` refuses every number with a fraction or exponent (money travels as decimal
    strings, so a float there is a producer bug, not something to guess the decimals of)."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonRefused("not UTF-8 text") from exc
    else:
        text = raw
    _refuse_deep(text)
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_int=_integer,
                           parse_float=_fraction if fractions else _no_fraction, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise JsonRefused(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:  # pragma: no cover - _refuse_deep stops this first
        raise JsonRefused(f"JSON nested deeper than {MAX_DEPTH} levels") from exc
    _refuse_ambiguous(value, "")
    return value


def _refuse_deep(text: str) -> None:
    """Measure the nesting without recursing, before the parse recurses. Free for ordinary
    messages (too few brackets to matter); one linear pass otherwise."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    if deepest > MAX_DEPTH:
        raise JsonRefused(f"JSON nested {deepest} levels deep; at most {MAX_DEPTH} are accepted")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return _Ambiguous(pairs, key)
        seen.add(key)
    return dict(pairs)


def _refuse_ambiguous(value: Any, path: str) -> None:
    if isinstance(value, _Ambiguous):
        field = f"{path}.{value.repeated}" if path else value.repeated
        raise JsonRefused(f"{field}: the key {value.repeated!r} appears more than once; which value is meant "
                          "is ambiguous", field)
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        _refuse_ambiguous(child, f"{path}.{key}" if path else str(key))


def _long(text: str) -> JsonRefused:
    return JsonRefused(f"a JSON number of {len(text)} characters ({text[:20]}...); at most {MAX_NUMBER_CHARS} "
                       "are accepted")


def _integer(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _long(text)
    return int(text)  # the JSON grammar already admits only ASCII digits here


def _fraction(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _long(text)
    return float(text)


def _no_fraction(text: str) -> Any:
    raise JsonRefused(f"numbers with a fraction ({text[:MAX_NUMBER_CHARS]}) are not accepted: money is a decimal "
                      "string")


def _no_constant(text: str) -> Any:
    raise JsonRefused(f"{text} is not valid JSON")
