"""When each escalation of contract §3 falls for a subscription: pure date arithmetic on the policy.

Days are counted in time that is not paused: `at_unpaused(since, days, pauses)` is the first
instant, outside every paused interval of the account, at which `days` of unpaused time have
passed since `since` (`unpaused_since` is its inverse). An account that was never paused counts
plain days. Steps after canceling (deletion warnings, data deletion) count plain days: the legal
hold, not a pause, is the tool for those.

Each subscription's dates follow the policy its episode began under (`Subscription.policy`),
and the settings of the day (`policy`) where it has none.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from shared.domain.model import Account, Span, Subscription, SubscriptionState
from shared.domain.policy import DunningPolicy

Pauses = Sequence[Span]


def effective_policy(sub: Subscription, policy: DunningPolicy) -> DunningPolicy:
    """The policy the subscription's dates follow: its episode's, else the settings of the day."""
    return sub.policy or policy


def unpaused_since(since: datetime, at: datetime, pauses: Pauses) -> timedelta:
    """How much time outside the paused intervals lies between `since` and `at`."""
    if at <= since:
        return timedelta(0)
    paused = sum((min(b, at) - max(a, since) for a, b in pauses if b > since and a < at), timedelta(0))
    return at - since - paused


def at_unpaused(since: datetime, offset: timedelta, pauses: Pauses) -> datetime:
    """The first instant not paused at which `offset` of unpaused time has passed since `since`.
    A step that would fall at the very start of a pause falls at its end."""
    cur, left = since, offset
    for a, b in sorted(pauses):
        if b <= cur:
            continue
        start = max(a, cur)
        if start > cur + left:
            break
        left -= start - cur
        cur = b
    return cur + left


def paused_at(pauses: Pauses, now: datetime) -> Span | None:
    """The paused interval `now` lies in, if any."""
    return next(((a, b) for a, b in pauses if a <= now < b), None)


def due_from(at: datetime, pauses: Pauses, now: datetime | None = None) -> datetime:
    """When a step of time `at` can happen: not inside a pause, and, while the account is paused
    at `now`, not before that pause ends (a step that fell due just before it waits for it)."""
    for a, b in sorted(pauses):
        if a <= at < b or (now is not None and a <= now < b and at < b):
            at = b
    return at


def _day(sub: Subscription, n: int, pauses: Pauses) -> datetime:
    assert sub.past_due_since is not None
    return at_unpaused(sub.past_due_since, timedelta(days=n), pauses)


def disable_at(sub: Subscription, policy: DunningPolicy, pauses: Pauses = ()) -> datetime | None:
    if sub.state is not SubscriptionState.PAST_DUE or sub.past_due_since is None:
        return None
    return _day(sub, effective_policy(sub, policy).disable_day, pauses)


def cancel_at(sub: Subscription, policy: DunningPolicy, pauses: Pauses = ()) -> datetime | None:
    if sub.state not in (SubscriptionState.PAST_DUE, SubscriptionState.DISABLED) or sub.past_due_since is None:
        return None
    return _day(sub, effective_policy(sub, policy).cancel_day, pauses)


def delete_at(sub: Subscription, policy: DunningPolicy, pauses: Pauses = ()) -> datetime | None:
    """The data deletion date: set at cancellation and unmoved by payments (a legal hold stops it)."""
    if sub.legal_hold:
        return None
    days = timedelta(days=effective_policy(sub, policy).delete_after_cancel_days)
    if sub.state is SubscriptionState.CANCELED and sub.canceled_at is not None:
        return sub.canceled_at + days
    base = cancel_at(sub, policy, pauses)
    return None if base is None else base + days


@dataclass(frozen=True)
class Step:
    """One rung of the dunning ladder for one subscription's past-due episode."""

    name: str
    at: datetime
    kind: StepKind


StepKind = Literal["retry", "payment_reminder", "disable_warning", "disable", "cancel", "deletion_warning", "delete"]


