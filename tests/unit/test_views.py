"""The account view: alerts derived from the state, so they clear when the state does."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.domain.charging import save_payment_method
from shared.domain.facts import ChargeFailed, ChargeSucceeded
from shared.domain.model import Account, PaymentMethod, Profile
from shared.domain.money import Money
from shared.domain.payments import Registration, apply_payment_event, register
from shared.domain.policy import DunningPolicy
from shared.services.views import account_view

NOW = datetime(2026, 12, 1, tzinfo=UTC)
POLICY = DunningPolicy()
CARD = PaymentMethod("card", "tok_visa", "visa", "4242", 12, 2030)


def failed(reason: str, locale: str = "en") -> Account:
    reg = Registration(Profile("Contoso", locale, ("ap@contoso.example",), CARD), (("s1", "Web"),))  # type: ignore[arg-type]
    acc = register(Account("acc"), reg, NOW, POLICY).account
    return apply_payment_event(acc, ChargeFailed("e1", "acc", "s1", "c1", Money.parse("12.34", "USD"), reason),  # type: ignore[arg-type]
                               {}, NOW, POLICY).account


def codes(acc: Account) -> list[str]:
    return [a["code"] for a in account_view(acc, POLICY)["alerts"]]


def test_a_soft_decline_asks_to_update_payment_information() -> None:
    view = account_view(failed("insufficient_funds"), POLICY)
    assert [a["code"] for a in view["alerts"]] == ["payment_failed"]
    assert "$12.34" in view["alerts"][0]["message"] and view["alerts"][0]["since"] == "2026-12-01T00:00:00Z"
    assert view["subscriptions"][0]["disableAt"] == "2026-12-31T00:00:00Z"
    assert view["paymentMethod"] == {"type": "card", "brand": "visa", "last4": "4242", "expMonth": 12, "expYear": 2030}


def test_a_hard_decline_says_the_card_needs_replacing_until_a_new_one_is_saved() -> None:
    acc = failed("card_expired")
    assert codes(acc) == ["payment_failed", "payment_method_required"]
    acc = save_payment_method(acc, PaymentMethod("card", "tok_mastercard", "mastercard", "4444", 11, 2029), NOW,
                              POLICY).account
    assert codes(acc) == ["payment_failed"]


def test_alerts_clear_when_paid_and_speak_the_accounts_language() -> None:
    acc = failed("card_declined", locale="zh-CN")
    assert "请更新付款信息" in account_view(acc, POLICY)["alerts"][0]["message"]  # the source document's words
    paid = apply_payment_event(acc, ChargeSucceeded("e2", "acc", "s1", "c1", Money.parse("12.34", "USD")), {}, NOW,
                               POLICY).account
    assert codes(paid) == [] and account_view(paid, POLICY)["balance"] == {}
