"""Settling an account at once (the source document's heart): every outstanding charge of every
subscription, account credit first, then card charges per currency, each within the processor's
per-charge limit.

Pure steps around the gateway call, so money never moves without a record:
`plan_settlement` records each charge as pending under a deterministic idempotency key (committed
before the gateway is called), from what is owed at that moment; `record_outcome` turns the
gateway's answer into paid charges (for exactly the amount the gateway took), reactivations and a
receipt, or into a decline or refusal with nothing marked paid; `drop_pending` forgets a pending
charge the gateway never saw, so that the next plan starts from what is owed then, never from
a stale plan.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import datetime

from shared.domain.charge_answers import Charged, Declined, Refused
from shared.domain.decision import Decision, Work, apply_money, oldest_first, to_credit
from shared.domain.declines import WAITS_FOR_CUSTOMER
from shared.domain.effects import short_hash
from shared.domain.model import MAX_AWAITING, Account, AwaitingCharge, Charge, PaymentMethod, PendingCharge
from shared.domain.money import Money
from shared.domain.policy import DunningPolicy

ChargeOutcome = Charged | Declined | Refused
"""A gateway answer that says what happened under a key (an `Unanswered` one is read back first)."""


def save_payment_method(account: Account, method: PaymentMethod, now: datetime, policy: DunningPolicy) -> Decision:
    """The new card becomes the payment method of the account, and so of all its subscriptions."""
    if account.profile is None:
        raise ValueError("only a registered account has a payment method")
    work = Work(replace(account, profile=replace(account.profile, payment_method=method), retry_blocked=False,
                        card_saved_at=now), {}, now, occasion=f"card@{now.isoformat()}")
    work.log("payment_method_updated", f"card {method.brand} ending {method.last4} saved for every subscription")
    return work.finish(policy)


def plan_settlement(account: Account, now: datetime, policy: DunningPolicy, *,
                    limits: Mapping[str, int] | None = None,
                    currencies: Collection[str] | None = None) -> tuple[Decision, list[PendingCharge]]:
    """Spend credit on the oldest charges, then plan one card charge per currency for the rest.

    `limits`: the processor's largest charge per currency, in minor units; a larger balance is
    paid oldest charges first over several charges (one planned now, the next once it is
    recorded). `currencies`: plan only these (None: every currency owed). A currency with a
    charge still pending is skipped: it is resolved, never doubled."""
    attempt = account.settlement_attempts + 1
    work = Work(replace(account, settlement_attempts=attempt), {}, now, occasion=f"settlement-{attempt}")
    pending: list[PendingCharge] = []
    owed = sorted({c.amount.currency for c in work.open.values()})
    for currency in owed if currencies is None else [c for c in owed if c in currencies]:
        if currency in work.settling:
            continue
        credit = work.credit.pop(currency, 0)
        if credit:
            left = apply_money(work, Money(credit, currency), oldest_first(work, currency), "account credit")
            work.credit[currency] = left.minor
        parts = within_limit(oldest_first(work, currency), (limits or {}).get(currency))
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


def stopped_at_limit(account: Account, currencies: Collection[str], rounds: int, now: datetime,
                     policy: DunningPolicy) -> Decision:
    """A settlement ended: with `currencies` still owed after `rounds` charges at the processor's
    largest charge, the sweep goes on charging the saved card from `now`
    (`Account.settle_again_at`); with none, it has nothing more to go on with."""
    again = now if currencies else None
    work = Work(replace(account, settle_again_at=again), {}, now,
                occasion=f"settlement-{account.settlement_attempts}-limit")
    work.touched = again != account.settle_again_at
    if currencies:
        work.log("settlement_unfinished", f"still owed in {', '.join(sorted(currencies))} after {rounds} card "
                                          "charges at the processor's largest charge: the next sweep charges the rest")
    return work.finish(policy)


def within_limit(charges: list[Charge], limit: int | None) -> tuple[tuple[str, int], ...]:
    """What one card charge pays, oldest first: whole charges while they fit under `limit`; a
    single charge larger than the limit alone is paid in even parts, as few as the limit allows
    (2,000,000.00 under 999,999.99: three of 666,666.67, 666,666.67, 666,666.66), never the limit
    and a remainder: a remainder of cents is below what a processor charges at all (Stripe's
    minimum is 0.50) and could never be paid by card."""
    parts: list[tuple[str, int]] = []
    total = 0
    for charge in charges:
        minor = charge.remaining.minor
        if limit is not None and total + minor > limit:
            if not parts:
                pieces = -(-minor // limit)  # ceiling: the fewest charges under the limit
                parts.append((charge.charge_id, -(-minor // pieces)))
            break
        parts.append((charge.charge_id, minor))
        total += minor
    return tuple(parts)


def record_outcome(account: Account, currency: str, key: str, outcome: ChargeOutcome, now: datetime,
                   policy: DunningPolicy) -> Decision:
    """Apply the gateway's answer under `key` to the pending charge of `currency`. When that charge
    is no longer pending (its plan was dropped or replaced while the request was on its way, say
    by a settlement that took over an expired lease), money the gateway took is still recorded,
    as credit; a decline or refusal changes nothing. Recording a key twice is the shell's to
    prevent (it commits each under a marker of its key)."""
    pending = account.settling.get(currency)
    if pending is None or pending.idempotency_key != key:
        return _late(account, key, outcome, now, policy) if isinstance(outcome, Charged) else Decision(account)
    work = Work(account, {}, now, occasion=key)
    del work.settling[currency]
    if isinstance(outcome, Declined):
        work.log("charge_declined", f"card charge of {pending.amount} declined: {outcome.decline_code}")
        if outcome.kind == "hard":
            work.account = replace(work.account, retry_blocked=True)
        elif outcome.decline_code in WAITS_FOR_CUSTOMER:
            waiting = {**work.account.awaiting, key: AwaitingCharge(pending, outcome.gateway_charge_id)}
            newest = dict(sorted(waiting.items(), key=lambda kv: kv[1].pending.started_at)[-MAX_AWAITING:])
            work.account = replace(work.account, retry_blocked=True, awaiting=newest)
            work.log("charge_awaits_customer", f"the bank asks the customer to authenticate the charge of "
                                               f"{pending.amount} ({outcome.gateway_charge_id}); no automatic "
                                               "retry until they do or save another card")
    elif isinstance(outcome, Refused):
        work.log("charge_refused", f"card charge of {pending.amount} refused by the gateway, nothing charged: "
                                   f"{outcome.code} ({outcome.message})")
        if outcome.code == "invalid_token":
            work.account = replace(work.account, retry_blocked=True)
    else:
        work.log("charge_succeeded", f"card charge of {outcome.amount} succeeded ({outcome.gateway_charge_id})")
        _spend(work, pending, outcome.amount)
    return work.finish(policy)


def record_authenticated(account: Account, key: str, outcome: Charged, now: datetime,
                         policy: DunningPolicy) -> Decision:
    """A charge the settlement recorded as waiting for the customer's bank (`Account.awaiting`) was
    authenticated and succeeded: the money pays the oldest charges of its currency (the ones it was
    planned for, unless they were paid otherwise meanwhile), the rest is credit, and the card,
    proven to work, is retried automatically again. A key the product never made wait changes
    nothing (a charge someone else made under the same account's name is not ours to record)."""
    if key not in account.awaiting:
        return Decision(account)
    waiting = {k: w for k, w in account.awaiting.items() if k != key}
    work = Work(replace(account, retry_blocked=False, awaiting=waiting), {}, now, occasion=f"{key}-authenticated")
    work.log("charge_succeeded", f"card charge of {outcome.amount} succeeded once the customer authenticated it "
                                 f"({outcome.gateway_charge_id}, idempotency key {key})")
    left = apply_money(work, outcome.amount, oldest_first(work, outcome.amount.currency), "saved card")
    to_credit(work, left, f"card charge {key} paid more than is owed")
    return work.finish(policy)


def _late(account: Account, key: str, outcome: Charged, now: datetime, policy: DunningPolicy) -> Decision:
    work = Work(account, {}, now, occasion=f"{key}-late")
    work.log("charge_succeeded", f"card charge of {outcome.amount} succeeded ({outcome.gateway_charge_id}) "
                                 f"after its plan (idempotency key {key}) was no longer pending")
    to_credit(work, outcome.amount, f"card charge {key} was answered after its plan was dropped")
    return work.finish(policy)


def _spend(work: Work, pending: PendingCharge, charged: Money) -> None:
    """Put exactly what the gateway took on the charges it was planned for; whatever they no
    longer owe (paid otherwise meanwhile, or more than planned) is the customer's credit."""
    money = charged
    for charge_id, minor in pending.parts:
        if money.currency != pending.amount.currency or not money.minor:
            break
        share = Money(min(minor, money.minor), money.currency)
        money = Money(money.minor - share.minor, money.currency)
        charge = work.open.get(charge_id)
        if charge is None:
            to_credit(work, share, f"charge {charge_id} was settled otherwise while the card was charged")
            continue
        # "saved card", not "card": `paid_by_card` means the billing engine's own charge succeeded
        # (`charge.succeeded`); if that comes too, the customer paid twice and it becomes credit.
        left = apply_money(work, share, [charge], "saved card")
        to_credit(work, left, f"charge {charge_id} owed less than the card paid for it")
    to_credit(work, money, "the gateway charged more than was planned")


def still_owed(account: Account, pending: PendingCharge) -> bool:
    """Is `pending` still exactly right to charge: every charge it pays still owes at least its
    part, and no credit has come in that should be spent first? (Events arrive while a
    settlement runs: a payment between the plan and the gateway call makes the plan stale.)"""
    currency = pending.amount.currency
    if account.credit.get(currency):
        return False
    return all((c := account.outstanding.get(cid)) is not None and c.remaining.minor >= minor
               for cid, minor in pending.parts)


def drop_pending(account: Account, currency: str, key: str, now: datetime, policy: DunningPolicy, *,
                 why: str = "it never reached the gateway") -> Decision:
    """Nothing was taken under `key` (`why` says how we know): the plan is forgotten and the next
    one starts from what is owed now."""
    pending = account.settling.get(currency)
    if pending is None or pending.idempotency_key != key:
        return Decision(account)
    work = Work(account, {}, now, occasion=f"{key}-dropped")
    del work.settling[currency]
    work.log("charge_abandoned", f"card charge of {pending.amount} (idempotency key {key}) not made: {why}; "
                                 "nothing was taken, and what is owed now is planned afresh")
    return work.finish(policy)
