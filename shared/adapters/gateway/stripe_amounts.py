"""Stripe's currency rules (https://docs.stripe.com/currencies), between the product's money and
Stripe's integer amounts.

The product counts a currency's minor units as ISO 4217 (CLDR) does (`shared.domain.money`);
Stripe counts its own way:
- zero-decimal currencies (JPY, KRW, VND, ...): whole units;
- three-decimal currencies (BHD, JOD, KWD, OMR, TND): thousandths whose last digit must be 0;
- ISK: zero-decimal, but still sent with two decimals, so a multiple of 100;
- every other currency: two decimals.

An amount Stripe cannot express exactly (5.124 KWD) is rounded **up** to the next amount it can
(5.130 KWD): what the gateway takes is what the settlement records, and the few thousandths over
become the customer's credit, where a rounded-down amount would leave a debt too small to charge
ever again. The minimum per charge is Stripe's published table, the maximum eight digits of
Stripe's unit (more for IDR, INR, COP); `max_charge` is the largest product amount that stays
within it once rounded, which the settlement splits larger balances under.
"""

from __future__ import annotations

from fractions import Fraction

from shared.domain.money import Money, MoneyError, decimals

ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
HUNDREDS = frozenset({"ISK"})

MINIMUM_CHARGE: dict[str, int] = {
    "USD": 50, "AED": 200, "AUD": 50, "BGN": 100, "BRL": 50, "CAD": 50, "CHF": 50, "CZK": 1500,
    "DKK": 250, "EUR": 50, "GBP": 30, "HKD": 400, "HUF": 17500, "INR": 50, "JPY": 50, "MXN": 1000,
    "MYR": 200, "NOK": 300, "NZD": 50, "PLN": 200, "RON": 200, "SEK": 300, "SGD": 50, "THB": 1000,
}  # fmt: skip
"""Stripe's minimum charge amounts, in Stripe's unit. Elsewhere Stripe converts to the settlement
currency first; this adapter then lets Stripe answer."""
MAXIMUM_DEFAULT = 99_999_999
MAXIMUM_CHARGE: dict[str, int] = {"IDR": 999_999_999_999, "INR": 999_999_999, "COP": 9_999_999_999}


class AmountRefused(ValueError):
    """An amount Stripe refuses for its currency: `code` is the code Stripe answers with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def stripe_exponent(currency: str) -> int:
    cur = currency.upper()
    if cur in ZERO_DECIMAL:
        return 0
    return 3 if cur in THREE_DECIMAL else 2


def step(currency: str) -> int:
    """The granularity of Stripe's amounts in `currency`, in Stripe's unit."""
    cur = currency.upper()
    return 10 if cur in THREE_DECIMAL else 100 if cur in HUNDREDS else 1


def _scale(currency: str) -> Fraction:
    """Stripe's units per product minor unit."""
    return Fraction(10 ** stripe_exponent(currency), 10 ** decimals(currency))


def minimum(currency: str) -> int:
    cur = currency.upper()
    return MINIMUM_CHARGE.get(cur, step(cur))


def maximum(currency: str) -> int:
    return MAXIMUM_CHARGE.get(currency.upper(), MAXIMUM_DEFAULT)


def to_stripe(money: Money) -> int:
    """The integer amount to send Stripe for `money`, rounded up to Stripe's granularity. Raises
    `AmountRefused` for an amount outside Stripe's minimum and maximum."""
    exact = money.minor * _scale(money.currency)
    units = -(-exact.numerator // exact.denominator)  # ceiling
    g = step(money.currency)
    units = -(-units // g) * g
    low, high = minimum(money.currency), maximum(money.currency)
    if units < low:
        least = Fraction(low) / _scale(money.currency)
        shown = Money(-(-least.numerator // least.denominator), money.currency)
        raise AmountRefused("amount_too_small", f"Stripe charges at least {shown}; {money} is less")
    if units > high:
        shown = Money(max_charge(money.currency), money.currency)
        raise AmountRefused("amount_too_large", f"Stripe charges at most {shown} at once; {money} is more")
    return units


def from_stripe(units: int, currency: str) -> Money:
    """Stripe's integer amount as the product's money (exact: raises `MoneyError` when it is not)."""
    cur = currency.upper()
    exact = Fraction(units) / _scale(cur)
    if exact.denominator != 1:
        raise MoneyError(f"{units} {cur.lower()} in Stripe's unit is no whole number of minor units")
    return Money(int(exact), cur)


def max_charge(currency: str) -> int:
    """The most one charge may carry in `currency`, in the product's minor units, such that the
    amount sent (rounded up to Stripe's granularity) is still within Stripe's maximum."""
    cur = currency.upper()
    g = step(cur)
    top = maximum(cur) // g * g
    product = Fraction(top) / _scale(cur)
    return int(product)  # floor: rounding it up again gives at most `top`
