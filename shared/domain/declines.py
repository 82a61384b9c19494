"""Declines, in the two vocabularies the product meets, defined once each with the mapping
between them.

- The contract's `reason` of `billing.charge.failed` (contract §1): `DeclineReason`, and which of
  them are soft (retried with the saved card) in `SOFT_REASONS`.
- The processor's decline codes (Stripe's list, which other processors follow): soft ones are
  worth retrying later, hard ones need the customer to act (`SOFT_DECLINE_CODES`,
  `HARD_DECLINE_CODES`, `decline_kind`), and `contract_reason` names a code in the contract's words.
"""

from __future__ import annotations

from typing import Literal

DeclineReason = Literal[
    "card_declined", "insufficient_funds", "processing_error", "authentication_required",
    "card_expired", "lost_or_stolen", "other",
]
SOFT_REASONS: frozenset[str] = frozenset(
    {"card_declined", "insufficient_funds", "processing_error", "authentication_required", "other"}
)
# Most telling first. When one charge fails more than once, its reason is the most telling one
# seen, so a hard decline is never forgotten and arrival order does not matter.
_SEVERITY: tuple[str, ...] = (
    "lost_or_stolen", "card_expired", "authentication_required", "insufficient_funds",
    "card_declined", "processing_error", "other",
)


def most_telling(a: str, b: str) -> str:
    return min(a, b, key=lambda r: _SEVERITY.index(r) if r in _SEVERITY else len(_SEVERITY))


DeclineKind = Literal["soft", "hard"]

# Which processor decline codes are worth retrying later (soft) and which need the
# customer to act, for example by updating their card (hard). Codes are Stripe's.
SOFT_DECLINE_CODES: frozenset[str] = frozenset(
    {
        "generic_decline",
        "card_declined",
        "do_not_honor",
        "insufficient_funds",
        "processing_error",
        "authentication_required",
        "try_again_later",
        "issuer_not_available",
        "reenter_transaction",
        "approve_with_id",
        "card_velocity_exceeded",
        "withdrawal_count_limit_exceeded",
        "no_action_taken",
    }
)
HARD_DECLINE_CODES: frozenset[str] = frozenset(
    {
        "expired_card",
        "lost_card",
        "stolen_card",
        "pickup_card",
        "incorrect_number",
        "invalid_number",
        "incorrect_cvc",
        "invalid_cvc",
        "invalid_expiry_month",
        "invalid_expiry_year",
        "restricted_card",
        "fraudulent",
        "security_violation",
        "card_not_supported",
        "currency_not_supported",
        "invalid_account",
        "new_account_information_available",
        "revocation_of_authorization",
        "revocation_of_all_authorizations",
        "stop_payment_order",
        "transaction_not_allowed",
        "do_not_try_again",
        "merchant_blacklist",
        "call_issuer",
        "not_permitted",
        "service_not_allowed",
        "pin_try_exceeded",
        "invalid_pin",
        "offline_pin_required",
        "online_or_offline_pin_required",
        "testmode_decline",
        "invalid_amount",
        "payment_intent_authentication_failure",
    }
)


# Gateway decline codes in the contract's words (`reason` of `billing.charge.failed`).
_CONTRACT_REASONS: dict[str, str] = {
    "insufficient_funds": "insufficient_funds", "card_declined": "card_declined", "generic_decline": "card_declined",
    "do_not_honor": "card_declined", "processing_error": "processing_error", "expired_card": "card_expired",
    "lost_card": "lost_or_stolen", "stolen_card": "lost_or_stolen",
    "authentication_required": "authentication_required",
    "payment_intent_authentication_failure": "authentication_required",
}

WAITS_FOR_CUSTOMER: frozenset[str] = frozenset({"authentication_required"})
"""Decline codes of the product's own off-session charges that only the customer can clear (their
bank wants them to authenticate the payment, 3-D Secure): soft for the card, yet never retried
automatically, since an off-session retry is declined the same way."""


def contract_reason(decline_code: str | None) -> str:
    return _CONTRACT_REASONS.get(decline_code or "", "other")


def decline_kind(decline_code: str | None) -> DeclineKind:
    """Soft or hard. A code we do not know is hard: blind retries of a refused card cost fees and
    can get a merchant flagged by the card networks, so an unknown refusal asks the customer."""
    return "soft" if decline_code in SOFT_DECLINE_CODES else "hard"
