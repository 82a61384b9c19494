"""A decision being built, and the steps every decision shares: applying money, crediting, and
recomputing each subscription's state from what it owes (with the effects that follow).

Private to the lifecycle package: `decide.py` and `settlement.py` build on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared.domain import schedule
from shared.domain.effects import (
    Effect,
    EmailKind,
    EmitLifecycleEvent,
    IndexContact,
    SendEmail,
    TimelineEntry,
    UpdateIndex,
)
from shared.domain.mailbox import mailbox
from shared.domain.model import (
    Account,
    Charge,
    ChargeNote,
    ChargeStatus,
    Span,
    Subscription,
    SubscriptionState,
)
from shared.domain.money import Money
from shared.domain.policy import DunningPolicy


@dataclass(frozen=True)
class MailRecord:
    """An email's outbox row, closed: sent (with the ACS operation id) or given up."""

    key: str
    outcome: str  # "sent" or "failed"
    recipient: str
    kind: str
    operation_id: str
    detail: str = ""


@dataclass(frozen=True)
class Decision:
    account: Account
    notes: tuple[ChargeNote, ...] = ()
    effects: tuple[Effect, ...] = ()
    timeline: tuple[TimelineEntry, ...] = ()
    mail: tuple[MailRecord, ...] = ()
    touched: bool = False
    """The account changed in a way no timeline entry tells (when the last delivery report came)."""
    refused: str | None = None
    """Why the fact was refused as a whole (a limit of `shared.domain.limits`): then nothing
    else is set and the account is as it was."""

    @property
    def changed(self) -> bool:
        return bool(self.notes or self.effects or self.timeline or self.mail or self.touched)


class Work:
    """A decision being built. Mutable inside one call only; callers see frozen values."""

    def __init__(self, account: Account, notes: Mapping[str, ChargeNote], now: datetime, occasion: str) -> None:
        self.account = account
        self.before = account
        self.touched = False
        self.occasion = occasion
        self.reactivated: list[str] = []
        self.new_failures: list[str] = []
        self.known = dict(notes)
        self.now = now
        self.subs = dict(account.subscriptions)
        self.open = dict(account.outstanding)
        self.credit = dict(account.credit)
        self.earmarks = dict(account.earmarks)
        self.settling = dict(account.settling)
        self.notes: dict[str, ChargeNote] = {}
        self.effects: list[Effect] = []
        self.timeline: list[TimelineEntry] = []
        self.mail: list[MailRecord] = []

    def log(self, kind: str, detail: str, subscription_id: str | None = None) -> None:
        self.timeline.append(TimelineEntry(self.now, kind, detail, subscription_id))

    def note(self, charge: Charge | ChargeNote) -> None:
        note = charge if isinstance(charge, ChargeNote) else ChargeNote(
            charge.charge_id, charge.status, charge.subscription_id, charge.amount,
            charge.settled_at, charge.settled_by, paid_by_card=charge.settled_by == "card",
        )
        self.notes[note.charge_id] = note
        self.known[note.charge_id] = note

    def ensure_subscription(self, subscription_id: str) -> Subscription:
        sub = self.subs.get(subscription_id)
        if sub is None:
            sub = Subscription(subscription_id, name=subscription_id)
            self.subs[subscription_id] = sub
        return sub

    def settle(self, charge: Charge, by: str) -> None:
        """Mark a charge paid; money a payment had already put on it goes back to credit."""
        paid = replace(charge, status=ChargeStatus.PAID, settled_at=self.now, settled_by=by)
        self.open.pop(charge.charge_id, None)
        self.note(paid)

    def finish(self, policy: DunningPolicy) -> Decision:
        spend_credit(self)
        recompute_states(self, policy)
        tell_new_failures(self, policy)
        if self.reactivated:
            paid = [{"chargeId": n.charge_id, "subscriptionId": n.subscription_id, "minor": n.amount.minor,
                     "currency": n.amount.currency}
                    for n in self.notes.values() if n.status is ChargeStatus.PAID and n.amount is not None]
            email_contacts(self, "payment_settled", self.occasion, tuple(self.reactivated),
                           {"reactivated": list(self.reactivated), "paid": paid})
        revision = self.account.revision + 1
        pauses = kept_pauses(self.account.pauses, self.subs.values(), self.now)
        due = min((t for t in (schedule.next_due(self.subs.values(), policy, pauses, self.now),
                               self.account.paused_until,
                               schedule.card_notice_at(self.account, policy),
                               schedule.settlement_due(self.account, self.now, owing=bool(self.open)))
                   if t is not None), default=None)
        if due is not None and due != self.account.next_due_at:
            self.effects.append(UpdateIndex(self.account.account_id, "due", due, True, revision))
        was_disabled = any(s.state is SubscriptionState.DISABLED for s in self.account.subscriptions.values())
        is_disabled = any(s.state is SubscriptionState.DISABLED for s in self.subs.values())
        retention = min((t for t in (schedule.next_retention(self.subs.values(), policy),
                                      replace(self.account, subscriptions=self.subs).erasure_due_at())
                         if t is not None), default=None)
        if retention is not None and retention != self.account.next_retention_at:
            self.effects.append(UpdateIndex(self.account.account_id, "retention", retention, True, revision))
        if was_disabled != is_disabled:
            self.effects.append(UpdateIndex(self.account.account_id, "disabled", None, is_disabled, revision))
        self.effects += contact_index_changes(self.before, self.account, revision)
        account = replace(
            self.account, subscriptions=self.subs, outstanding=self.open,
            credit={c: m for c, m in self.credit.items() if m}, earmarks=self.earmarks, settling=self.settling,
            revision=revision, next_due_at=due, next_retention_at=retention, pauses=pauses,
            link_version=next_link_version(self.before, self.account),
        )
        return Decision(account, tuple(self.notes.values()), tuple(self.effects), tuple(self.timeline),
                        tuple(self.mail), self.touched)


