"""The settlement model (tests/unit/test_settlement_model.py) on the Stripe adapter.

The same state machine drives the real service layer, but its gateway is
`shared/adapters/gateway/stripe.py` speaking through the official `stripe` SDK to the
Stripe-compatible sandbox (devstack/stripe_sandbox), started in this process on a free loopback
port. Every fault the model draws is played by the sandbox's own hook (`POST /faults`) on the one
request it is meant for, so the adapter's real requests and its mapping of Stripe's answers run:

| the model's fault        | the sandbox plays (Stripe's answer)                                   |
|--------------------------|-----------------------------------------------------------------------|
| unavailable              | 503 `api_error` on `POST /v1/payment_intents`                         |
| rate_limited             | 429 `rate_limit` with `Stripe-Should-Retry: true`                     |
| lost_after_charge        | the PaymentIntent is made, then the connection closes with no answer  |
| malformed_after_charge   | the PaymentIntent is made, then a body that is not JSON (a proxy's)   |
| decline (any code)       | 402 `card_error` with that `decline_code`, the PaymentIntent kept     |
| refuse 400, 404          | `invalid_request_error` with that status and code                     |
| refuse 409               | Stripe's 409 is no refusal but a conflict (a request under the same   |
|                          | key still running, a lock timeout): played as is; the SDK and the     |
|                          | adapter take it as unanswered, and the charge is read back            |
| refuse 422               | no Stripe meaning (Stripe refuses with 400 or 404): played as 400     |
| read-back fails          | 503 on `GET /v1/payment_intents` (listing the customer's intents)     |

The adapter runs with `max_network_retries=0`, so each fault reaches it as drawn: the SDK's own
retries under the same Idempotency-Key only repeat a fault that outlasts them, which
tests/integration/test_stripe_gateway.py covers. Cards are Stripe's test cards, including the ones
Stripe declines as they are attached (nothing is saved: `card_declined`), one that attaches and
declines when charged, and one whose bank asks for authentication off-session. Stripe's minimum
charge ($0.50, ¥50) is the one thing a working card cannot settle: a smaller balance is refused
(`amount_too_small`) and stays owed.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import deque
from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar

import pytest
import requests
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import rule, run_state_machine_as_test

from devstack.sandbox_gateway.cards import GatewayFault
from devstack.stripe_sandbox import RunningStripeSandbox, start_in_thread
from shared.adapters.gateway.protocol import CardDetails, ChargeResult, PaymentGateway
from shared.adapters.gateway.stripe import StripeGateway
from shared.domain.money import Money
from tests.unit.test_settlement_model import (
    CHARGES,
    CRASHES,
    GATEWAY_FAULTS,
    NOW,
    REACHED,
    SettlementModel,
    WatchedGateway,
    check,
)

CHARGE_ROUTE = "POST /v1/payment_intents"
LIST_ROUTE = "GET /v1/payment_intents"
STRIPE_MINIMUM = {"USD": 50, "JPY": 50}
"""Stripe's minimum charge amounts in minor units (https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts)."""
STRIPE_MAXIMUM = 99_999_999
"""Stripe's largest amount per charge: eight digits of its unit."""
STRIPE_TOKENS = (
    "tok_visa",
    "pm_card_mastercard",
    "tok_chargeCustomerFail",  # attaches, then declines every charge (generic_decline, soft)
    "tok_chargeDeclinedInsufficientFunds",  # declined as it is attached: not saved
    "pm_card_chargeDeclinedExpiredCard",  # declined as it is attached: not saved
    "pm_card_authenticationRequired",  # off-session: declined with authentication_required
)
"""Stripe's test cards (https://docs.stripe.com/testing), as tokens and as PaymentMethods."""


