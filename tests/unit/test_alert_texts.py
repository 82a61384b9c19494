"""Portal alert texts in the account view: every code in every locale, from the source document."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from shared.domain.model import Locale
from shared.domain.money import Money
from shared.notifications import ALERT_CODES, LOCALES, AlertCode, AlertParams, alert_message

USD = Money.parse("42.00", "USD")
JPY = Money.parse("1000", "JPY")
CJK = re.compile(r"[\u4e00-\u9fff]")

FULL = AlertParams(
    balance=(USD, JPY),
    subscriptions=("Contoso Web",),
    disable_at=datetime(2026, 12, 31, tzinfo=UTC),
    cancel_at=datetime(2027, 3, 1, tzinfo=UTC),
    delete_at=datetime(2027, 5, 30, tzinfo=UTC),
    contact="billing@contoso.example",
)

SOURCE_MESSAGE: dict[Locale, str] = {
    "en": "We couldn't charge your credit card for your subscription. "
    "To prevent service interruption, update your payment information.",
    "zh-CN": "我们未能通过信用卡收取订阅费用。为防止发生服务中断的情况，请更新付款信息。",
}
BALANCE: dict[Locale, str] = {"en": "$42.00 and ¥1,000", "zh-CN": "US$42.00和JP¥1,000"}


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("code", ALERT_CODES)
def test_every_alert_has_a_text_in_every_locale(code: AlertCode, locale: Locale) -> None:
    for params in (FULL, AlertParams()):
        message = alert_message(code, locale, params)
        assert message.strip() and "\n" not in message and "{" not in message
        if locale == "zh-CN":
            assert CJK.search(message)
        else:
            assert not CJK.search(message) and message.endswith(".")


@pytest.mark.parametrize("locale", LOCALES)
def test_payment_failed_is_the_source_message_plus_the_balance(locale: Locale) -> None:
    message = alert_message("payment_failed", locale, FULL)
    assert message.startswith(SOURCE_MESSAGE[locale])
    assert BALANCE[locale] in message
    assert alert_message("payment_failed", locale, AlertParams()) == SOURCE_MESSAGE[locale]


def test_payment_failed_in_full() -> None:
    assert alert_message("payment_failed", "en", AlertParams(balance=(USD,))) == (
        "We couldn't charge your credit card for your subscription. To prevent service interruption, "
        "update your payment information. Outstanding balance: $42.00."
    )
    assert alert_message("payment_failed", "zh-CN", AlertParams(balance=(USD,))) == (
        "我们未能通过信用卡收取订阅费用。为防止发生服务中断的情况，请更新付款信息。逾期未付余额：US$42.00。"
    )


@pytest.mark.parametrize(("locale", "date"), [("en", "May 30, 2027"), ("zh-CN", "2027年5月30日")])
def test_service_canceled_names_the_deletion_date(locale: Locale, date: str) -> None:
    message = alert_message("service_canceled", locale, FULL)
    assert date in message
    assert "Contoso Web" in message


@pytest.mark.parametrize(("locale", "date"), [("en", "March 1, 2027"), ("zh-CN", "2027年3月1日")])
def test_service_disabled_names_the_subscriptions_and_the_cancel_date(locale: Locale, date: str) -> None:
    message = alert_message("service_disabled", locale, FULL)
    assert "Contoso Web" in message and date in message and BALANCE[locale] in message


def test_english_agrees_in_number_with_the_subscriptions() -> None:
    one = alert_message("service_disabled", "en", AlertParams(subscriptions=("Web",)))
    two = alert_message("service_disabled", "en", AlertParams(subscriptions=("Web", "Batch")))
    assert one.startswith("Web has been disabled")
    assert two.startswith("Web and Batch have been disabled")


@pytest.mark.parametrize("locale", LOCALES)
def test_contact_unreachable_names_the_address_on_one_line(locale: Locale) -> None:
    message = alert_message("contact_unreachable", locale, FULL)
    assert "billing@contoso.example" in message
    forged = alert_message("contact_unreachable", locale, AlertParams(contact="a@b.example\r\nPay here"))
    assert "\n" not in forged and "\r" not in forged


@pytest.mark.parametrize("locale", LOCALES)
def test_payment_method_required_carries_balance_and_date(locale: Locale) -> None:
    message = alert_message("payment_method_required", locale, FULL)
    assert BALANCE[locale] in message
    assert ("December 31, 2026" if locale == "en" else "2026年12月31日") in message


def test_unknown_code_or_locale_is_refused() -> None:
    with pytest.raises(ValueError):
        alert_message("card_exploded", "en", FULL)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        alert_message("payment_failed", "de", FULL)  # type: ignore[arg-type]