def _listed(a: Account) -> set[str]:
    """The mailboxes the account's billing contacts name; none once its customer data is erased."""
    return {mailbox(c) for c in a.profile.billing_contacts} if a.profile else set()


def contact_index_changes(before: Account, after: Account, revision: int) -> list[IndexContact]:
    """The address index rows a decision adds or drops: registration, a change of contacts, erasure."""
    old, new = _listed(before), _listed(after)
    return [IndexContact(after.account_id, address, address in new, revision) for address in sorted(old ^ new)]


def next_link_version(before: Account, after: Account) -> int:
    """The billing-link version after a decision: one step on when the contacts' mailboxes changed
    (registration, a change of contacts, erasure), so every link made before stops working."""
    return before.link_version + (1 if _listed(before) != _listed(after) else 0)


def to_credit(work: Work, money: Money, why: str) -> None:
    if money.minor:
        work.credit[money.currency] = work.credit.get(money.currency, 0) + money.minor
        work.log("credit_added", f"{money} kept as account credit: {why}")


def oldest_first(work: Work, currency: str) -> list[Charge]:
    return sorted((c for c in work.open.values() if c.amount.currency == currency),
                  key=lambda c: (c.outstanding_since, c.charge_id))


def apply_money(work: Work, money: Money, charges: list[Charge], source: str) -> Money:
    """Apply money to charges in the order given; return what is left."""
    for charge in charges:
        if not money.minor:
            break
        take = min(money.minor, charge.remaining.minor)
        money = Money(money.minor - take, money.currency)
        charge = replace(charge, applied=charge.applied + take)
        if charge.remaining.minor == 0:
            work.settle(charge, by=source)
            work.log("charge_paid", f"charge {charge.charge_id} of {charge.amount} paid by {source}",
                     charge.subscription_id)
        else:
            work.open[charge.charge_id] = charge
            work.note(charge)
            work.log("charge_partly_paid",
                     f"{Money(take, money.currency)} of {source} applied to charge {charge.charge_id}",
                     charge.subscription_id)
    return money


