"""The rules of `shared/adapters/store/storable.py` on their own: what text Table Storage can hold, and what a
write makes of text it cannot (issue 24 points 4 and 5)."""

from __future__ import annotations

import pytest
from azure.data.tables import EdmType, EntityProperty, TableEntity
from hypothesis import given
from hypothesis import strategies as st

from shared.adapters.store.storable import UnstorableKey, is_storable, is_storable_key, storable_entity, storable_text

CHARS = st.one_of(st.characters(categories=["Cs"]), st.characters())
TEXT = st.lists(CHARS, max_size=60).map("".join)  # about half the strings hold a surrogate


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


@given(TEXT)
def test_written_text_is_storable_and_keeps_everything_else(text: str) -> None:
    clean = storable_text(text)
    clean.encode("utf-8")  # sendable as it is: no UnicodeEncodeError
    assert is_storable(clean)
    assert storable_text(clean) == clean
    assert utf16_units(clean) == utf16_units(text)  # one U+FFFD per lone surrogate: sizes hold
    if is_storable(text):
        assert clean is text


@pytest.mark.parametrize(("text", "written"), [
    ("550 \ud800 unknown", "550 \ufffd unknown"),
    ("\udc00\ud800", "\ufffd\ufffd"),
    ("\ud83d\ude00", "\U0001f600"),  # a high then a low surrogate: the pair's character
    ("a\x00\x7f\ufffe\uffff/#?", "a\x00\x7f\ufffe\uffff/#?"),  # storable in a value as it is
])
def test_each_lone_surrogate_becomes_the_replacement_character(text: str, written: str) -> None:
    assert storable_text(text) == written


def test_an_entity_has_its_text_made_storable_and_its_keys_refused_if_unstorable() -> None:
    entity = TableEntity({"PartitionKey": "p", "RowKey": "r", "a": "x\ud800", "b": 1,
                          "c": EntityProperty("\udfff", EdmType.STRING)})
    entity._metadata = {"etag": "W/1", "timestamp": None}
    clean = storable_entity(entity)
    assert clean == {"PartitionKey": "p", "RowKey": "r", "a": "x\ufffd", "b": 1,
                     "c": EntityProperty("\ufffd", EdmType.STRING)}
    assert clean.metadata == {"etag": "W/1", "timestamp": None}
    untouched = {"PartitionKey": "p", "RowKey": "r", "a": "fine"}
    assert storable_entity(untouched) is untouched
    for key in ("r\ud800", "a/b", "a#b", "a?b", "a\\b", "a\x00", "a\x85"):
        assert not is_storable_key(key)
        with pytest.raises(UnstorableKey):
            storable_entity({"PartitionKey": "p", "RowKey": key})
