"""The one JSON reader: ordinary JSON read as json.loads reads it; ambiguous or pathological JSON
refused at once with the real reason (never a RecursionError or ValueError escaping)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.inbound.json_reader import MAX_DEPTH, JsonRefused, read_json

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


@given(JSON_VALUES)
def test_unambiguous_json_reads_as_json_loads_reads_it(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert read_json(text) == json.loads(text)
    assert read_json(text.encode()) == json.loads(text)


@pytest.mark.parametrize(("text", "field"), [
    ('{"amount": "1.00", "amount": "900.00"}', "amount"),
    ('{"data": {"accountId": "a", "accountId": "b"}}', "data.accountId"),
    ('{"items": [{}, {"k": 1, "k": 1}]}', "items.1.k"),
    ('[{"x": {"y": 1, "y": 2}}]', "0.x.y"),
])
def test_duplicate_keys_are_refused_naming_the_key(text: str, field: str) -> None:
    with pytest.raises(JsonRefused, match="more than once") as caught:
        read_json(text)
    assert caught.value.field == field


@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_deep_nesting_is_refused_with_its_depth(opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    assert read_json(opening * MAX_DEPTH + "1" + closing * MAX_DEPTH) is not None
    with pytest.raises(JsonRefused, match="nested 5000 levels"):
        read_json(opening * 5000 + "1" + closing * 5000)


def test_brackets_inside_strings_are_not_nesting() -> None:
    text = json.dumps({"note": "[" * 500 + '\\"{' * 100})
    assert read_json(text) == json.loads(text)


@pytest.mark.parametrize("number", ["9" * 5000, "-" + "9" * 5000, "1." + "0" * 5000, "1e" + "9" * 5000])
def test_huge_numbers_are_refused(number: str) -> None:
    with pytest.raises(JsonRefused, match="number of"):
        read_json('{"n": ' + number + "}")


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}'])
def test_non_json_constants_are_refused(text: str) -> None:
    with pytest.raises(JsonRefused, match="not valid JSON"):
        read_json(text)


def test_fractions_refused_where_money_travels_as_strings() -> None:
    assert read_json('{"a": 1.5}') == {"a": 1.5}
    with pytest.raises(JsonRefused, match="decimal string"):
        read_json('{"a": 1.5}', fractions=False)


@pytest.mark.parametrize("raw", [b"\xff\xfe{}", b'{"a": "\xc3"}'])
def test_not_utf8_is_refused(raw: bytes) -> None:
    with pytest.raises(JsonRefused, match="UTF-8"):
        read_json(raw)


@pytest.mark.parametrize("text", ["", "{", '{"a": １}', "[1,]", "{'a': 1}"])
def test_not_json_is_refused(text: str) -> None:
    with pytest.raises(JsonRefused, match="not JSON"):
        read_json(text)
