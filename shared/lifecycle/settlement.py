"""Settling an account at once (the source document's heart): every outstanding charge of every
subscription, account credit first, then one card charge per currency.

Two pure steps around the gateway call, so money never moves without a record:
`plan_settlement` records each charge as pending under a deterministic idempotency key (committed
before the gateway is called); `record_outcome` turns the gateway's answer into paid charges,
reactivations and a receipt — or into a decline with nothing marked paid.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from shared.gateway.protocol import decline_kind
from shared.lifecycle.effects import short_hash
from shared.lifecycle.model import Account, PaymentMethod, PendingCharge
from shared.lifecycle.work import Decision, Work, apply_money, oldest_first, to_credit
from shared.money import Money
from shared.policy import DunningPolicy


@dataclass(frozen=True)
class ChargeOutcome:
    """The gateway's answer, in the core's terms."""

    status: Literal["succeeded", "declined"]
    gateway_charge_id: str | None = None
    decline_code: str | None = None


def save_payment_method(account: Account, method: PaymentMethod, now: datetime, policy: DunningPolicy) -> Decision:
    """The new card becomes the payment method of the account, and so of all its subscriptions."""
    if account.profile is None:
        raise ValueError("only a registered account has a payment method")
    work = Work(replace(account, profile=replace(account.profile, payment_method=method), retry_blocked=False), {},
                now, occasion=f"card@{now.isoformat()}")
    work.log("payment_method_updated", f"card {method.brand} ending {method.last4} saved for every subscription")
    return work.finish(policy)


def plan_settlement(account: Account, now: datetime, policy: DunningPolicy) -> tuple[Decision, list[PendingCharge]]:
    """Spend credit on the oldest charges, then plan one card charge per currency for the rest."""
    attempt = account.settlement_attempts + 1
    work = Work(replace(account, settlement_attempts=attempt), {}, now, occasion=f"settlement-{attempt}")
    pending: list[PendingCharge] = []
    for currency in sorted({c.amount.currency for c in work.open.values()}):
        if currency in work.settling:
            continue  # an earlier attempt is still in flight: it is resolved, never doubled
        credit = work.credit.pop(currency, 0)
        if credit:
            left = apply_money(work, Money(credit, currency), oldest_first(work, currency), "account credit")
            work.credit[currency] = left.minor
        parts = tuple((c.charge_id, c.remaining.minor) for c in oldest_first(work, currency)
                      if c.charge_id not in _in_flight(work))
        total = sum(minor for _, minor in parts)
        if total <= 0:
            continue
        key = "stl-" + short_hash(f"{account.account_id}|{currency}|{attempt}|{parts}")
        charge = PendingCharge(key, Money(total, currency), parts, now)
        work.settling[currency] = charge
        pending.append(charge)
        work.log("charge_attempt", f"charging {charge.amount} to the saved card for {len(parts)} charge(s) "
                                   f"(idempotency key {key})")
    return work.finish(policy), pending


def _in_flight(work: Work) -> set[str]:
    return {cid for p in work.settling.values() for cid, _ in p.parts}


def record_outcome(account: Account, currency: str, outcome: ChargeOutcome, now: datetime,
                   policy: DunningPolicy) -> Decision:
    """Apply the gateway's answer to the pending charge of `currency` (a no-op if already recorded)."""
    pending = account.settling.get(currency)
    work = Work(account, {}, now, occasion=pending.idempotency_key if pending else f"none@{now.isoformat()}")
    if pending is None:
        return Decision(account)
    del work.settling[currency]
    if outcome.status == "declined":
        work.log("charge_declined", f"card charge of {pending.amount} declined: {outcome.decline_code}")
        if decline_kind(outcome.decline_code) == "hard":
            work.account = replace(work.account, retry_blocked=True)
        return work.finish(policy)
    work.log("charge_succeeded", f"card charge of {pending.amount} succeeded ({outcome.gateway_charge_id})")
    for charge_id, minor in pending.parts:
        charge = work.open.get(charge_id)
        money = Money(minor, currency)
        if charge is None:
            to_credit(work, money, f"charge {charge_id} was settled otherwise while the card was charged")
            continue
        left = apply_money(work, money, [charge], "card")
        to_credit(work, left, f"charge {charge_id} owed less than the card paid for it")
    return work.finish(policy)
