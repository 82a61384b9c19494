"""When each escalation of contract §3 falls for a subscription: pure date arithmetic on the policy."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from shared.domain.model import Subscription, SubscriptionState
from shared.domain.policy import DunningPolicy


def disable_at(sub: Subscription, policy: DunningPolicy) -> datetime | None:
    if sub.state is not SubscriptionState.PAST_DUE or sub.past_due_since is None:
        return None
    return sub.past_due_since + timedelta(days=policy.disable_day)


def cancel_at(sub: Subscription, policy: DunningPolicy) -> datetime | None:
    if sub.state not in (SubscriptionState.PAST_DUE, SubscriptionState.DISABLED) or sub.past_due_since is None:
        return None
    return sub.past_due_since + timedelta(days=policy.cancel_day)


def delete_at(sub: Subscription, policy: DunningPolicy) -> datetime | None:
    """The data deletion date: set at cancellation and unmoved by payments (a legal hold stops it)."""
    if sub.legal_hold:
        return None
    if sub.state is SubscriptionState.CANCELED and sub.canceled_at is not None:
        return sub.canceled_at + timedelta(days=policy.delete_after_cancel_days)
    base = cancel_at(sub, policy)
    return None if base is None else base + timedelta(days=policy.delete_after_cancel_days)


@dataclass(frozen=True)
class Step:
    """One rung of the dunning ladder for one subscription's past-due episode."""

    name: str
    at: datetime
    kind: StepKind


StepKind = Literal["retry", "payment_reminder", "disable_warning", "disable", "cancel", "deletion_warning", "delete"]


def steps_for(sub: Subscription, policy: DunningPolicy) -> list[Step]:
    """Contract §3, days counted from `pastDueSince`. What happens after cancellation (deletion
    warnings, data deletion) belongs to the retention sweep."""
    since = sub.past_due_since
    if since is None or sub.state not in (SubscriptionState.PAST_DUE, SubscriptionState.DISABLED):
        return []

    def day(n: int) -> datetime:
        return since + timedelta(days=n)

    steps = [Step(f"cancel-{policy.cancel_day}", day(policy.cancel_day), "cancel")]
    if sub.state is SubscriptionState.PAST_DUE:
        steps += [Step(f"retry-{d}", day(d), "retry") for d in policy.retry_days]
        steps += [Step(f"reminder-{d}", day(d), "payment_reminder") for d in policy.reminder_days]
        steps.append(Step(f"disable-warning-{policy.disable_warning_day}", day(policy.disable_warning_day),
                          "disable_warning"))
        steps.append(Step(f"disable-{policy.disable_day}", day(policy.disable_day), "disable"))
    return sorted(steps, key=lambda s: (s.at, s.name))


def retention_steps(sub: Subscription, policy: DunningPolicy) -> list[Step]:
    """After cancellation: deletion warnings, then the deletion of the subscription's customer data.
    A legal hold stops the ladder; lifting it resumes where it stands."""
    if sub.state is not SubscriptionState.CANCELED or sub.canceled_at is None or sub.legal_hold:
        return []
    canceled = sub.canceled_at
    steps = [Step(f"deletion-warning-{d}", canceled + timedelta(days=d), "deletion_warning")
             for d in policy.deletion_warning_days]
    steps.append(Step(f"delete-{policy.delete_after_cancel_days}",
                      canceled + timedelta(days=policy.delete_after_cancel_days), "delete"))
    return sorted(steps, key=lambda s: (s.at, s.name))


def next_due(subs: Iterable[Subscription], policy: DunningPolicy) -> datetime | None:
    pending = [s.at for sub in subs for s in steps_for(sub, policy) if s.name not in sub.steps_done]
    return min(pending, default=None)


def next_retention(subs: Iterable[Subscription], policy: DunningPolicy) -> datetime | None:
    pending = [s.at for sub in subs for s in retention_steps(sub, policy) if s.name not in sub.steps_done]
    return min(pending, default=None)
