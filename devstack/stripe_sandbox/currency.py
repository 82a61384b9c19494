"""Stripe's currency rules for amounts (https://docs.stripe.com/currencies).

Amounts travel as integers in the currency's minor unit, as Stripe counts it:
- zero-decimal currencies (JPY, KRW, VND, ...): the amount is whole units (`500` is 500 JPY);
- three-decimal currencies (BHD, JOD, KWD, OMR, TND): thousandths, and the last digit must be 0
  (Stripe's partners round to the nearest ten: 5.124 KWD must be sent as 5120 or 5130);
- ISK: zero-decimal since Stripe's change, but still sent with two decimals for backwards
  compatibility, so the amount must be divisible by 100;
- every other currency: two decimals.

Minimum charge amounts are Stripe's published table (minor units); a currency absent from it has
no published minimum of its own (Stripe applies the settlement currency's minimum after
conversion, which a sandbox without exchange rates does not model): there the amount need only be
positive. The maximum is eight digits (99999999) except where Stripe allows more digits.
"""

from __future__ import annotations

from babel.numbers import list_currencies

# Every active ISO 4217 code (CLDR, through Babel), without fund, metal and testing codes (XAU,
# XTS, ...) but with the CFA and CFP francs and the East Caribbean dollar. Kept apart from the
# product's own money module on purpose: the sandbox stands for Stripe, not for the product.
_ISO_CURRENCIES = frozenset(c for c in list_currencies() if not c.startswith("X") or c in {"XAF", "XOF", "XPF", "XCD"})

ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
DIVISIBLE_BY_100 = frozenset({"ISK"})

MINIMUM_CHARGE: dict[str, int] = {
    "USD": 50, "AED": 200, "AUD": 50, "BGN": 100, "BRL": 50, "CAD": 50, "CHF": 50, "CZK": 1500,
    "DKK": 250, "EUR": 50, "GBP": 30, "HKD": 400, "HUF": 17500, "INR": 50, "JPY": 50, "MXN": 1000,
    "MYR": 200, "NOK": 300, "NZD": 50, "PLN": 200, "RON": 200, "SEK": 300, "SGD": 50, "THB": 1000,
}  # fmt: skip

MAXIMUM_CHARGE_DEFAULT = 99_999_999  # "up to eight digits (99999999 for a USD charge of $999,999.99)"
MAXIMUM_CHARGE: dict[str, int] = {"IDR": 999_999_999_999, "INR": 999_999_999, "COP": 9_999_999_999}


def exponent(currency: str) -> int:
    """How many decimals Stripe's integer amount carries for `currency` (upper-case ISO code)."""
    cur = currency.upper()
    if cur in ZERO_DECIMAL:
        return 0
    if cur in THREE_DECIMAL:
        return 3
    return 2


def is_supported(currency: str) -> bool:
    """Any ISO 4217 currency a customer is billed in (Stripe documents lower-case codes and takes
    either case)."""
    return len(currency) == 3 and currency.upper() in _ISO_CURRENCIES


def minimum(currency: str) -> int:
    cur = currency.upper()
    if cur in MINIMUM_CHARGE:
        return MINIMUM_CHARGE[cur]
    return 10 if cur in THREE_DECIMAL else 100 if cur in DIVISIBLE_BY_100 else 1


def maximum(currency: str) -> int:
    return MAXIMUM_CHARGE.get(currency.upper(), MAXIMUM_CHARGE_DEFAULT)


def display(amount: int, currency: str) -> str:
    """`5000 usd` -> `$50.00`-like text for error messages: `50.00 usd`."""
    exp = exponent(currency)
    if exp == 0:
        return f"{amount:,} {currency.lower()}"
    whole, frac = divmod(amount, 10**exp)
    return f"{whole:,}.{frac:0{exp}d} {currency.lower()}"


def to_decimal_string(amount: int, currency: str) -> str:
    """The decimal text of a Stripe amount in the currency's Stripe exponent (`1234 usd` -> `12.34`)."""
    exp = exponent(currency)
    if exp == 0:
        return str(amount)
    whole, frac = divmod(amount, 10**exp)
    return f"{whole}.{frac:0{exp}d}"


def amount_problem(amount: int, currency: str) -> tuple[str, str] | None:
    """(code, message) when `amount` breaks Stripe's rules for `currency`, else None."""
    cur = currency.upper()
    if amount < 1:
        return "parameter_invalid_integer", "This value must be greater than or equal to 1."
    if cur in THREE_DECIMAL and amount % 10 != 0:
        return (
            "invalid_charge_amount",
            f"Amounts in {currency.lower()} must be rounded to the nearest ten: the last digit of the "
            "amount must be 0.",
        )
    if cur in DIVISIBLE_BY_100 and amount % 100 != 0:
        return (
            "invalid_charge_amount",
            f"Amounts in {currency.lower()} are sent with two decimals and must be divisible by 100.",
        )
    low, high = minimum(cur), maximum(cur)
    if amount < low:
        return "amount_too_small", f"Amount must be at least {display(low, cur)}"
    if amount > high:
        return "amount_too_large", f"Amount must be no more than {display(high, cur)}"
    return None
