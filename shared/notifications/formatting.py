"""Money, dates and user-supplied text as a customer reads them, per locale (Babel's CLDR data)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import localcontext
from typing import get_args

from babel.dates import format_date as babel_format_date
from babel.lists import format_list
from babel.numbers import format_currency

from shared.domain.model import Locale
from shared.domain.money import Money

LOCALES: tuple[Locale, ...] = get_args(Locale)

# Our locale tags (the API's) and the CLDR locales that format for them.
_CLDR: dict[Locale, str] = {"en": "en_US", "zh-CN": "zh_Hans_CN"}

# Characters that could make a name or address spoof its surroundings: line breaks (a forged
# "Update your card at ..." line in plain text or a header), other C0/C1 controls, and the
# bidirectional overrides and isolates that reorder what a reader sees.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def cldr_locale(locale: Locale) -> str:
    """The Babel/CLDR locale for one of ours; a locale we do not support is refused."""
    try:
        return _CLDR[locale]
    except KeyError:
        raise ValueError(f"unsupported locale {locale!r}; expected one of {LOCALES}") from None


def format_money(m: Money, locale: Locale) -> str:
    """`$12.34`, `¥1,000` (JPY has no decimals), `US$12.34` in zh-CN: as CLDR writes them.
    Exact at any size: Babel quantizes in the current context, so give it room for every digit."""
    amount = m.amount
    with localcontext() as context:
        context.prec = max(context.prec, len(amount.as_tuple().digits) + 8)
        return format_currency(amount, m.currency, locale=cldr_locale(locale))


def format_money_list(amounts: Iterable[Money], locale: Locale) -> str:
    """Several currencies in one phrase: `$12.34 and ¥1,000`, `US$12.34和JP¥1,000`."""
    return format_list([format_money(m, locale) for m in amounts], locale=cldr_locale(locale))


def format_date(d: datetime, locale: Locale) -> str:
    """The UTC calendar day of `d`: `December 31, 2026`, `2026年12月31日`. Naive means UTC."""
    utc = d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)
    return babel_format_date(utc.date(), format="long", locale=cldr_locale(locale))


def format_names(names: Iterable[str], locale: Locale) -> str:
    """`A, B, and C` / `A、B和C`, each name made safe for a single line first."""
    return format_list([single_line(n) for n in names], locale=cldr_locale(locale))


def single_line(value: str) -> str:
    """User-supplied text with every control, line break and bidi override replaced by a space.

    Names, addresses and ids come from customers; in plain text and subjects they must not be able
    to start a line of their own or reorder the text around them. Everything else is kept verbatim
    (HTML escaping is the template engine's job, not this function's).
    """
    if value.isprintable() and not (_BIDI_CONTROLS & set(value)):
        return value
    return "".join(
        " " if c in _BIDI_CONTROLS or unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in value
    )