def steps_for(sub: Subscription, policy: DunningPolicy, pauses: Pauses = ()) -> list[Step]:
    """Contract §3, days counted from `pastDueSince` in unpaused time. What happens after
    cancellation (deletion warnings, data deletion) belongs to the retention sweep."""
    if sub.past_due_since is None or sub.state not in (SubscriptionState.PAST_DUE, SubscriptionState.DISABLED):
        return []
    p = effective_policy(sub, policy)

    def day(n: int) -> datetime:
        return _day(sub, n, pauses)

    steps = [Step(f"cancel-{p.cancel_day}", day(p.cancel_day), "cancel")]
    if sub.state is SubscriptionState.PAST_DUE:
        steps += [Step(f"retry-{d}", day(d), "retry") for d in p.retry_days]
        steps += [Step(f"reminder-{d}", day(d), "payment_reminder") for d in p.reminder_days]
        steps.append(Step(f"disable-warning-{p.disable_warning_day}", day(p.disable_warning_day),
                          "disable_warning"))
        steps.append(Step(f"disable-{p.disable_day}", day(p.disable_day), "disable"))
    return sorted(steps, key=lambda s: (s.at, s.name))


def next_step_at(sub: Subscription, policy: DunningPolicy, pauses: Pauses, kinds: tuple[StepKind, ...],
                 now: datetime | None = None) -> datetime | None:
    """When the next step of one of `kinds` not yet taken happens (the view's next reminder)."""
    pending = [due_from(s.at, pauses, now) for s in steps_for(sub, policy, pauses)
               if s.kind in kinds and s.name not in sub.steps_done]
    return min(pending, default=None)


def retention_steps(sub: Subscription, policy: DunningPolicy) -> list[Step]:
    """After cancellation: deletion warnings, then the deletion of the subscription's customer data.
    A legal hold stops the ladder; lifting it resumes where it stands. Never paused."""
    if sub.state is not SubscriptionState.CANCELED or sub.canceled_at is None or sub.legal_hold:
        return []
    p = effective_policy(sub, policy)
    canceled = sub.canceled_at
    steps = [Step(f"deletion-warning-{d}", canceled + timedelta(days=d), "deletion_warning")
             for d in p.deletion_warning_days]
    steps.append(Step(f"delete-{p.delete_after_cancel_days}",
                      canceled + timedelta(days=p.delete_after_cancel_days), "delete"))
    return sorted(steps, key=lambda s: (s.at, s.name))


def next_due(subs: Iterable[Subscription], policy: DunningPolicy, pauses: Pauses = (),
             now: datetime | None = None) -> datetime | None:
    """The earliest time a pending step can happen (`due_from`): what the due index holds."""
    pending = [due_from(s.at, pauses, now) for sub in subs for s in steps_for(sub, policy, pauses)
               if s.name not in sub.steps_done]
    return min(pending, default=None)


def next_retention(subs: Iterable[Subscription], policy: DunningPolicy) -> datetime | None:
    pending = [s.at for sub in subs for s in retention_steps(sub, policy) if s.name not in sub.steps_done]
    return min(pending, default=None)


def card_expires_at(exp_month: int | None, exp_year: int | None) -> datetime | None:
    """A card is good through the end of its expiry month (UTC): it expires at the first instant
    of the next month."""
    if exp_month is None or exp_year is None or not 1 <= exp_month <= 12 or not 1 <= exp_year < 9999:
        return None
    return datetime(exp_year + exp_month // 12, exp_month % 12 + 1, 1, tzinfo=UTC)


def card_expires(account: Account) -> datetime | None:
    """When the account's saved card expires, if it pays by card and the expiry is known."""
    card = account.card
    return None if card is None else card_expires_at(card.exp_month, card.exp_year)


def card_notice_at(account: Account, policy: DunningPolicy) -> datetime | None:
    """When the saved card's `card_expiring` notice is due, while it has not gone out for this card."""
    expires = card_expires(account)
    if expires is None or account.card_key == account.card_noticed:
        return None
    return expires - timedelta(days=policy.card_expiry_notice_days)


def card_expired(account: Account, now: datetime) -> bool:
    expires = card_expires(account)
    return expires is not None and expires <= now


def settlement_due(account: Account, now: datetime, *, owing: bool) -> datetime | None:
    """When the sweep goes on with a settlement that stopped at its charge limit
    (`Account.settle_again_at`): None when nothing is `owing`, or no card can be charged (none
    saved, hard-declined, expired), so an account that cannot pay is not swept for it again and
    again; while the account is paused, when the pause ends."""
    at = account.settle_again_at
    if at is None or not owing or account.card_token is None or account.retry_blocked:
        return None
    return None if card_expired(account, now) else due_from(at, account.pauses, now)
