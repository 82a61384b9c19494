"""Settle an account at once: the one function the payment-method API, the hosted billing page
and the dunning sweep's retries all call.

Under the account's lease: first resolve any charge an earlier attempt left pending, by reading it
back from the gateway by its idempotency key (recorded if the gateway made it; forgotten if the
gateway never saw it, never charged anew); then plan from what is owed now, charge, and record
exactly what the gateway answered. Every step commits under the account's ETag, so events that
arrive meanwhile are never lost. Balances above the processor's per-charge limit are paid in
several charges, each planned once the one before is recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from shared.adapters.gateway.protocol import (
    CardDeclined,
    CardRejected,
    ChargeResult,
    GatewayUnavailable,
    PaymentGateway,
    answer_of,
    find_charge_for,
    save_card_for,
)
from shared.adapters.store.leases import LeaseBusy, Leases
from shared.domain.charge_answers import Charged, Declined, Refused, Unanswered
from shared.domain.charging import (
    ChargeOutcome,
    drop_pending,
    plan_settlement,
    record_authenticated,
    record_outcome,
    save_payment_method,
    still_owed,
    stopped_at_limit,
)
from shared.domain.decision import Decision
from shared.domain.declines import WAITS_FOR_CUSTOMER
from shared.domain.model import Account, ChargeStatus, PaymentMethod, PendingCharge
from shared.domain.money import Money, totals
from shared.services.unit_of_work import UnitOfWork, commit_decision
from shared.telemetry import count_charge, count_charge_answer

log = logging.getLogger(__name__)
MAX_ROUNDS = 30
"""Charges per currency in one settlement when the balance exceeds the processor's limit; what
is left after them stays owed, and the next settlement goes on."""


class NoCardOnFile(Exception):
    """Settlement needs a saved card."""


@dataclass
class Settlement:
    paid: list[dict[str, str]] = field(default_factory=list)
    charged: dict[str, Money] = field(default_factory=dict)
    reactivated: list[str] = field(default_factory=list)
    declines: list[tuple[str, str | None]] = field(default_factory=list)  # (currency, decline code)
    awaiting: list[tuple[str, str]] = field(default_factory=list)
    """(currency, the gateway's charge id) of declines the customer's bank must authenticate
    (3-D Secure): the hosted billing page's confirm step completes them."""
    refusals: list[tuple[str, Refused]] = field(default_factory=list)  # (currency, the gateway's refusal)
    unanswered: list[str] = field(default_factory=list)
    """Currencies whose charge is still pending with an unknown outcome: read back next time."""
    unfinished: list[str] = field(default_factory=list)
    """Currencies still owed after `MAX_ROUNDS` charges at the processor's limit: the next
    settlement goes on."""

    def take(self, decision: Decision) -> None:
        for note in decision.notes:
            if note.status is ChargeStatus.PAID and note.amount is not None:
                self.paid.append({"chargeId": note.charge_id, "subscriptionId": note.subscription_id or "",
                                  "amount": note.amount.to_str(), "currency": note.amount.currency})
        for effect in decision.effects:
            if getattr(effect, "type", None) == "subscription.reactivated":
                self.reactivated.append(effect.subscription_id)  # type: ignore[union-attr]

    def totals(self) -> dict[str, str]:
        paid = totals(Money.parse(p["amount"], p["currency"]) for p in self.paid)
        return {cur: m.to_str() for cur, m in paid.items()}

    @property
    def status(self) -> Literal["settled", "declined", "refused", "outcome_unknown"]:
        """The gravest thing that happened: an unknown outcome, a refusal, a decline, or none."""
        if self.unanswered:
            return "outcome_unknown"
        if self.refusals:
            return "refused"
        return "declined" if self.declines else "settled"


CardUpdateStatus = Literal["settled", "declined", "refused", "card_rejected", "card_declined",
                           "gateway_unavailable", "busy", "outcome_unknown"]


@dataclass
class CardUpdate:
    status: CardUpdateStatus
    settlement: Settlement = field(default_factory=Settlement)
    detail: str = ""


def update_card_and_settle(uow: UnitOfWork, gateway: PaymentGateway, account_id: str,
                           token: str) -> CardUpdate:
    """The source document's heart, for the API and the hosted page alike: save the card (it stays
    saved even if the charge is declined), then settle everything the account owes at once. A
    processor that checks the card as it saves it (Stripe) may decline it there: `card_declined`,
    with the decline code as `detail`, and nothing is saved."""
    try:
        method = check_card(gateway, token, account_id)
    except CardDeclined as exc:
        return CardUpdate("card_declined", detail=exc.code)
    except CardRejected as exc:
        return CardUpdate("card_rejected", detail=exc.message)
    except GatewayUnavailable:
        return CardUpdate("gateway_unavailable")
    save_card(uow, account_id, method)
    try:
        result = settle_account(uow, gateway, account_id)
    except LeaseBusy:
        return CardUpdate("busy")
    return CardUpdate(result.status, result)


def check_card(gateway: PaymentGateway, token: str, account_id: str | None = None) -> PaymentMethod:
    """The gateway's word on a token, as the payment method we keep (raises `CardRejected`,
    `CardDeclined`, `GatewayUnavailable`). With `account_id`, a gateway that keeps cards per customer
    (Stripe) saves it on the account's customer, and what we keep is the gateway's reference."""
    card = save_card_for(gateway, token, account_id)
    return PaymentMethod("card", card.token or token, card.brand, card.last4, card.exp_month, card.exp_year)


def save_card(uow: UnitOfWork, account_id: str, method: PaymentMethod) -> Account:
    now = uow.clock.now()
    decision = commit_decision(uow, account_id, lambda snap: save_payment_method(snap.account, method, now, uow.policy))
    return decision.account


def settle_account(uow: UnitOfWork, gateway: PaymentGateway, account_id: str,
                   *, wait: float = 20.0) -> Settlement:
    """Resolve what is pending, then charge what is owed now (see the module's docstring).
    Raises `LeaseBusy` when another settlement holds the account, `NoCardOnFile`."""
    result = Settlement()
    with uow.leases.hold(account_id, wait=wait) as holder:
        account = uow.accounts.load(account_id).account
        token = _card_token(account)
        for currency, pending in sorted(account.settling.items()):
            _resolve(uow, gateway, account_id, currency, pending, result, token)
        currencies: set[str] | None = None
        for _ in range(MAX_ROUNDS):
            planned = _plan(uow, gateway, account_id, currencies)
            currencies = {p.amount.currency for p in planned
                          if _still_ours(uow.leases, account_id, holder) and _charge(uow, gateway, account_id, p, token,
                                                                                 result)}
            if not currencies:
                break
        else:
            result.unfinished = sorted(currencies or ())
        if result.unfinished or account.settle_again_at is not None:
            now = uow.clock.now()
            commit_decision(uow, account_id, lambda snap: stopped_at_limit(snap.account, result.unfinished, MAX_ROUNDS,
                                                                           now, uow.policy))
    return result


def _still_ours(leases: Leases, account_id: str, holder: str) -> bool:
    """Renew the lease before each gateway call, so that a slow gateway never lets a twin take the
    account over while we charge; if one already has, stop (raises `LeaseBusy`)."""
    if not leases.renew(account_id, holder):
        log.warning("account %s: the settlement lease expired and was taken over; stopping", account_id)
        raise LeaseBusy(account_id)
    return True


def _card_token(account: Account) -> str:
    if account.card_token is None:
        raise NoCardOnFile(account.account_id)
    return account.card_token


def _plan(uow: UnitOfWork, gateway: PaymentGateway, account_id: str, currencies: set[str] | None,
          ) -> list[PendingCharge]:
    now = uow.clock.now()
    planned: list[PendingCharge] = []

    def plan(account: Account) -> Decision:
        limits = {c.amount.currency: gateway.max_charge(c.amount.currency) for c in account.outstanding.values()}
        decision, charges = plan_settlement(account, now, uow.policy, limits=limits, currencies=currencies)
        planned[:] = charges
        return decision

    commit_decision(uow, account_id, lambda snap: plan(snap.account))
    return planned


def _charge(uow: UnitOfWork, gateway: PaymentGateway, account_id: str, pending: PendingCharge, token: str,
            result: Settlement) -> bool:
    """Charge one planned charge and record the answer; True when it went through and the
    currency is still owed (a balance above the processor's limit: plan the next one)."""
    currency = pending.amount.currency
    account = uow.accounts.load(account_id).account
    current = account.settling.get(currency)
    if current is None or current.idempotency_key != pending.idempotency_key:
        return False  # recorded or replaced meanwhile: not ours to charge
    if not still_owed(account, current):
        _drop(uow, account_id, currency, pending.idempotency_key,
              "a payment, credit or write-off arrived after it was planned")
        return True
    answer = gateway.charge(idempotency_key=pending.idempotency_key, amount=pending.amount, token=token,
                            account_id=account_id, description=f"past-due balance of {account_id}")
    uow.faults.after_gateway_charge()
    if isinstance(answer, Unanswered):
        outcome = _read_back(gateway, pending.idempotency_key, account_id, token)
        if outcome is None:
            log.warning("account %s: charge %s of %s got no usable answer (%s); it stays pending and is read back "
                        "by its key before anything else is charged", account_id, pending.idempotency_key,
                        pending.amount, answer.code)
            result.unanswered.append(currency)
            count_charge("unanswered")  # contract §6 `billing.charges`: no usable answer, found here
            return False
        answer = outcome
    decision = _record(uow, account_id, currency, pending.idempotency_key, answer, result)
    return isinstance(answer, Charged) and currency in decision.account.balance()


def _read_back(gateway: PaymentGateway, key: str, account_id: str, token: str) -> Charged | Declined | None:
    """What the gateway recorded under `key` right after an unusable answer; None when it cannot
    say, or has nothing yet (a request may still be on its way: that is for the next settlement)."""
    try:
        found = find_charge_for(gateway, key, account_id, token)
    except GatewayUnavailable:
        return None
    return answer_of(found) if found is not None else None


def _resolve(uow: UnitOfWork, gateway: PaymentGateway, account_id: str, currency: str, pending: PendingCharge,
             result: Settlement, token: str) -> None:
    """A charge left pending by an earlier attempt: the gateway knows what happened under its key."""
    key = pending.idempotency_key
    try:
        found = find_charge_for(gateway, key, account_id, token)
    except GatewayUnavailable as exc:
        log.warning("account %s: charge %s is pending and the gateway cannot say what became of it: %s",
                    account_id, key, exc)
        result.unanswered.append(currency)
        return
    if found is None:
        log.warning("account %s: charge %s never reached the gateway; planning afresh from what is owed now",
                    account_id, key)
        _drop(uow, account_id, currency, key, "the gateway has no charge under its key")
        return
    log.warning("account %s: recovered the outcome of charge %s from the gateway", account_id, key)
    _record(uow, account_id, currency, key, answer_of(found), result, earlier=True)


def _drop(uow: UnitOfWork, account_id: str, currency: str, key: str, why: str) -> None:
    now = uow.clock.now()
    commit_decision(uow, account_id, lambda snap: drop_pending(snap.account, currency, key, now, uow.policy, why=why))


def _record(uow: UnitOfWork, account_id: str, currency: str, key: str, outcome: ChargeOutcome,
            result: Settlement, *, earlier: bool = False) -> Decision:
    """Commit the gateway's answer. Money taken is reported however old the attempt; a decline or
    refusal of an `earlier` attempt is history (the timeline has it), and this settlement goes on
    to plan afresh."""
    now: datetime = uow.clock.now()
    decision = commit_decision(uow, account_id, lambda snap: record_outcome(snap.account, currency, key, outcome,
                                                                          now, uow.policy),
                               marker=f"gateway-charge|{key}" if isinstance(outcome, Charged) else None)
    if not decision.changed:
        return decision  # recorded already
    count_charge_answer(outcome)  # contract §6 `billing.charges`, `billing.recovered`: recorded here, once
    if isinstance(outcome, Charged):
        before = result.charged.get(outcome.amount.currency, Money.zero(outcome.amount.currency))
        result.charged[outcome.amount.currency] = before + outcome.amount
    elif earlier:
        pass
    elif isinstance(outcome, Declined):
        result.declines.append((currency, outcome.decline_code))
        if outcome.decline_code in WAITS_FOR_CUSTOMER and outcome.gateway_charge_id:
            result.awaiting.append((currency, outcome.gateway_charge_id))
    else:
        result.refusals.append((currency, outcome))
    result.take(decision)
    return decision


def record_reported_charge(uow: UnitOfWork, account_id: str, found: ChargeResult,
                           *, wait: float = 20.0) -> Settlement:
    """Record a charge the gateway reports on its own (a Stripe webhook, the customer back from their
    bank): once per idempotency key, whoever reports it first and in whatever order. Under the
    account's lease, so a settlement still waiting for that very charge's answer finishes first and
    reports it itself; after it, this records nothing twice (the settlement's own marker of the key).

    - a success for a charge still pending is recorded as the settlement would have;
    - a success for a charge no longer pending (declined for authentication, then authenticated)
      pays the oldest charges of its currency, and the card is retried automatically again;
    - a decline is recorded only while its charge is pending (else it is history already).
    Raises `LeaseBusy` when the account stays busy for `wait` seconds."""
    result = Settlement()
    key = found.idempotency_key
    with uow.leases.hold(account_id, wait=wait):
        account = uow.accounts.load(account_id).account
        pending = next((p for p in account.settling.values() if p.idempotency_key == key), None)
        outcome = answer_of(found)
        if pending is not None:
            _record(uow, account_id, pending.amount.currency, key, outcome, result)
        elif isinstance(outcome, Charged):
            now = uow.clock.now()
            decision = commit_decision(uow, account_id,
                                       lambda snap: record_authenticated(snap.account, key, outcome, now, uow.policy),
                                       marker=f"gateway-charge|{key}")
            if decision.changed:
                count_charge_answer(outcome)  # contract §6: the authenticated charge, recorded here, once
                result.charged[outcome.amount.currency] = outcome.amount
                result.take(decision)
    return result


def complete_authentication(uow: UnitOfWork, gateway: PaymentGateway, account_id: str,
                            found: ChargeResult) -> Settlement:
    """The customer is back from their bank: record the authenticated charge, then settle the rest
    of the account at once (the hosted billing page's confirm step)."""
    recorded = record_reported_charge(uow, account_id, found)
    if not found.succeeded:
        return recorded
    rest = settle_account(uow, gateway, account_id)
    rest.paid[:0] = recorded.paid
    rest.reactivated[:0] = [s for s in recorded.reactivated if s not in rest.reactivated]
    for currency, money in recorded.charged.items():
        rest.charged[currency] = rest.charged[currency] + money if currency in rest.charged else money
    return rest
