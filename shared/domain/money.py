"""Money as integer minor units plus an ISO 4217 code: never a float.

The number of decimals is the currency's own (JPY none, USD two, KWD three), so a decimal
string that does not fit its currency is refused rather than rounded: rounding money silently is
how ledgers drift.

The largest amount accepted from outside (an event, a gateway answer) is `MAX_MINOR`: 18 digits
of minor units (999,999,999,999,999,999 VND; 9,999,999,999,999,999.99 USD). It is checked on the
text, before any conversion, so `Decimal`'s 28-digit context never rounds an amount; it fits a
table's `Edm.Int64` with room for sums of many, and sums are exact Python ints (unbounded) in the
state document.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from babel.numbers import get_currency_precision, list_currencies

# Babel's CLDR data knows every active ISO 4217 code and its minor-unit precision.
# Fund, metal and testing codes (XAU, XTS, XXX...) are not money a customer is billed in;
# the CFA and CFP francs and the East Caribbean dollar are.
_BILLABLE_X = frozenset({"XAF", "XOF", "XPF", "XCD"})
_KNOWN_CURRENCIES: frozenset[str] = frozenset(
    c for c in list_currencies() if not c.startswith("X") or c in _BILLABLE_X
)


MAX_DIGITS = 18
MAX_MINOR = 10**MAX_DIGITS - 1
# ASCII digits only (`[0-9]`, never `\\d`, `int()` or `Decimal()` on raw text: they take every
# script's digits), an optional minus for the caller to refuse, no exponent, sign `+` or `_`.
_DECIMAL = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
_LONGEST_TEXT = 64  # longer than any amount within MAX_MINOR with its zeros: refused unread


class MoneyError(ValueError):
    """An amount or currency that cannot be money as the contract defines it."""


def is_currency(code: str) -> bool:
    return code in _KNOWN_CURRENCIES and code.isupper() and len(code) == 3


def decimals(currency: str) -> int:
    if not is_currency(currency):
        raise MoneyError(f"unknown ISO 4217 currency code {currency!r}")
    return int(get_currency_precision(currency))


@dataclass(frozen=True, order=True)
class Money:
    """An amount in the currency's minor units (cents, yen); may be negative only in arithmetic."""

    minor: int
    currency: str

    @classmethod
    def parse(cls, amount: str, currency: str) -> Money:
        """Read the contract's decimal string (`"12.34"`) exactly: ASCII digits, at most the
        currency's decimals, at most `MAX_MINOR` minor units; `MoneyError` otherwise.
        A leading minus is read (the caller decides whether a negative amount makes sense)."""
        if not isinstance(amount, str):
            raise MoneyError("amount must be a decimal string such as \"12.34\"")
        places = decimals(currency)
        if len(amount) > _LONGEST_TEXT:
            raise MoneyError(f"amount of {len(amount)} characters is longer than any accepted; the largest is "
                             f"{largest(currency)} {currency} ({MAX_DIGITS} digits of minor units)")
        match = _DECIMAL.fullmatch(amount)
        if match is None:
            raise MoneyError(f"amount {amount!r} is not a plain decimal string of ASCII digits such as \"12.34\"")
        sign, whole, fraction = match.group(1), match.group(2), match.group(3) or ""
        if len(fraction) > places:
            raise MoneyError(f"{currency} allows {places} decimal places; {amount!r} has {len(fraction)}")
        digits = (whole + fraction.ljust(places, "0")).lstrip("0")
        if len(digits) > MAX_DIGITS:
            raise MoneyError(f"amount {amount!r} is larger than the largest accepted, {largest(currency)} {currency} "
                             f"({MAX_DIGITS} digits of minor units)")
        minor = int(digits or "0")  # ASCII digits only, at most MAX_DIGITS of them: exact
        return cls(-minor if sign else minor, currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @property
    def amount(self) -> Decimal:
        """The exact decimal value, for formatting: built from its digits, so no context rounds it."""
        places = decimals(self.currency)
        return Decimal((int(self.minor < 0), tuple(int(d) for d in str(abs(self.minor))), -places))

    def to_str(self) -> str:
        """The contract's decimal string, with exactly the currency's number of decimals, of any size."""
        return _decimal_text(self.minor, decimals(self.currency))

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise MoneyError(f"cannot combine {self.currency} with {other.currency}")

    def __str__(self) -> str:
        return f"{self.to_str()} {self.currency}"


def _decimal_text(minor: int, places: int) -> str:
    digits = str(abs(minor)).rjust(places + 1, "0")
    text = f"{digits[:-places]}.{digits[-places:]}" if places else digits
    return f"-{text}" if minor < 0 else text


def largest(currency: str) -> str:
    """The largest amount accepted in `currency`, as the contract writes it."""
    return _decimal_text(MAX_MINOR, decimals(currency))


def totals(amounts: Iterable[Money]) -> dict[str, Money]:
    """One sum per currency, in currency order: money of different currencies never adds up."""
    sums: dict[str, Money] = {}
    for m in amounts:
        sums[m.currency] = sums.get(m.currency, Money.zero(m.currency)) + m
    return dict(sorted(sums.items()))
