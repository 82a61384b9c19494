"""The payment gateway: the interface the product codes against, and its adapters.

`HttpPaymentGateway` (shared.adapters.gateway.http) is the real one; `FakeGateway` (devstack.sandbox_gateway.cards)
is an in-memory stand-in with the same behaviour for unit tests.
"""

from shared.adapters.gateway.protocol import (
    HARD_DECLINE_CODES,
    SOFT_DECLINE_CODES,
    CardDetails,
    CardRejected,
    ChargeAnswer,
    Charged,
    ChargeResult,
    ChargeStatus,
    Declined,
    DeclineKind,
    GatewayError,
    GatewayUnavailable,
    PaymentGateway,
    Refused,
    Unanswered,
    answer_of,
    decline_kind,
)

__all__ = [
    "HARD_DECLINE_CODES",
    "SOFT_DECLINE_CODES",
    "CardDetails",
    "CardRejected",
    "ChargeAnswer",
    "ChargeResult",
    "ChargeStatus",
    "Charged",
    "DeclineKind",
    "Declined",
    "GatewayError",
    "GatewayUnavailable",
    "PaymentGateway",
    "Refused",
    "Unanswered",
    "answer_of",
    "decline_kind",
]
