"""The lifecycle's decisions: account + fact + now + policy → new account + effects, as data.

State is recomputed from the facts rather than stepped by hand (Kill Bill's overdue engine):
each subscription's state is derived from whether it still owes anything. Events about one
charge commute: a success before its failure, a payment before the charge it names (held for
it), a write-off after a payment (credited) all end where the natural order ends. Credit meets
debt in any order (contract §1, changed 2026-12-05): a payment that names no charge pays the
charges outstanding when it arrives, oldest first, and what is left is credit, which pays each
charge of its currency as it arrives (`decision.spend_credit`, at the end of every decision). So
the balance never depends on arrival order; which charges the credit paid may, and the timeline
says which ("paid by account credit").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from shared.domain.decision import Decision, Work, apply_money, oldest_first, to_credit
from shared.domain.declines import SOFT_REASONS, most_telling
from shared.domain.effects import SendEmail
from shared.domain.facts import ChargeFailed, ChargeSucceeded, ChargeVoided, PaymentEvent, PaymentReceived
from shared.domain.limits import refusal
from shared.domain.model import Account, Charge, ChargeNote, ChargeStatus, Profile
from shared.domain.money import Money
from shared.domain.policy import DunningPolicy
from shared.inbound.rfc3339 import format_rfc3339


def apply_payment_event(
    account: Account, event: PaymentEvent, notes: Mapping[str, ChargeNote], now: datetime,
    policy: DunningPolicy,
) -> Decision:
    """Apply one validated payment event. `notes` holds what is known of the charges it names.
    An event that would take the account past a limit (`shared.domain.limits`: a 201st
    subscription, a 501st outstanding charge) is refused: `Decision.refused` says why."""
    work = Work(account, notes, now, occasion=event.event_id)
    if isinstance(event, ChargeFailed):
        _charge_failed(work, event)
    elif isinstance(event, ChargeSucceeded):
        _charge_succeeded(work, event)
    elif isinstance(event, PaymentReceived):
        _payment_received(work, event)
    else:
        _charge_voided(work, event)
    return within_limits(account, work.finish(policy))


def within_limits(before: Account, decision: Decision) -> Decision:
    """`decision`, or, when it would take the account past a limit, a refusal that changes nothing."""
    why = refusal(before, decision.account)
    return decision if why is None else Decision(before, refused=why)


def _charge_failed(work: Work, event: ChargeFailed) -> None:
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
    if event.reason not in SOFT_REASONS:
        if about_saved_card(work.account, event.time):
            work.account = replace(work.account, retry_blocked=True)
        else:
            assert event.time is not None  # an undated decline is about the saved card
            when = format_rfc3339(event.time)
            work.log("hard_decline_of_earlier_card",
                     f"charge {event.charge_id} was declined for good ({event.reason}) at {when}, before "
                     "the saved card was saved: that card is still retried", event.subscription_id)
    work.open[event.charge_id] = charge
    work.new_failures.append(event.charge_id)
    work.note(charge)
    work.log("charge_failed", f"charge {event.charge_id} of {event.amount} failed: {event.reason}",
             event.subscription_id)
    held = work.earmarks.pop(event.charge_id, None)
    if held is not None:
        left = apply_money(work, held, [charge] if held.currency == event.amount.currency else [],
                            "payment received before the failure")
        to_credit(work, left, f"more was paid ahead for charge {event.charge_id} than it owed")


def about_saved_card(account: Account, time: datetime | None) -> bool:
    """Whether a hard decline at `time` is about the card saved now (contract §1): it is unless a
    card was saved after it. Without either time (an account stored before cards' times were
    kept), it is taken to be."""
    saved = account.card_saved_at
    return saved is None or time is None or time >= saved


def _charge_succeeded(work: Work, event: ChargeSucceeded) -> None:
    work.ensure_subscription(event.subscription_id)
    current = work.open.get(event.charge_id)
    if current is not None:
        to_credit(work, Money(current.applied, current.amount.currency),
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
        to_credit(work, event.amount, f"charge {event.charge_id} was already {known.status}, "
                                       "and was also paid by card")
        work.note(replace(known, paid_by_card=True))
        return
    held = work.earmarks.pop(event.charge_id, None)
    if held is not None:
        to_credit(work, held, f"charge {event.charge_id} was paid by card and also by a payment")
    work.note(ChargeNote(event.charge_id, ChargeStatus.PAID, event.subscription_id, event.amount,
                         work.now, "card", paid_by_card=True))
    work.log("charge_paid", f"charge {event.charge_id} of {event.amount} paid by card", event.subscription_id)


def _charge_voided(work: Work, event: ChargeVoided) -> None:
    current = work.open.pop(event.charge_id, None)
    if current is not None:
        to_credit(work, Money(current.applied, current.amount.currency),
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
            to_credit(work, known.amount, f"charge {event.charge_id} was paid, then written off")
        work.note(replace(known, status=ChargeStatus.VOIDED, settled_at=work.now, settled_by="void"))
        work.log("charge_voided", f"paid charge {event.charge_id} written off", known.subscription_id)
        return
    held = work.earmarks.pop(event.charge_id, None)
    if held is not None:
        to_credit(work, held, f"charge {event.charge_id} was written off; the payment for it is kept")
    work.note(ChargeNote(event.charge_id, ChargeStatus.VOIDED, settled_at=work.now, settled_by="void"))
    work.log("charge_voided", f"charge {event.charge_id} written off before it was reported")


def _payment_received(work: Work, event: PaymentReceived) -> None:
    """Named charges first, in the order named; money for a named charge not yet reported is held
    for it; without names, the oldest charges of the currency. What is left becomes credit."""
    money = event.amount
    source = f"payment {event.payment_id}"
    work.log("payment_received", f"{source} of {money} by {event.method}")
    if event.charge_ids:
        named = [work.open[c] for c in event.charge_ids if c in work.open]
        money = apply_money(work, money, [c for c in named if c.amount.currency == money.currency], source)
        unknown = [c for c in event.charge_ids if c not in work.open and c not in work.known]
        if money.minor and unknown:
            held = work.earmarks.get(unknown[0], Money.zero(money.currency))
            if held.currency == money.currency:
                work.earmarks[unknown[0]] = held + money
                work.log("payment_held", f"{money} of {source} held for charge {unknown[0]}, not yet reported")
                money = Money.zero(money.currency)
    else:
        money = apply_money(work, money, oldest_first(work, money.currency), source)
    to_credit(work, money, f"{source} was more than what it paid for")


@dataclass(frozen=True)
class Registration:
    """What `PUT /api/accounts/{id}` says about an account."""

    profile: Profile
    subscriptions: tuple[tuple[str, str], ...]


def register(account: Account, reg: Registration, now: datetime, policy: DunningPolicy) -> Decision:
    """Register or update an account. Changed billing contacts are told, old and new alike.
    Refused (`Decision.refused`) when the listed subscriptions would take it past 200."""
    work = Work(account, {}, now, occasion=f"register@{now.isoformat()}")
    old = account.profile
    listed = set(reg.profile.billing_contacts)
    unreachable = {c: t for c, t in (old.unreachable.items() if old else ()) if c in listed}
    reported = {c: t for c, t in (old.reported.items() if old else ()) if c in listed}
    undelivered = {c: t for c, t in (old.undelivered.items() if old else ()) if c in listed}
    profile = replace(reg.profile, unreachable=unreachable, reported=reported, undelivered=undelivered)
    if profile.payment_method is None and old is not None:
        profile = replace(profile, payment_method=old.payment_method)
    new_card = profile.payment_method is not None and profile.payment_method.type == "card" and (
        old is None or old.payment_method != profile.payment_method)
    if old is None:
        work.log("account_registered", "account registered")
    elif old != profile:
        work.log("profile_updated", "account details updated")
    for sub_id, name in reg.subscriptions:
        known = sub_id in work.subs
        sub = work.ensure_subscription(sub_id)
        if sub.name != name:
            work.subs[sub_id] = replace(sub, name=name)
        if not known:
            work.log("subscription_added", "subscription added", sub_id)
        elif sub.name != name:
            work.log("subscription_renamed", "subscription renamed", sub_id)
    work.account = replace(account, profile=profile,
                           card_saved_at=now if new_card else account.card_saved_at)
    if old is not None and set(old.billing_contacts) != set(profile.billing_contacts):
        _contacts_changed(work, old.billing_contacts, profile.billing_contacts)
    return within_limits(account, work.finish(policy))


def _contacts_changed(work: Work, old: tuple[str, ...], new: tuple[str, ...]) -> None:
    occasion = f"{work.now.isoformat()}|{','.join(sorted(new))}"
    facts = {"oldContacts": list(old), "newContacts": list(new)}
    work.log("contacts_changed", f"billing contacts changed from {', '.join(old)} to {', '.join(new)}")
    seen: set[str] = set()
    for contact in (*old, *new):
        if contact.lower() in seen:
            continue
        seen.add(contact.lower())
        work.effects.append(SendEmail(work.account.account_id, "contact_changed", occasion, contact, (), facts))