def sandbox_fault(fault: GatewayFault) -> dict[str, Any]:
    """The sandbox's `POST /faults` body that plays `fault` on the next charge request (see the
    module's table)."""
    if fault.kind == "unavailable":
        return {"mode": "fail_next", "status": 503, "route": CHARGE_ROUTE}
    if fault.kind == "rate_limited":
        return {"mode": "fail_next", "status": 429, "route": CHARGE_ROUTE}
    if fault.kind == "lost_after_charge":
        return {"mode": "drop_after_charge"}
    if fault.kind == "malformed_after_charge":
        return {"mode": "malformed_next", "afterCharge": True}
    if fault.kind == "decline":
        return {"mode": "decline_next", "declineCode": fault.code}
    status = 400 if fault.status == 422 else fault.status  # Stripe answers no 422
    return {"mode": "fail_next", "status": status, "code": fault.code or "invalid_request", "route": CHARGE_ROUTE}


class StripeHarness:
    """The Stripe adapter on the sandbox; each queued fault is armed for the one adapter call it is
    for and disarmed after it, so a fault the call did not use (a decline for a replayed key) never
    reaches another."""

    def __init__(self, sandbox: RunningStripeSandbox, account_id: str) -> None:
        self.url = sandbox.url
        self.account_id = account_id
        self.stripe = StripeGateway(sandbox.api_key, api_base=sandbox.url, max_network_retries=0, timeout=10)
        self.gateway: PaymentGateway = self.stripe
        self.limit = STRIPE_MAXIMUM
        self._faults: deque[GatewayFault] = deque()
        self._lookups_failing = 0
        self._http = requests.Session()

    def inject(self, *faults: GatewayFault) -> None:
        self._faults.extend(faults)

    def fail_lookups(self, count: int) -> None:
        self._lookups_failing = count

    def clear_faults(self) -> None:
        self._faults.clear()
        self._lookups_failing = 0
        self._disarm()

    @contextlib.contextmanager
    def charging(self) -> Iterator[None]:
        fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            REACHED[f"stripe fault {sandbox_fault(fault)['mode']}"] += 1
            self._arm(sandbox_fault(fault))
        try:
            yield
        finally:
            if fault is not None:
                self._disarm()

    @contextlib.contextmanager
    def looking_up(self) -> Iterator[None]:
        failing = self._lookups_failing > 0
        if failing:
            self._lookups_failing -= 1
            self._arm({"mode": "fail_next", "status": 503, "route": LIST_ROUTE})
        try:
            yield
        finally:
            if failing:
                self._disarm()

    def _arm(self, body: dict[str, Any]) -> None:
        self._http.post(f"{self.url}/faults", json=body, timeout=10).raise_for_status()

    def _disarm(self) -> None:
        self._http.delete(f"{self.url}/faults", timeout=10).raise_for_status()

    def _rows(self, account_id: str) -> list[dict[str, Any]]:
        """The sandbox's PaymentIntents for the account that were charged (declines included)."""
        r = self._http.get(f"{self.url}/charges", params={"accountId": account_id}, timeout=10)
        r.raise_for_status()
        rows: list[dict[str, Any]] = r.json()
        return rows

    def recorded(self, idempotency_key: str) -> bool:
        return any(row["idempotencyKey"] == idempotency_key for row in self._rows(self.account_id))

    def charges_for(self, account_id: str) -> list[ChargeResult]:
        return [ChargeResult(row["idempotencyKey"], row["id"], "succeeded" if row["status"] == "succeeded" else
                             "declined", Money.parse(row["amount"], row["currency"]), row.get("declineCode"),
                             _created(row["createdAt"]))
                for row in self._rows(account_id)]

    def below_minimum(self, money: Money) -> bool:
        return money.minor < STRIPE_MINIMUM[money.currency]


