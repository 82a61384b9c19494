"""Money as integer minor units plus an ISO 4217 code: never a float.

The number of decimals is the currency's own (JPY none, USD two, KWD three), so a decimal
string that does not fit its currency is refused rather than rounded: rounding money silently is
how ledgers drift.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from babel.numbers import get_currency_precision, list_currencies

# Babel's CLDR data knows every active ISO 4217 code and its minor-unit precision.
# Fund, metal and testing codes (XAU, XTS, XXX...) are not money a customer is billed in;
# the CFA and CFP francs and the East Caribbean dollar are.
_BILLABLE_X = frozenset({"XAF", "XOF", "XPF", "XCD"})
_KNOWN_CURRENCIES: frozenset[str] = frozenset(
    c for c in list_currencies() if not c.startswith("X") or c in _BILLABLE_X
)


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
        """Read the contract's decimal string (`"12.34"`) exactly, refusing floats and extra decimals."""
        if not isinstance(amount, str):
            raise MoneyError("amount must be a decimal string such as \"12.34\"")
        places = decimals(currency)
        text = amount.strip()
        if text != amount or not text or text[0] in "+" or "e" in text.lower() or "_" in text:
            raise MoneyError(f"amount {amount!r} is not a plain decimal string")
        try:
            value = Decimal(text)
        except InvalidOperation as exc:
            raise MoneyError(f"amount {amount!r} is not a decimal number") from exc
        if not value.is_finite():
            raise MoneyError(f"amount {amount!r} is not a finite number")
        exponent = value.as_tuple().exponent
        assert isinstance(exponent, int)
        if -exponent > places:
            raise MoneyError(f"{currency} allows {places} decimal places; {amount!r} has {-exponent}")
        return cls(int(value.scaleb(places)), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @property
    def amount(self) -> Decimal:
        """The exact decimal value, for formatting and the API."""
        return Decimal(self.minor).scaleb(-decimals(self.currency))

    def to_str(self) -> str:
        """The contract's decimal string, with exactly the currency's number of decimals."""
        places = decimals(self.currency)
        return f"{self.amount:.{places}f}"

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


def totals(amounts: Iterable[Money]) -> dict[str, Money]:
    """One sum per currency, in currency order: money of different currencies never adds up."""
    sums: dict[str, Money] = {}
    for m in amounts:
        sums[m.currency] = sums.get(m.currency, Money.zero(m.currency)) + m
    return dict(sorted(sums.items()))
