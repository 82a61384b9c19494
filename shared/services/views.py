"""The account view of contract §2: a pure projection of the account at `now`.

Alerts are derived from the state, not stored beside it, so an alert clears the moment the
state that raised it is gone (a settled balance, a reachable contact).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain import schedule
from shared.domain.model import Account, Subscription, SubscriptionState
from shared.domain.money import Money, totals
from shared.domain.policy import DunningPolicy
from shared.inbound.rfc3339 import format_rfc3339
from shared.notifications.alerts import AlertCode, AlertParams, alert_message


def _iso(at: datetime | None) -> str | None:
    return format_rfc3339(at) if at else None


def _amounts(monies: list[Money]) -> dict[str, str]:
    return {cur: m.to_str() for cur, m in totals(monies).items()}


def subscription_view(account: Account, sub: Subscription, policy: DunningPolicy,
                      now: datetime | None = None) -> dict[str, Any]:
    """`disableAt`, `cancelAt`, `deleteAt` and `nextReminderAt` count only unpaused days (§3) and
    follow the policy the subscription's episode began under (`policyVersion`, whose values the
    account's `dunning.policies` lists)."""
    pauses = account.pauses
    return {
        "id": sub.subscription_id,
        "name": sub.name,
        "state": str(sub.state),
        "pastDueSince": _iso(sub.past_due_since),
        "disableAt": _iso(schedule.disable_at(sub, policy, pauses)),
        "cancelAt": _iso(schedule.cancel_at(sub, policy, pauses)),
        "deleteAt": _iso(schedule.delete_at(sub, policy, pauses)),
        "nextReminderAt": _iso(schedule.next_step_at(sub, policy, pauses, ("payment_reminder", "disable_warning"),
                                                     now)),
        "outstanding": _amounts([c.remaining for c in account.outstanding_of(sub.subscription_id)]),
        "legalHold": sub.legal_hold,
        "policyVersion": schedule.effective_policy(sub, policy).version,
    }


def dunning_view(account: Account, policy: DunningPolicy, now: datetime) -> dict[str, Any]:
    """Contract §2 `dunning`: `pausedUntil` (null when not paused), and what explains the dates:
    the paused intervals that still move them, the current settings' `policyVersion`, and the
    values of every policy version the account's subscriptions follow."""
    current = schedule.paused_at(account.pauses, now)
    versions = {policy.version: policy.schedule_values()}
    versions |= {p.version: p.schedule_values() for s in account.subscriptions.values() if (p := s.policy)}
    return {
        "pausedUntil": _iso(current[1]) if current else None,
        "pauses": [{"from": _iso(a), "to": _iso(b)} for a, b in account.pauses],
        "policyVersion": policy.version,
        "policies": dict(sorted(versions.items())),
    }


def account_view(account: Account, policy: DunningPolicy, now: datetime | None = None) -> dict[str, Any]:
    """`now`: the clock's instant (whether a pause runs, whether the card has expired); the system
    clock when not given."""
    now = now or datetime.now(UTC)
    profile = account.profile
    pm = profile.payment_method if profile else None
    method: dict[str, Any] | None = None
    if pm is not None:
        method = {"type": pm.type}
        if pm.type == "card":
            method |= {"brand": pm.brand, "last4": pm.last4, "expMonth": pm.exp_month, "expYear": pm.exp_year}
    subs = sorted(account.subscriptions.values(), key=lambda s: s.subscription_id)
    return {
        "accountId": account.account_id,
        "registered": account.registered,
        "displayName": profile.display_name if profile else None,
        "locale": profile.locale if profile else "en",
        "billingContacts": list(profile.billing_contacts) if profile else [],
        "paymentMethod": method,
        "balance": {cur: m.to_str() for cur, m in sorted(account.balance().items())},
        "credit": {cur: m.to_str() for cur, m in account.credit_money().items()},
        "subscriptions": [subscription_view(account, s, policy, now) for s in subs],
        "dunning": dunning_view(account, policy, now),
        "alerts": alerts(account, policy, now),
    }


def alerts(account: Account, policy: DunningPolicy, now: datetime | None = None) -> list[dict[str, Any]]:
    locale = account.profile.locale if account.profile else "en"
    found: list[dict[str, Any]] = []

    def add(code: AlertCode, severity: str, since: datetime | None, params: AlertParams) -> None:
        found.append({"code": code, "severity": severity, "since": _iso(since),
                      "message": alert_message(code, locale, params)})

    balance = tuple(m for _, m in sorted(account.balance().items()))
    by_state: dict[SubscriptionState, list[Subscription]] = {}
    for sub in account.subscriptions.values():
        by_state.setdefault(sub.state, []).append(sub)
    if past_due := by_state.get(SubscriptionState.PAST_DUE):
        first = min(past_due, key=lambda s: s.past_due_since or datetime.max)
        add("payment_failed", "error", first.past_due_since, AlertParams(
            balance=balance, disable_at=schedule.disable_at(first, policy, account.pauses),
            subscriptions=tuple(s.name for s in past_due)))
    owing = [*by_state.get(SubscriptionState.PAST_DUE, []), *by_state.get(SubscriptionState.DISABLED, [])]
    pm = account.profile.payment_method if account.profile else None
    if owing and pm is not None and pm.type == "card" and account.retry_blocked:
        # The saved card was refused for good: retries stopped, only a new card helps.
        first = min(owing, key=lambda s: s.past_due_since or datetime.max)
        add("payment_method_required", "error", first.past_due_since, AlertParams(
            balance=balance, disable_at=schedule.disable_at(first, policy, account.pauses)))
    if disabled := by_state.get(SubscriptionState.DISABLED):
        first = min(disabled, key=lambda s: s.disabled_at or datetime.max)
        add("service_disabled", "error", first.disabled_at, AlertParams(
            balance=balance, delete_at=schedule.delete_at(first, policy, account.pauses),
            subscriptions=tuple(s.name for s in disabled)))
    if canceled := by_state.get(SubscriptionState.CANCELED):
        first = min(canceled, key=lambda s: s.canceled_at or datetime.max)
        add("service_canceled", "warning", first.canceled_at, AlertParams(
            delete_at=schedule.delete_at(first, policy, account.pauses), subscriptions=tuple(s.name for s in canceled)))
    expires = schedule.card_expires(account)
    card = account.card
    if expires is not None and card is not None and now is not None:
        # the card's last valid day, as the alert names it
        named = AlertParams(card=f"{card.brand or ''} {card.last4 or ''}".strip() or None,
                            expires_at=expires - timedelta(microseconds=1))
        if now >= expires:
            add("card_expired", "error", expires, named)
        elif now >= expires - timedelta(days=policy.card_expiry_notice_days):
            add("card_expiring", "warning", expires - timedelta(days=policy.card_expiry_notice_days), named)
    if account.profile is not None:
        for contact, since in sorted(account.profile.unreachable.items()):
            add("contact_unreachable", "warning", since, AlertParams(contact=contact))
        for contact, since in sorted(account.profile.undelivered.items()):
            add("email_undelivered", "warning", since, AlertParams(contact=contact))
    return found
