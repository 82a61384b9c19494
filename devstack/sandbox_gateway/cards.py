"""An in-memory payment gateway for unit tests, with the sandbox gateway's exact behaviour.

The token table and the request rules below are also what `devstack.sandbox_gateway` serves, so a
unit test against `FakeGateway` and an integration test against the sandbox agree. `inject` plays
every kind of answer the HTTP adapter maps (see the table in shared.adapters.gateway.protocol), so the
settlement can be driven through each of them without a network.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Literal

from shared.adapters.gateway.protocol import CardDetails, CardRejected, ChargeResult, GatewayUnavailable, answer_of
from shared.domain.charge_answers import ChargeAnswer, Refused, Unanswered
from shared.domain.money import Money


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

# Stripe's ceiling for one charge, in minor units ($999,999.99): the sandbox refuses more with 400
# `invalid_amount`, as a real processor does; settlement splits larger balances under it (a VND
# bill of billions is paid in several charges), reading the limit from the adapter.
MAX_CHARGE_MINOR = 99_999_999
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


FaultKind = Literal["unavailable", "rate_limited", "lost_after_charge", "malformed_after_charge", "refuse",
                    "decline"]


@dataclass(frozen=True)
class GatewayFault:
    """How the next charge request goes wrong, as the HTTP adapter would report it:
    `unavailable` (5xx, a timeout before the gateway acted) and `rate_limited` (429): nothing
    charged, `Unanswered`; `lost_after_charge` (a timeout after it charged) and
    `malformed_after_charge` (an unreadable 200): charged, `Unanswered`; `refuse`: a 4xx refusal
    with `status` and `code`, nothing charged; `decline`: charged as declined with `code`."""

    kind: FaultKind
    code: str = ""
    status: int = 400


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
    max_charge_minor: int = MAX_CHARGE_MINOR
    _fail_next: int = field(default=0, repr=False)
    _failing_lookups: int = field(default=0, repr=False)
    _faults: deque[GatewayFault] = field(default_factory=deque, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- fault injection, like the sandbox's POST /faults --------------------------------------

    def fail_next(self, count: int = 1) -> None:
        """The next `count` calls raise `GatewayUnavailable` before doing anything."""
        with self._lock:
            self._fail_next = count

    def lose_next_response(self, count: int = 1) -> None:
        """The next `count` charge calls charge (or replay), then answer `Unanswered`: the network
        failed after the gateway charged."""
        self.inject(*[GatewayFault("lost_after_charge")] * count)

    def inject(self, *faults: GatewayFault) -> None:
        """The next charge requests go wrong as `faults` say, one each, in order."""
        with self._lock:
            self._faults.extend(faults)

    def clear_faults(self) -> None:
        """No injected fault is left: the gateway answers properly again."""
        with self._lock:
            self._fail_next = self._failing_lookups = 0
            self._faults.clear()

    def fail_lookups(self, count: int = 1) -> None:
        """The next `count` `find_charge` calls raise `GatewayUnavailable`."""
        with self._lock:
            self._failing_lookups = count

    # -- inspection ------------------------------------------------------------------------------

    def recorded(self, idempotency_key: str) -> ChargeResult | None:
        """What is kept under a key, without any injected fault (inspection, not the interface)."""
        with self._lock:
            record = self._records.get(idempotency_key)
            return record.result if record else None

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
    ) -> ChargeAnswer:
        with self._lock:
            if self._fail_next > 0:
                self._fail_next -= 1
                return Unanswered("the gateway answered 503 Service Unavailable", "http_503")
            fault = self._faults.popleft() if self._faults else None
            if fault is not None and fault.kind in ("unavailable", "rate_limited"):
                status = 503 if fault.kind == "unavailable" else 429
                return Unanswered(f"the gateway answered {status}", f"http_{status}")
            refusal = self._refusal(idempotency_key, amount, token, account_id)
            if refusal is None and fault is not None and fault.kind == "refuse":
                refusal = Refused(fault.code or "invalid_request", "refused by an injected fault", fault.status)
            if refusal is not None:
                return refusal
            existing = self._records.get(idempotency_key)
            if existing is None:
                injected = fault.code if fault is not None and fault.kind == "decline" else None
                code = injected or SANDBOX_CARDS[token].decline_code
                result = ChargeResult(
                    idempotency_key=idempotency_key,
                    gateway_charge_id=new_charge_id(),
                    status="declined" if code else "succeeded",
                    amount=amount,
                    decline_code=code,
                    created_at=self.clock(),
                )
                self._records[idempotency_key] = _Record(result, account_id, description)
                self.charges.append(result)
            elif existing.result.amount != amount:
                return Unanswered("This idempotency key was already used with a different amount or currency.",
                                  "idempotency_conflict")
            else:
                result = existing.result
            if fault is not None and fault.kind in ("lost_after_charge", "malformed_after_charge"):
                return Unanswered("the gateway did not answer in time", "malformed_answer")
            return answer_of(result)

    def _refusal(self, idempotency_key: str, amount: Money, token: str, account_id: str) -> Refused | None:
        """What the sandbox answers 400 to, checked in its order."""
        problem = idempotency_key_problem(idempotency_key)
        if problem:
            return Refused("missing_idempotency_key", problem, 400)
        problem = amount_problem(amount) or (
            f"amount must be at most {self.max_charge_minor} minor units" if amount.minor > self.max_charge_minor
            else None)
        if problem:
            return Refused("invalid_amount", problem, 400)
        if not account_id:
            return Refused("invalid_request", "accountId is required", 400)
        if token not in SANDBOX_CARDS:
            return Refused("invalid_token", "No such token: the card token is unknown or invalid.", 400)
        return None

    def max_charge(self, currency: str) -> int:
        return self.max_charge_minor

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        with self._lock:
            self._maybe_fail()
            if self._failing_lookups > 0:
                self._failing_lookups -= 1
                raise GatewayUnavailable("the gateway answered 503 Service Unavailable")
            record = self._records.get(idempotency_key)
            return record.result if record else None

    def _maybe_fail(self) -> None:
        if self._fail_next > 0:
            self._fail_next -= 1
            raise GatewayUnavailable("the gateway answered 503 Service Unavailable")
