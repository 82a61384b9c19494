"""Whole numbers from outside text (settings, query strings, other systems' answers): ASCII
digits only. Python's `int()`, `str.isdigit` and `re`'s `\\d` take the digits of every script
(`int("３０") == 30`), so outside text never reaches `int()` before passing `parse_whole`."""

from __future__ import annotations

import re

_WHOLE = re.compile(r"[0-9]+")


def parse_whole(text: str, *, max_digits: int = 18) -> int:
    """`text` as a non-negative integer: 1 to `max_digits` ASCII digits, nothing else (no sign,
    blank, `_` or exponent); `ValueError` otherwise."""
    if not isinstance(text, str) or len(text) > max_digits or _WHOLE.fullmatch(text) is None:
        raise ValueError(f"must be a whole number of at most {max_digits} ASCII digits, got {text[:40]!r}")
    return int(text)
