"""The lifecycle's decisions: account + fact + now + policy → new account + effects, as data.

State is recomputed from the facts rather than stepped by hand (Kill Bill's overdue engine):
each subscription's state is derived from whether it still owes anything. Events about one
charge commute: a success before its failure, a payment before the charge it names (held for
it), a write-off after a payment (credited) all end where the natural order ends. Two things
are applied at a moment rather than recomputed, by design: a payment that names no charge goes
to the charges outstanding when it arrives, and account credit is spent at settlement (card
update, automatic retry), never silently on a failure that arrives later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from shared.lifecycle import schedule
from shared.lifecycle.effects import Effect, EmailKind, EmitLifecycleEvent, SendEmail, TimelineEntry
from shared.lifecycle.facts import (
    ChargeFailed,
    ChargeSucceeded,
    ChargeVoided,
    PaymentEvent,
    PaymentReceived,
    most_telling,
)
from shared.lifecycle.model import (
    Account,
    Charge,
    ChargeNote,
    ChargeStatus,
    Profile,
    Subscription,
    SubscriptionState,
)
from shared.money import Money
from shared.policy import DunningPolicy


@dataclass(frozen=True)
class Decision:
    account: Account
    notes: tuple[ChargeNote, ...] = ()
    effects: tuple[Effect, ...] = ()
    timeline: tuple[TimelineEntry, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.notes or self.effects or self.timeline)


class _Work:
    """A decision being built. Mutable inside one call only; callers see frozen values."""

    def __init__(self, account: Account, notes: Mapping[str, ChargeNote], now: datetime, occasion: str) -> None:
        self.account = account
        self.occasion = occasion
        self.reactivated: list[str] = []
        self.new_failures: list[str] = []
        self.known = dict(notes)
        self.now = now
        self.subs = dict(account.subscriptions)
        self.open = dict(account.outstanding)
        self.credit = dict(account.credit)
        self.earmarks = dict(account.earmarks)
        self.notes: dict[str, ChargeNote] = {}
        self.effects: list[Effect] = []
        self.timeline: list[TimelineEntry] = []

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
        _recompute_states(self, policy)
        _tell_new_failures(self, policy)
        if self.reactivated:
            _email_contacts(self, "payment_settled", self.occasion, tuple(self.reactivated),
                            {"reactivated": ",".join(self.reactivated)})
        account = replace(
            self.account, subscriptions=self.subs, outstanding=self.open,
            credit={c: m for c, m in self.credit.items() if m}, earmarks=self.earmarks,
            revision=self.account.revision + 1,
        )
        return Decision(account, tuple(self.notes.values()), tuple(self.effects), tuple(self.timeline))


def apply_payment_event(
    account: Account, event: PaymentEvent, notes: Mapping[str, ChargeNote], now: datetime,
    policy: DunningPolicy,
) -> Decision:
    """Apply one validated payment event. `notes` holds what is known of the charges it names."""
    work = _Work(account, notes, now, occasion=event.event_id)
    if isinstance(event, ChargeFailed):
        _charge_failed(work, event)
    elif isinstance(event, ChargeSucceeded):
        _charge_succeeded(work, event)
    elif isinstance(event, PaymentReceived):
        _payment_received(work, event)
    else:
        _charge_voided(work, event)
    return work.finish(policy)


def _charge_failed(work: _Work, event: ChargeFailed) -> None:
    work.ensure_subscription(event.subscription_id)
    current = work.open.get(event.charge_id)
    if current is not None:
        work.open[event.charge_id] = replace(current, reason=most_telling(current.reason, event.reason))
        work.log("charge_failed_again", f"charge {event.charge_id} failed again: {event.reason}",
                 event.subscription_id)
        return
    known = work.known.get(event.charge_id)
    if known is not None:
        work.log("charge_failure_ignored",
                 f"charge {event.charge_id} failure reported after it was {known.status}",
                 event.subscription_id)
        return
    charge = Charge(event.charge_id, event.subscription_id, event.amount, ChargeStatus.OUTSTANDING,
                    event.reason, outstanding_since=work.now)
    work.open[event.charge_id] = charge
    work.new_failures.append(event.charge_id)
    work.note(charge)
    work.log("charge_failed", f"charge {event.charge_id} of {event.amount} failed: {event.reason}",
             event.subscription_id)
    held = work.earmarks.pop(event.charge_id, None)
    if held is not None:
        left = _apply_money(work, held, [charge] if held.currency == event.amount.currency else [],
                            "payment received before the failure")
        _to_credit(work, left, f"more was paid ahead for charge {event.charge_id} than it owed")


def _charge_succeeded(work: _Work, event: ChargeSucceeded) -> None:
    work.ensure_subscription(event.subscription_id)
    current = work.open.get(event.charge_id)
    if current is not None:
        _to_credit(work, Money(current.applied, current.amount.currency),
                   f"charge {event.charge_id} was paid by card after a partial payment")
        work.settle(current, by="card")
        work.log("charge_paid", f"charge {event.charge_id} of {current.amount} paid by card",
                 event.subscription_id)
        return
    known = work.known.get(event.charge_id)
    if known is not None and known.paid_by_card:
        work.log("charge_success_ignored", f"charge {event.charge_id} was already paid by card",
                 event.subscription_id)
        return
    if known is not None:
        # Paid by other means, or written off: the card payment is surplus, kept as credit.
        _to_credit(work, event.amount, f"charge {event.charge_id} was already {known.status}, "
                                       "and was also paid by card")
        work.note(replace(known, paid_by_card=True))
        return
    held = work.earmarks.pop(event.charge_id, None)
    if held is not None:
        _to_credit(work, held, f"charge {event.charge_id} was paid by card and also by a payment")
    work.note(ChargeNote(event.charge_id, ChargeStatus.PAID, event.subscription_id, event.amount,
                         work.now, "card", paid_by_card=True))
    work.log("charge_paid", f"charge {event.charge_id} of {event.amount} paid by card", event.subscription_id)


def _charge_voided(work: _Work, event: ChargeVoided) -> None:
    current = work.open.pop(event.charge_id, None)
    if current is not None:
        _to_credit(work, Money(current.applied, current.amount.currency),
                   f"charge {event.charge_id} was written off after a partial payment")
        work.note(replace(current, status=ChargeStatus.VOIDED, settled_at=work.now, settled_by="void"))
        work.log("charge_voided", f"charge {event.charge_id} of {current.amount} written off",
                 current.subscription_id)
        return
    known = work.known.get(event.charge_id)
    if known is not None and known.status is ChargeStatus.VOIDED:
        work.log("charge_void_ignored", f"charge {event.charge_id} is already voided", known.subscription_id)
        return
    if known is not None:
        # A credit note on a paid charge: the customer paid for something no longer owed.
        if known.amount is not None:
            _to_credit(work, known.amount, f"charge {event.charge_id} was paid, then written off")
        work.note(replace(known, status=ChargeStatus.VOIDED, settled_at=work.now, settled_by="void"))
        work.log("charge_voided", f"paid charge {event.charge_id} written off", known.subscription_id)
        return
    held = work.earmarks.pop(event.charge_id, None)
    if held is not None:
        _to_credit(work, held, f"charge {event.charge_id} was written off; the payment for it is kept")
    work.note(ChargeNote(event.charge_id, ChargeStatus.VOIDED, settled_at=work.now, settled_by="void"))
    work.log("charge_voided", f"charge {event.charge_id} written off before it was reported")


def _payment_received(work: _Work, event: PaymentReceived) -> None:
    """Named charges first, in the order named; money for a named charge not yet reported is held
    for it; without names, the oldest charges of the currency. What is left becomes credit."""
    money = event.amount
    source = f"payment {event.payment_id}"
    work.log("payment_received", f"{source} of {money} by {event.method}")
    if event.charge_ids:
        named = [work.open[c] for c in event.charge_ids if c in work.open]
        money = _apply_money(work, money, [c for c in named if c.amount.currency == money.currency], source)
        unknown = [c for c in event.charge_ids if c not in work.open and c not in work.known]
        if money.minor and unknown:
            held = work.earmarks.get(unknown[0], Money.zero(money.currency))
            if held.currency == money.currency:
                work.earmarks[unknown[0]] = held + money
                work.log("payment_held", f"{money} of {source} held for charge {unknown[0]}, not yet reported")
                money = Money.zero(money.currency)
    else:
        money = _apply_money(work, money, _oldest_first(work, money.currency), source)
    _to_credit(work, money, f"{source} was more than what it paid for")


def _to_credit(work: _Work, money: Money, why: str) -> None:
    if money.minor:
        work.credit[money.currency] = work.credit.get(money.currency, 0) + money.minor
        work.log("credit_added", f"{money} kept as account credit: {why}")


def _oldest_first(work: _Work, currency: str) -> list[Charge]:
    return sorted((c for c in work.open.values() if c.amount.currency == currency),
                  key=lambda c: (c.outstanding_since, c.charge_id))


def _apply_money(work: _Work, money: Money, charges: list[Charge], source: str) -> Money:
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


def _recompute_states(work: _Work, policy: DunningPolicy) -> None:
    for sub_id in sorted(work.subs):
        sub = work.subs[sub_id]
        owes = any(c.subscription_id == sub_id for c in work.open.values())
        if sub.state is SubscriptionState.ACTIVE and owes:
            _become_past_due(work, sub, policy)
        elif sub.state.recoverable and not owes:
            _reactivate(work, sub)


def _become_past_due(work: _Work, sub: Subscription, policy: DunningPolicy) -> None:
    since = work.now
    new = replace(sub, state=SubscriptionState.PAST_DUE, past_due_since=since, steps_done=frozenset(),
                  episode=sub.episode + 1)
    work.subs[sub.subscription_id] = new
    episode = f"episode-{new.episode}"
    work.effects.append(EmitLifecycleEvent(work.account.account_id, sub.subscription_id,
                                           "subscription.past_due", "payment_failed", since, episode))
    work.log("state_changed", f"{sub.state} → past_due", sub.subscription_id)


def _tell_new_failures(work: _Work, policy: DunningPolicy) -> None:
    """One `payment_failed` email per failed charge still owed once credit is applied."""
    for charge_id in work.new_failures:
        charge = work.open.get(charge_id)
        if charge is None:
            continue
        sub = work.subs[charge.subscription_id]
        disable = schedule.disable_at(sub, policy)
        facts = {"chargeId": charge.charge_id, "amount": charge.remaining.to_str(),
                 "currency": charge.amount.currency, "reason": charge.reason,
                 "disableAt": disable.isoformat() if disable else ""}
        _email_contacts(work, "payment_failed", charge.charge_id, (sub.subscription_id,), facts)


def _reactivate(work: _Work, sub: Subscription) -> None:
    episode = f"episode-{sub.episode}"
    work.subs[sub.subscription_id] = replace(
        sub, state=SubscriptionState.ACTIVE, past_due_since=None, disabled_at=None, steps_done=frozenset(),
    )
    work.effects.append(EmitLifecycleEvent(work.account.account_id, sub.subscription_id,
                                           "subscription.reactivated", "balance_settled", work.now, episode))
    work.reactivated.append(sub.subscription_id)
    work.log("state_changed", f"{sub.state} → active", sub.subscription_id)


def _email_contacts(work: _Work, kind: EmailKind, occasion: str, subscription_ids: tuple[str, ...],
                    facts: dict[str, str]) -> None:
    profile = work.account.profile
    contacts = profile.billing_contacts if profile else ()
    if not contacts:
        work.log("email_skipped", f"{kind}: the account has no billing contact")
        return
    for contact in contacts:
        work.effects.append(SendEmail(work.account.account_id, kind, occasion, contact,
                                      subscription_ids, facts))


@dataclass(frozen=True)
class Registration:
    """What `PUT /api/accounts/{id}` says about an account."""

    profile: Profile
    subscriptions: tuple[tuple[str, str], ...]


def register(account: Account, reg: Registration, now: datetime, policy: DunningPolicy) -> Decision:
    """Register or update an account. Changed billing contacts are told, old and new alike."""
    work = _Work(account, {}, now, occasion=f"register@{now.isoformat()}")
    old = account.profile
    unreachable = {c: t for c, t in (old.unreachable.items() if old else ()) if c in reg.profile.billing_contacts}
    profile = replace(reg.profile, unreachable=unreachable)
    if profile.payment_method is None and old is not None:
        profile = replace(profile, payment_method=old.payment_method)
    if old is None:
        work.log("account_registered", "account registered")
    elif old != profile:
        work.log("profile_updated", "account details updated")
    for sub_id, name in reg.subscriptions:
        sub = work.ensure_subscription(sub_id)
        if sub.name != name:
            work.subs[sub_id] = replace(sub, name=name)
    work.account = replace(account, profile=profile)
    if old is not None and set(old.billing_contacts) != set(profile.billing_contacts):
        _contacts_changed(work, old.billing_contacts, profile.billing_contacts)
    return work.finish(policy)


def _contacts_changed(work: _Work, old: tuple[str, ...], new: tuple[str, ...]) -> None:
    occasion = f"{work.now.isoformat()}|{','.join(sorted(new))}"
    facts = {"oldContacts": ",".join(old), "newContacts": ",".join(new)}
    work.log("contacts_changed", f"billing contacts changed from {', '.join(old)} to {', '.join(new)}")
    seen: set[str] = set()
    for contact in (*old, *new):
        if contact.lower() in seen:
            continue
        seen.add(contact.lower())
        work.effects.append(SendEmail(work.account.account_id, "contact_changed", occasion, contact, (), facts))
