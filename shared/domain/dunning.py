"""The time-driven part of the lifecycle (contract §3): what the dunning sweep does at `now`.

`advance` lands each subscription on the step that is due, however late the sweep runs: every
due step is marked done once per episode, state transitions happen with their own dates, and only
the latest notice is mailed, so a sweep after downtime sends no storm of stale reminders.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from shared.domain import schedule
from shared.domain.decision import Decision, Work, email_contacts
from shared.domain.effects import EmitLifecycleEvent
from shared.domain.model import Account, Subscription, SubscriptionState
from shared.domain.policy import DunningPolicy
from shared.domain.schedule import Step
from shared.inbound.rfc3339 import format_rfc3339


def advance(account: Account, now: datetime, policy: DunningPolicy) -> tuple[Decision, bool]:
    """The sweep's decision for one account, and whether an automatic card retry is due.

    While the account's dunning is paused (contract §3), no step from day 1 to day 90 is taken;
    the days count only unpaused time (`schedule.at_unpaused`), so a step falls due after the
    pause, once. The end of a pause is recorded when the sweep first sees it."""
    work = Work(account, {}, now, occasion=f"sweep-{account.revision + 1}")
    record_pause_end(work)
    notice_expiring_card(work, policy)
    retry = False
    pauses = account.pauses
    if schedule.paused_at(pauses, now) is None:
        for sub_id in sorted(work.subs):
            sub = work.subs[sub_id]
            due = [s for s in schedule.steps_for(sub, policy, pauses) if s.at <= now and s.name not in sub.steps_done]
            if not due:
                continue
            work.subs[sub_id] = _take_steps(work, sub, due, policy)
            retry = retry or (any(s.kind == "retry" for s in due)
                              and work.subs[sub_id].state is SubscriptionState.PAST_DUE)
        again = schedule.settlement_due(account, now, owing=bool(account.outstanding))
        retry = retry or (again is not None and again <= now)  # a settlement stopped at its charge limit goes on
    expired = schedule.card_expired(account, now)
    if retry and (account.retry_blocked or account.card_token is None or expired):
        work.log("retry_skipped", "automatic retry skipped: " + (
            "the bank asks the customer to authenticate a charge; waiting for them or a new card"
            if account.retry_blocked and account.awaiting
            else "the saved card was declined for good; waiting for a new card" if account.retry_blocked
            else "no card on file" if account.card_token is None
            else "the saved card has expired; waiting for a new card"))
        retry = False
    return work.finish(policy), retry


def record_pause_end(work: Work) -> None:
    """A pause that ran to its `pausedUntil` is recorded as ended (the timeline's resume)."""
    until = work.account.paused_until
    if until is not None and until <= work.now:
        work.account = replace(work.account, paused_until=None)
        work.log("dunning_resumed", f"dunning resumed: the pause ended at {format_rfc3339(until)}")


def notice_expiring_card(work: Work, policy: DunningPolicy) -> None:
    """Pre-dunning (contract §3): the `card_expiring` email, once per saved card, when its notice
    is due and the card has not expired yet."""
    account = work.account
    at = schedule.card_notice_at(account, policy)
    card, expires = account.card, schedule.card_expires(account)
    if at is None or at > work.now or card is None or expires is None:
        return
    work.account = replace(account, card_noticed=account.card_key)
    name = f"card {card.brand or ''} ending {card.last4 or '?'} (expires {card.exp_month:02d}/{card.exp_year})"
    if expires <= work.now:
        work.log("card_expired", f"{name} has expired; no notice sent ahead of it")
        return
    email_contacts(work, "card_expiring", f"card-{account.card_key}", (),
                   {"expiresAt": expires.isoformat(), "brand": card.brand or "", "last4": card.last4 or "",
                    "expMonth": card.exp_month, "expYear": card.exp_year})
    work.log("card_expiring", f"{name}: the billing contacts are told to save a new card")


def _take_steps(work: Work, sub: Subscription, due: list[Step], policy: DunningPolicy) -> Subscription:
    done = sub.steps_done | {s.name for s in due}
    by_kind = {s.kind: s for s in due}
    episode = f"{sub.subscription_id}@episode-{sub.episode}"
    new = replace(sub, steps_done=done)
    if "disable" in by_kind or ("cancel" in by_kind and sub.state is SubscriptionState.PAST_DUE):
        at = by_kind["disable"].at if "disable" in by_kind else sub.past_due_since or work.now
        new = _transition(work, new, SubscriptionState.DISABLED, "subscription.disabled", at, episode)
        new = replace(new, disabled_at=at)
    if "cancel" in by_kind:
        at = by_kind["cancel"].at
        new = _transition(work, new, SubscriptionState.CANCELED, "subscription.canceled", at, episode)
        new = replace(new, canceled_at=at)
        delete = schedule.delete_at(new, policy, work.account.pauses)
        email_contacts(work, "service_canceled", f"{episode}|cancel", (sub.subscription_id,),
                       {"deleteAt": delete.isoformat() if delete else ""})
    elif "disable" in by_kind:
        pauses = work.account.pauses
        cancel = schedule.cancel_at(new, policy, pauses)
        email_contacts(work, "service_disabled", f"{episode}|disable", (sub.subscription_id,),
                       {"cancelAt": cancel.isoformat() if cancel else "",
                        "deleteAt": d.isoformat() if (d := schedule.delete_at(new, policy, pauses)) else ""})
    else:
        _send_latest_notice(work, new, [s for s in due if s.kind in ("payment_reminder", "disable_warning")],
                            policy, episode)
    work.log("dunning_steps", f"steps taken: {', '.join(s.name for s in due)}", sub.subscription_id)
    return new


def _send_latest_notice(work: Work, sub: Subscription, notices: list[Step], policy: DunningPolicy,
                        episode: str) -> None:
    """One notice of those due: the latest, and of notices due at the same time the disable
    warning (it says the services stop; a reminder falling on its day says less). The others are
    logged as superseded, never sent all at once."""
    if not notices:
        return
    latest = max(notices, key=lambda s: (s.at, s.kind == "disable_warning"))
    disable = schedule.disable_at(sub, policy, work.account.pauses)
    email_contacts(work, latest.kind, f"{episode}|{latest.name}", (sub.subscription_id,),  # type: ignore[arg-type]
                   {"disableAt": disable.isoformat() if disable else ""})
    skipped = [s for s in notices if s is not latest]
    if skipped:
        why = "late sweep" if any(s.at < latest.at for s in skipped) else "due at the same time"
        work.log("notices_skipped", f"{why}: {', '.join(s.name for s in skipped)} superseded by {latest.name}",
                 sub.subscription_id)


def _transition(work: Work, sub: Subscription, to: SubscriptionState, event: str, at: datetime,
                episode: str) -> Subscription:
    work.effects.append(EmitLifecycleEvent(work.account.account_id, sub.subscription_id, event,  # type: ignore[arg-type]
                                           "balance_past_due", at, f"{episode}|{to}"))
    work.log("state_changed", f"{sub.state} → {to}", sub.subscription_id)
    return replace(sub, state=to)
