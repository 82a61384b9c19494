"""Settle an account at once: the one function the payment-method API, the hosted billing page
and the dunning sweep's retries all call.

Under the account's lease: resolve any charge a crashed attempt left in flight (by asking the
gateway, never by charging anew), then plan, record, charge and record the outcome. Every step
commits under the account's ETag, so events that arrive meanwhile are never lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from shared.gateway.protocol import CardRejected, ChargeResult, GatewayUnavailable, PaymentGateway
from shared.handlers import Lifecycle, commit_decision
from shared.lifecycle.model import Account, ChargeStatus, PaymentMethod, PendingCharge
from shared.lifecycle.settlement import ChargeOutcome, plan_settlement, record_outcome, save_payment_method
from shared.lifecycle.work import Decision
from shared.money import Money, totals
from shared.store.leases import AccountLeases, LeaseBusy

log = logging.getLogger(__name__)


class NoCardOnFile(Exception):
    """Settlement needs a saved card."""


@dataclass
class Settlement:
    paid: list[dict[str, str]] = field(default_factory=list)
    charged: dict[str, Money] = field(default_factory=dict)
    reactivated: list[str] = field(default_factory=list)
    declines: list[tuple[str, str | None]] = field(default_factory=list)  # (currency, decline code)

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


CardUpdateStatus = Literal["settled", "declined", "card_rejected", "gateway_unavailable", "busy", "outcome_unknown"]


@dataclass
class CardUpdate:
    status: CardUpdateStatus
    settlement: Settlement = field(default_factory=Settlement)
    detail: str = ""


def update_card_and_settle(lc: Lifecycle, gateway: PaymentGateway, leases: AccountLeases, account_id: str,
                           token: str) -> CardUpdate:
    """The source document's heart, for the API and the hosted page alike: save the card (it stays
    saved even if the charge is declined), then settle everything the account owes at once."""
    try:
        method = check_card(gateway, token)
    except CardRejected as exc:
        return CardUpdate("card_rejected", detail=exc.message)
    except GatewayUnavailable:
        return CardUpdate("gateway_unavailable")
    save_card(lc, account_id, method)
    try:
        result = settle_account(lc, gateway, leases, account_id)
    except LeaseBusy:
        return CardUpdate("busy")
    except GatewayUnavailable:
        return CardUpdate("outcome_unknown")
    return CardUpdate("declined" if result.declines else "settled", result)


def check_card(gateway: PaymentGateway, token: str) -> PaymentMethod:
    """The gateway's word on a token, as the payment method we keep (raises `CardRejected`,
    `GatewayUnavailable`)."""
    card = gateway.save_card(token)
    return PaymentMethod("card", token, card.brand, card.last4, card.exp_month, card.exp_year)


def save_card(lc: Lifecycle, account_id: str, method: PaymentMethod) -> Account:
    now = lc.clock.now()
    decision = commit_decision(lc, account_id, lambda snap: save_payment_method(snap.account, method, now, lc.policy))
    return decision.account


def settle_account(lc: Lifecycle, gateway: PaymentGateway, leases: AccountLeases, account_id: str,
                   *, wait: float = 20.0) -> Settlement:
    result = Settlement()
    with leases.hold(account_id, wait=wait):
        account = lc.store.load(account_id).account
        token = _card_token(account)
        for currency, pending in sorted(account.settling.items()):
            _resolve(lc, gateway, account_id, currency, pending, token, result)
        now = lc.clock.now()
        planned: list[PendingCharge] = []

        def plan(snap_account: Account) -> Decision:
            decision, charges = plan_settlement(snap_account, now, lc.policy)
            planned[:] = charges
            return decision

        result.take(commit_decision(lc, account_id, lambda snap: plan(snap.account)))
        for pending in planned:
            _charge(lc, gateway, account_id, pending, token, result)
    return result


def _card_token(account: Account) -> str:
    if account.card_token is None:
        raise NoCardOnFile(account.account_id)
    return account.card_token


def _charge(lc: Lifecycle, gateway: PaymentGateway, account_id: str, pending: PendingCharge, token: str,
            result: Settlement) -> None:
    answer = gateway.charge(idempotency_key=pending.idempotency_key, amount=pending.amount, token=token,
                            account_id=account_id, description=f"past-due balance of {account_id}")
    lc.faults.after_gateway_charge()
    _record(lc, account_id, pending.amount.currency, answer, result)


def _resolve(lc: Lifecycle, gateway: PaymentGateway, account_id: str, currency: str, pending: PendingCharge,
             token: str, result: Settlement) -> None:
    """A charge recorded but never answered: the gateway knows what happened under its key."""
    answer = gateway.find_charge(pending.idempotency_key)
    if answer is None:
        log.warning("account %s: charge %s was recorded but never reached the gateway; charging it now",
                    account_id, pending.idempotency_key)
        _charge(lc, gateway, account_id, pending, token, result)
        return
    log.warning("account %s: recovered the outcome of charge %s from the gateway", account_id, pending.idempotency_key)
    _record(lc, account_id, currency, answer, result)


def _record(lc: Lifecycle, account_id: str, currency: str, answer: ChargeResult, result: Settlement) -> None:
    outcome = ChargeOutcome(answer.status, answer.gateway_charge_id, answer.decline_code)
    now: datetime = lc.clock.now()
    decision = commit_decision(lc, account_id, lambda snap: record_outcome(snap.account, currency, outcome, now,
                                                                          lc.policy))
    if answer.status == "succeeded":
        result.charged[currency] = answer.amount
    else:
        result.declines.append((currency, answer.decline_code))
    result.take(decision)
