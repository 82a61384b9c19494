"""The payment gateway: the interface the product codes against, and its adapters.

`HttpPaymentGateway` (shared.gateway.http) is the real one; `FakeGateway` (shared.gateway.fake)
is an in-memory stand-in with the same behaviour for unit tests.
"""

from shared.gateway.protocol import (
    HARD_DECLINE_CODES,
    SOFT_DECLINE_CODES,
    CardDetails,
    CardRejected,
    ChargeResult,
    ChargeStatus,
    DeclineKind,
    GatewayError,
    GatewayRequestError,
    GatewayUnavailable,
    IdempotencyConflict,
    PaymentGateway,
    decline_kind,
)

__all__ = [
    "HARD_DECLINE_CODES",
    "SOFT_DECLINE_CODES",
    "CardDetails",
    "CardRejected",
    "ChargeResult",
    "ChargeStatus",
    "DeclineKind",
    "GatewayError",
    "GatewayRequestError",
    "GatewayUnavailable",
    "IdempotencyConflict",
    "PaymentGateway",
    "decline_kind",
]