def _created(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else NOW


class WatchedStripeGateway(WatchedGateway):
    """The watched gateway with Stripe's customer calls, which the settlement uses when the gateway
    has them: cards saved on the account's Customer, charges read back by listing its intents."""

    harness: StripeHarness

    def save_customer_card(self, token: str, account_id: str) -> CardDetails:
        return self.harness.stripe.save_customer_card(token, account_id)

    def find_customer_charge(self, idempotency_key: str, account_id: str, token: str | None) -> ChargeResult | None:
        REACHED["read back"] += 1
        with self.harness.looking_up():
            return self.harness.stripe.find_customer_charge(idempotency_key, account_id, token)


class StripeSettlementModel(SettlementModel):
    """The model with the Stripe adapter as its gateway; a fresh account (and so a fresh Stripe
    Customer and fresh idempotency keys) per example, on one sandbox."""

    sandbox: ClassVar[RunningStripeSandbox | None] = None

    def account_id(self) -> str:
        return f"acc-{uuid.uuid4().hex[:12]}"

    def make_harness(self) -> StripeHarness:
        assert self.sandbox is not None, "start the sandbox first (the stripe_sandbox fixture)"
        return StripeHarness(self.sandbox, self.acc)

    def watch(self, harness: Any) -> WatchedGateway:
        return WatchedStripeGateway(harness, self.store, self.acc)

    @rule(token=st.sampled_from(STRIPE_TOKENS), fault=st.none() | GATEWAY_FAULTS, crash=st.none() | CRASHES,
          lookups_fail=st.booleans())
    def card_update(self, token: str, fault: GatewayFault | None, crash: tuple[str, int] | None,
                    lookups_fail: bool) -> None:
        super().card_update(token, fault, crash, lookups_fail)

    @rule(cids=st.lists(st.sampled_from(sorted(CHARGES)), min_size=1, max_size=3), fault=GATEWAY_FAULTS,
          crash=st.none() | CRASHES, lookups_fail=st.booleans())
    def charges_fail_then_a_retry_meets_a_fault(self, cids: list[str], fault: GatewayFault,
                                                crash: tuple[str, int] | None, lookups_fail: bool) -> None:
        """Owed charges, then an automatic retry while the sandbox misbehaves: the few examples this
        variant can afford spend more of their steps on Stripe's answers."""
        self.charges_failed(cids, "insufficient_funds")
        self.automatic_retry(fault, crash, lookups_fail)


STRIPE_SETTINGS = settings(max_examples=100, stateful_step_count=30, deadline=None, derandomize=True,
                           suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.fixture(scope="module")
def stripe_sandbox() -> Iterator[RunningStripeSandbox]:
    with start_in_thread(search_lag=1.0) as running:
        yield running


def test_the_model_holds_on_the_stripe_adapter_and_reaches_every_fault_path(
        stripe_sandbox: RunningStripeSandbox) -> None:
    """The CI run's examples reach every kind of answer, crash and recovery through Stripe."""
    REACHED.clear()
    StripeSettlementModel.sandbox = stripe_sandbox
    try:
        run_state_machine_as_test(StripeSettlementModel, settings=STRIPE_SETTINGS)
    finally:
        StripeSettlementModel.sandbox = None
    wanted = ["answer Charged", "answer Declined", "answer Refused", "answer Unanswered", "read back",
              "crash before_commit", "crash before_dispatch", "crash after_gateway_charge",
              "payment while a charge was in flight", "balance split under the limit",
              "charged, outcome still being read back", "card update settled", "card update not settled",
              *(f"stripe fault {m}" for m in ("fail_next", "drop_after_charge", "malformed_next", "decline_next"))]
    missing = [w for w in wanted if not REACHED[w]]
    print(dict(sorted(REACHED.items())))
    assert not missing, f"not reached: {missing}"


def test_a_balance_below_stripes_minimum_charge_is_refused_and_stays_owed(stripe_sandbox: RunningStripeSandbox) -> None:
    """A payment that leaves $0.10 of a charge: Stripe charges at least $0.50, so the adapter
    refuses it before any request (`amount_too_small`), nothing is charged and it stays owed."""
    StripeSettlementModel.sandbox = stripe_sandbox
    try:
        model = StripeSettlementModel()
    finally:
        StripeSettlementModel.sandbox = None
    model.registered_with_a_card(limit=STRIPE_MAXIMUM)
    model.charges_failed(["c1", "c3"], "insufficient_funds")  # 10.00 USD, 1500 JPY
    model.payment_received("USD", 990, "c1")
    REACHED.clear()
    model.settle_with_a_good_card_and_no_faults()  # asserts: refused as amount_too_small, nothing pending
    check(model)
    assert REACHED["left owing below the processor's minimum"] == 1
    assert [(c.amount, c.succeeded) for c in model.harness.charges_for(model.acc)] == [(Money(1500, "JPY"), True)]
    assert model.store.load(model.acc).account.balance() == {"USD": Money(10, "USD")}
