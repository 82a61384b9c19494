"""Stripe's documented test cards: the magic PaymentMethods (`pm_card_visa`, ...) and tokens
(`tok_visa`, ...) that exist in every test-mode account (https://docs.stripe.com/testing).

Using a magic id in a request materialises a new PaymentMethod (`pm_...`) each time, as Stripe
does: attaching `pm_card_visa` answers a PaymentMethod with a fresh id, and that id is the one to
charge later.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TestCard:
    name: str  # the suffix of pm_card_<name> / tok_<name>
    brand: str
    last4: str
    funding: str = "credit"
    country: str = "US"
    code: str | None = None  # the card_error code a charge answers
    decline_code: str | None = None
    message: str | None = None
    declines_on_attach: bool = True  # Stripe checks a card when it is attached to a Customer
    requires_authentication: bool = False  # 3-D Secure on every charge (4000002760003184)

    @property
    def declines(self) -> bool:
        return self.code is not None


_DECLINED = "Your card was declined."

TEST_CARDS: dict[str, TestCard] = {
    c.name: c
    for c in [
        TestCard("visa", "visa", "4242"),
        TestCard("visa_debit", "visa", "5556", funding="debit"),
        TestCard("mastercard", "mastercard", "4444"),
        TestCard("mastercard_debit", "mastercard", "8210", funding="debit"),
        TestCard("mastercard_prepaid", "mastercard", "5100", funding="prepaid"),
        TestCard("amex", "amex", "8431"),
        TestCard("discover", "discover", "1117"),
        TestCard("jcb", "jcb", "0000", country="JP"),
        TestCard("chargeDeclined", "visa", "0002", code="card_declined", decline_code="generic_decline",
                 message=_DECLINED),
        TestCard("chargeDeclinedInsufficientFunds", "visa", "9995", code="card_declined",
                 decline_code="insufficient_funds", message="Your card has insufficient funds."),
        TestCard("chargeDeclinedLostCard", "visa", "9987", code="card_declined", decline_code="lost_card",
                 message=_DECLINED),
        TestCard("chargeDeclinedStolenCard", "visa", "9979", code="card_declined", decline_code="stolen_card",
                 message=_DECLINED),
        TestCard("chargeDeclinedFraudulent", "visa", "0019", code="card_declined", decline_code="fraudulent",
                 message=_DECLINED),
        TestCard("chargeDeclinedExpiredCard", "visa", "0069", code="expired_card", decline_code="expired_card",
                 message="Your card has expired."),
        TestCard("chargeDeclinedIncorrectCvc", "visa", "0127", code="incorrect_cvc", decline_code="incorrect_cvc",
                 message="Your card's security code is incorrect."),
        TestCard("chargeDeclinedProcessingError", "visa", "0119", code="processing_error",
                 decline_code="processing_error",
                 message="An error occurred while processing your card. Try again in a little bit."),
        # "Attaching this card to a Customer object succeeds, but attempts to charge the customer fail."
        TestCard("chargeCustomerFail", "visa", "0341", code="card_declined", decline_code="generic_decline",
                 message=_DECLINED, declines_on_attach=False),
        TestCard("authenticationRequired", "visa", "3184", requires_authentication=True),
    ]
}


def card_for_magic_id(value: str) -> TestCard | None:
    """The test card behind `pm_card_<name>` or `tok_<name>`, else None."""
    for prefix in ("pm_card_", "tok_"):
        if value.startswith(prefix):
            return TEST_CARDS.get(value.removeprefix(prefix))
    return None