def spend_credit(work: Work) -> None:
    """Credit meets debt in any order (contract §1): account credit pays the outstanding charges
    of its currency, oldest first, whichever came first, so nothing is past due while credit
    covers it. A currency with a card charge in flight waits for its answer (its plan counted
    on what was owed then)."""
    for currency in sorted(work.credit):
        minor = work.credit[currency]
        if minor <= 0 or currency in work.settling:
            continue
        charges = oldest_first(work, currency)
        if charges:
            work.credit[currency] = apply_money(work, Money(minor, currency), charges, "account credit").minor


def kept_pauses(pauses: tuple[Span, ...], subs: Iterable[Subscription], now: datetime) -> tuple[Span, ...]:
    """The paused intervals that can still move a date: those ending after the start of the
    earliest open episode, or after `now` when none is open. The rest is history (the timeline
    keeps it), so the list stays bounded by what one episode sees."""
    starts = [s.past_due_since for s in subs if s.state.recoverable and s.past_due_since is not None]
    horizon = min([now, *starts])
    return tuple(p for p in pauses if p[1] > horizon)


def recompute_states(work: Work, policy: DunningPolicy) -> None:
    for sub_id in sorted(work.subs):
        sub = work.subs[sub_id]
        owes = any(c.subscription_id == sub_id for c in work.open.values())
        if sub.state is SubscriptionState.ACTIVE and owes:
            become_past_due(work, sub, policy)
        elif sub.state.recoverable and not owes:
            reactivate(work, sub)


def become_past_due(work: Work, sub: Subscription, policy: DunningPolicy) -> None:
    since = work.now
    new = replace(sub, state=SubscriptionState.PAST_DUE, past_due_since=since, steps_done=frozenset(),
                  episode=sub.episode + 1, policy=policy.for_episode())
    work.subs[sub.subscription_id] = new
    episode = f"episode-{new.episode}"
    work.effects.append(EmitLifecycleEvent(work.account.account_id, sub.subscription_id,
                                           "subscription.past_due", "payment_failed", since, episode))
    work.log("state_changed", f"{sub.state} → past_due", sub.subscription_id)


def tell_new_failures(work: Work, policy: DunningPolicy) -> None:
    """One `payment_failed` email per failed charge still owed once credit is applied."""
    for charge_id in work.new_failures:
        charge = work.open.get(charge_id)
        if charge is None:
            continue
        sub = work.subs[charge.subscription_id]
        pauses = work.account.pauses
        disable, cancel = schedule.disable_at(sub, policy, pauses), schedule.cancel_at(sub, policy, pauses)
        facts = {"chargeId": charge.charge_id, "amount": charge.remaining.to_str(),
                 "currency": charge.amount.currency, "reason": charge.reason,
                 "disableAt": disable.isoformat() if disable else "",
                 "cancelAt": cancel.isoformat() if cancel else "", "state": str(sub.state)}
        email_contacts(work, "payment_failed", charge.charge_id, (sub.subscription_id,), facts)


def reactivate(work: Work, sub: Subscription) -> None:
    episode = f"episode-{sub.episode}"
    work.subs[sub.subscription_id] = replace(
        sub, state=SubscriptionState.ACTIVE, past_due_since=None, disabled_at=None, steps_done=frozenset(),
        policy=None,
    )
    work.effects.append(EmitLifecycleEvent(work.account.account_id, sub.subscription_id,
                                           "subscription.reactivated", "balance_settled", work.now, episode))
    work.reactivated.append(sub.subscription_id)
    work.log("state_changed", f"{sub.state} → active", sub.subscription_id)


def email_contacts(work: Work, kind: EmailKind, occasion: str, subscription_ids: tuple[str, ...],
                   facts: dict[str, Any]) -> None:
    profile = work.account.profile
    contacts = profile.billing_contacts if profile else ()
    if not contacts:
        work.log("email_skipped", f"{kind}: the account has no billing contact")
        return
    for contact in contacts:
        work.effects.append(SendEmail(work.account.account_id, kind, occasion, contact,
                                      subscription_ids, facts))


