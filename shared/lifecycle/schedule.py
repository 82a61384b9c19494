"""When each escalation of contract §3 falls for a subscription: pure date arithmetic on the policy."""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.lifecycle.model import Subscription, SubscriptionState
from shared.policy import DunningPolicy


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
