"""Text is split for Table Storage by UTF-16 units, the way the service measures a string."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.adapters.store.codec import CHUNK, split_utf16


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@given(st.text(alphabet=st.sampled_from(["a", "é", "中", "😀", "𝄞", "\x00", "\U0010ffff"]), max_size=400),
       st.integers(min_value=2, max_value=50))
def test_pieces_join_to_the_text_and_each_fits(text: str, units: int) -> None:
    pieces = split_utf16(text, units)
    assert "".join(pieces) == text
    assert all(0 < _units(p) <= units for p in pieces) or pieces == [""]


def test_characters_outside_the_bmp_count_twice() -> None:
    text = "😀" * CHUNK  # 30,000 characters, 60,000 UTF-16 units: too many for one property
    pieces = split_utf16(text)
    assert len(pieces) == 2 and all(_units(p) == CHUNK for p in pieces)


def test_a_surrogate_pair_is_never_cut() -> None:
    assert split_utf16("a😀", 2) == ["a", "😀"]
