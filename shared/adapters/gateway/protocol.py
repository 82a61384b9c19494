"""The payment gateway as the product sees it: an interface, its value types and its errors.

Shaped after real card processors (Stripe): a card is saved from a token, a charge carries an
idempotency key, a decline is an answer (not an exception), and a charge can be read back by its
key. That read-back is how the product recovers when the gateway charged but the answer was lost
(timeout, crash) before our own commit: ask again with the same key, or `find_charge` it.

Every answer a charge can get maps to one `ChargeAnswer`:

| the gateway answered                                   | `ChargeAnswer` | money moved?        |
|--------------------------------------------------------|----------------|---------------------|
| 2xx with a readable charge                             | `Charged`      | yes, its `amount`   |
| 402 with a readable charge (any decline code)          | `Declined`     | no                  |
| 400, 401, 403, 404, 409 (not a key conflict), 422      | `Refused`      | no, nothing at all  |
| 429 or 5xx after the retries, a timeout, no connection,| `Unanswered`   | unknown: read it    |
| a malformed body, 409 `idempotency_conflict`, the rest |                | back by its key     |
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, TypeAlias, runtime_checkable

from shared.domain.money import Money
from shared.inbound.card_data import mask_card_numbers

ChargeStatus = Literal["succeeded", "declined"]
DeclineKind = Literal["soft", "hard"]

# The one place that says which decline codes are worth retrying later (soft) and which need the
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
    }
)


# Gateway decline codes in the contract's words (`reason` of `billing.charge.failed`).
_CONTRACT_REASONS: dict[str, str] = {
    "insufficient_funds": "insufficient_funds", "card_declined": "card_declined", "generic_decline": "card_declined",
    "do_not_honor": "card_declined", "processing_error": "processing_error", "expired_card": "card_expired",
    "lost_card": "lost_or_stolen", "stolen_card": "lost_or_stolen",
    "authentication_required": "authentication_required",
}


def contract_reason(decline_code: str | None) -> str:
    return _CONTRACT_REASONS.get(decline_code or "", "other")


def decline_kind(decline_code: str | None) -> DeclineKind:
    """Soft or hard. A code we do not know is hard: blind retries of a refused card cost fees and
    can get a merchant flagged by the card networks, so an unknown refusal asks the customer."""
    return "soft" if decline_code in SOFT_DECLINE_CODES else "hard"


@dataclass(frozen=True)
class CardDetails:
    """What the gateway tells us about a saved card: never the number itself."""

    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class ChargeResult:
    """The outcome of one charge attempt, as the gateway recorded it under its idempotency key."""

    idempotency_key: str
    gateway_charge_id: str | None
    status: ChargeStatus
    amount: Money
    decline_code: str | None
    created_at: datetime

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def soft_decline(self) -> bool:
        """True for a decline worth retrying later; False for a success or a hard decline."""
        return self.status == "declined" and decline_kind(self.decline_code) == "soft"


@dataclass(frozen=True)
class Charged:
    """The card was charged. `amount` is what the gateway says it took, which is what we record."""

    amount: Money
    gateway_charge_id: str | None


@dataclass(frozen=True)
class Declined:
    """The card was declined (HTTP 402): nothing charged. `decline_code` is the processor's."""

    decline_code: str | None
    gateway_charge_id: str | None = None

    def __post_init__(self) -> None:
        _mask_fields(self, "decline_code")

    @property
    def kind(self) -> DeclineKind:
        return decline_kind(self.decline_code)


@dataclass(frozen=True)
class Refused:
    """The gateway refused the request itself (bad amount, unknown token, bad credentials): it
    charged nothing and kept nothing under the key. `code` is its machine code, `status` the HTTP
    status."""

    code: str
    message: str
    status: int

    def __post_init__(self) -> None:
        _mask_fields(self, "code", "message")


@dataclass(frozen=True)
class Unanswered:
    """No usable answer: the charge may or may not have been made. Only reading it back by its
    idempotency key (`find_charge`) tells; never charge again under a new key before that."""

    reason: str
    code: str = "gateway_unavailable"

    def __post_init__(self) -> None:
        _mask_fields(self, "reason", "code")


ChargeAnswer: TypeAlias = Charged | Declined | Refused | Unanswered


def _mask_fields(answer: object, *names: str) -> None:
    """A gateway's text is free text from outside, kept on the timeline and in logs: any card
    number it quotes is masked where it enters the product, whichever adapter read it."""
    for name in names:
        value = getattr(answer, name)
        if isinstance(value, str):
            object.__setattr__(answer, name, mask_card_numbers(value))


def answer_of(result: ChargeResult) -> Charged | Declined:
    """A charge the gateway recorded, as the answer it stands for."""
    if result.succeeded:
        return Charged(result.amount, result.gateway_charge_id)
    return Declined(result.decline_code, result.gateway_charge_id)


class GatewayError(Exception):
    """Base of every error the gateway adapters raise; `code` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        code, message = mask_card_numbers(code), mask_card_numbers(message)  # outside text, as above
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class CardRejected(GatewayError):
    """The token is unknown or invalid: there is no card to save or to charge."""


class GatewayUnavailable(GatewayError):
    """Transient trouble (network, timeout, 5xx) that outlasted the retries. The outcome of a charge
    is unknown: retry with the SAME idempotency key, or `find_charge` it, never a new key."""

    def __init__(self, message: str, code: str = "gateway_unavailable") -> None:
        super().__init__(code, message)


@runtime_checkable
class PaymentGateway(Protocol):
    def save_card(self, token: str) -> CardDetails:
        """Validate a card token and describe the card. Raises `CardRejected` if unknown/invalid."""
        ...

    def charge(
        self, *, idempotency_key: str, amount: Money, token: str, account_id: str, description: str
    ) -> ChargeAnswer:
        """Charge the card once per idempotency key; every answer is a `ChargeAnswer`, never an
        exception. A repeated key answers what the FIRST request did and charges nothing."""
        ...

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        """The charge made under this key, or None if the gateway never recorded one. Raises
        `GatewayUnavailable` when the gateway cannot say."""
        ...

    def max_charge(self, currency: str) -> int:
        """The most one charge may carry in `currency`, in minor units: the processor's limit,
        which settlement splits larger balances under."""
        ...
