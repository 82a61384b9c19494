"""An in-memory payment gateway for unit tests, with the sandbox gateway's exact behaviour.

The token table and the request rules below are also what `devstack.sandbox_gateway` serves, so a
unit test against `FakeGateway` and an integration test against the sandbox agree.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType

from shared.gateway.protocol import (
    CardDetails,
    CardRejected,
    ChargeResult,
    GatewayRequestError,
    GatewayUnavailable,
    IdempotencyConflict,
)
from shared.money import MAX_MINOR, Money


@dataclass(frozen=True)
class SandboxCard:
    """A test token: the card it stands for, and the decline code it answers every charge with."""

    card: CardDetails
    decline_code: str | None = None


# Stripe's test tokens. Declining cards exist (they save fine) and decline at charge time.
SANDBOX_CARDS: Mapping[str, SandboxCard] = MappingProxyType(
    {
        "tok_visa": SandboxCard(CardDetails("visa", "4242", 12, 2030)),
        "tok_mastercard": SandboxCard(CardDetails("mastercard", "4444", 11, 2029)),
        "tok_chargeDeclined": SandboxCard(CardDetails("visa", "0002", 12, 2030), "card_declined"),
        "tok_chargeDeclinedInsufficientFunds": SandboxCard(
            CardDetails("visa", "9995", 12, 2030), "insufficient_funds"
        ),
        "tok_chargeDeclinedProcessingError": SandboxCard(
            CardDetails("visa", "0119", 12, 2030), "processing_error"
        ),
        "tok_chargeDeclinedExpiredCard": SandboxCard(CardDetails("visa", "0069", 12, 2030), "expired_card"),
    }
)

# Stripe's ceiling for one charge, in minor units ($999,999.99).
MAX_CHARGE_MINOR = MAX_MINOR  # the product's largest amount: a VND bill of billions is charged whole
MAX_IDEMPOTENCY_KEY_LENGTH = 255


def amount_problem(amount: Money) -> str | None:
    """Why the gateway refuses to charge this amount, or None if it is chargeable."""
    if amount.minor <= 0:
        return "amount must be greater than zero"
    if amount.minor > MAX_CHARGE_MINOR:
        return f"amount must be at most {MAX_CHARGE_MINOR} minor units"
    return None


def idempotency_key_problem(key: str) -> str | None:
    """Why the gateway refuses this idempotency key, or None if it is acceptable."""
    if not key:
        return "an Idempotency-Key is required"
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        return f"the Idempotency-Key must be at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters"
    if not key.isprintable():
        return "the Idempotency-Key must not contain control characters"
    return None


def new_charge_id() -> str:
    return "ch_" + uuid.uuid4().hex[:24]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Record:
    result: ChargeResult
    account_id: str
    description: str


@dataclass
class FakeGateway:
    """A `PaymentGateway` in memory. `charges` lists every charge made (declines included), oldest
    first; a replayed idempotency key adds nothing. Thread-safe."""

    clock: Callable[[], datetime] = _utcnow
    charges: list[ChargeResult] = field(default_factory=list)
    _records: dict[str, _Record] = field(default_factory=dict, repr=False)
    _fail_next: int = field(default=0, repr=False)
    _lose_next: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- fault injection, like the sandbox's POST /faults --------------------------------------

    def fail_next(self, count: int = 1) -> None:
        """The next `count` calls raise `GatewayUnavailable` before doing anything."""
        with self._lock:
            self._fail_next = count

    def lose_next_response(self, count: int = 1) -> None:
        """The next `count` charge calls charge (or replay), then raise `GatewayUnavailable`: the
        network failed after the gateway charged."""
        with self._lock:
            self._lose_next = count

    # -- inspection ------------------------------------------------------------------------------

    def charges_for(self, account_id: str) -> list[ChargeResult]:
        with self._lock:
            return [r.result for r in self._records.values() if r.account_id == account_id]

    # -- the PaymentGateway interface -----------------------------------------------------------

    def save_card(self, token: str) -> CardDetails:
        with self._lock:
            self._maybe_fail()
        sandbox = SANDBOX_CARDS.get(token)
        if sandbox is None:
            raise CardRejected("invalid_token", "No such token: the card token is unknown or invalid.")
        return sandbox.card

    def charge(
        self, *, idempotency_key: str, amount: Money, token: str, account_id: str, description: str
    ) -> ChargeResult:
        with self._lock:
            self._maybe_fail()
            problem = idempotency_key_problem(idempotency_key)
            if problem:
                raise GatewayRequestError("missing_idempotency_key", problem, 400)
            problem = amount_problem(amount)
            if problem:
                raise GatewayRequestError("invalid_amount", problem, 400)
            if not account_id:
                raise GatewayRequestError("invalid_request", "accountId is required", 400)
            sandbox = SANDBOX_CARDS.get(token)
            if sandbox is None:
                raise CardRejected("invalid_token", "No such token: the card token is unknown or invalid.")
            existing = self._records.get(idempotency_key)
            if existing is None:
                result = ChargeResult(
                    idempotency_key=idempotency_key,
                    gateway_charge_id=new_charge_id(),
                    status="declined" if sandbox.decline_code else "succeeded",
                    amount=amount,
                    decline_code=sandbox.decline_code,
                    created_at=self.clock(),
                )
                self._records[idempotency_key] = _Record(result, account_id, description)
                self.charges.append(result)
            else:
                result = existing.result
                if result.amount != amount:
                    raise IdempotencyConflict(
                        "idempotency_conflict",
                        "This idempotency key was already used with a different amount or currency.",
                    )
            if self._lose_next > 0:
                self._lose_next -= 1
                raise GatewayUnavailable("the gateway did not answer in time")
            return result

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        with self._lock:
            self._maybe_fail()
            record = self._records.get(idempotency_key)
            return record.result if record else None

    def _maybe_fail(self) -> None:
        if self._fail_next > 0:
            self._fail_next -= 1
            raise GatewayUnavailable("the gateway answered 503 Service Unavailable")
