"""Money read from outside text exactly, or refused: never rounded, never a foreign digit."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.money import MAX_MINOR, Money, MoneyError, largest, totals
from shared.notifications.formatting import format_money

CURRENCIES = ["JPY", "VND", "USD", "EUR", "KWD", "BHD"]  # zero, two and three decimals


@given(st.integers(min_value=1, max_value=MAX_MINOR), st.sampled_from(CURRENCIES))
def test_every_amount_up_to_the_largest_reads_back_exactly(minor: int, currency: str) -> None:
    money = Money(minor, currency)
    assert Money.parse(money.to_str(), currency) == money
    assert Decimal(money.to_str()) == money.amount  # the API's string and the formatter's value agree


@given(st.integers(min_value=MAX_MINOR + 1, max_value=10**40), st.sampled_from(CURRENCIES))
def test_past_the_largest_is_refused_not_rounded(minor: int, currency: str) -> None:
    with pytest.raises(MoneyError, match="largest"):
        Money.parse(Money(minor, currency).to_str(), currency)


def test_the_largest_amount_per_currency() -> None:
    assert largest("VND") == "999999999999999999"
    assert largest("USD") == "9999999999999999.99"
    assert largest("KWD") == "999999999999999.999"
    assert Money.parse(largest("USD"), "USD").minor == MAX_MINOR


def test_a_billion_dong_is_exact() -> None:
    assert Money.parse("2500000000", "VND") == Money(2_500_000_000, "VND")
    assert format_money(Money(2_500_000_000, "VND"), "en") == "₫2,500,000,000"


def test_beyond_decimal_precision_is_refused() -> None:
    # Decimal's default context would read this as ...5679.00: a vast credit out of thin air.
    with pytest.raises(MoneyError, match="largest"):
        Money.parse("1234567890123456789012345678.91", "USD")


@pytest.mark.parametrize("text", [
    "１２.３４",  # full-width
    "١٢.٣٤",  # Arabic-Indic
    "۱۲.۳۴",  # Extended Arabic-Indic (Persian)
    "१२.३४",  # Devanagari
    "১২.৩৪",  # Bengali
    "๑๒.๓๔",  # Thai
    "12.3４",  # one foreign digit among ASCII ones
    "1e3", "1E3", "12.34e0", "1_000.00", "+12.34", " 12.34", "12.34 ", "12.34\n", "12,34", ".50", "12.",
    "NaN", "nan", "Infinity", "-Infinity", "inf", "0x10", "", "-", "1.2.3", "²",
])
def test_anything_but_plain_ascii_decimals_is_refused(text: str) -> None:
    with pytest.raises(MoneyError):
        Money.parse(text, "USD")


def test_a_five_thousand_digit_amount_is_refused_at_once() -> None:
    with pytest.raises(MoneyError, match="largest"):
        Money.parse("9" * 5000, "USD")


def test_sums_past_the_largest_stay_exact() -> None:
    big = Money(MAX_MINOR, "USD")
    total = totals([big] * 2000)["USD"]
    assert total.minor == MAX_MINOR * 2000
    assert total.to_str() == "19999999999999999980.00"
    assert format_money(total, "en") == "$19,999,999,999,999,999,980.00"
