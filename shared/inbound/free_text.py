"""Free text that reaches people (names in emails and on the billing page, addresses): printable
characters only.

Refused: Unicode categories Cc (control: tabs, newlines, escapes), Cf (format: the bidirectional
overrides such as U+202E that make a subject read backwards, zero-width spaces), Co (private use),
Cs (lone surrogates), Zl and Zp (line and paragraph separators, which break a subject line).
Allowed from Cf: ZWNJ and ZWJ (U+200C, U+200D), which Persian, Indic scripts and emoji sequences
need to be written correctly.
"""

from __future__ import annotations

import unicodedata

REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Zl", "Zp"})
ALLOWED_FORMAT = frozenset({"\u200c", "\u200d"})


def first_refused_character(text: str) -> str | None:
    """The first character of `text` that free text may not hold, or None."""
    for ch in text:
        if ch not in ALLOWED_FORMAT and unicodedata.category(ch) in REFUSED_CATEGORIES:
            return ch
    return None


def printable(text: str) -> str:
    """`text` itself; ValueError naming the code point (never echoing it) if it holds a control,
    format, private-use or surrogate character."""
    ch = first_refused_character(text)
    if ch is not None:
        raise ValueError(f"must not contain control or invisible formatting characters "
                         f"(found U+{ord(ch):04X}, {unicodedata.category(ch)})")
    return text
