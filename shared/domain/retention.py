"""Retention after cancellation (contract §3): deletion warnings 30, 7 and 1 days before, then the
subscription's customer data is deleted; once no subscription is left, the account's own customer
data (profile, contacts, payment-method summary) is erased. Charges, payments and the timeline
are financial records and stay.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from shared.domain import schedule
from shared.domain.decision import Decision, Work, email_contacts
from shared.domain.effects import EmitLifecycleEvent
from shared.domain.model import Account, Subscription, SubscriptionState
from shared.domain.policy import DunningPolicy

REDACTED = "[deleted]"


def advance_retention(account: Account, now: datetime, policy: DunningPolicy) -> tuple[Decision, bool]:
    """The retention sweep's decision for one account, and whether its profile is now due for erasure."""
    work = Work(account, {}, now, occasion=f"retention-{account.revision + 1}")
    for sub_id in sorted(work.subs):
        sub = work.subs[sub_id]
        due = [s for s in schedule.retention_steps(sub, policy) if s.at <= now and s.name not in sub.steps_done]
        if due:
            work.subs[sub_id] = _take_steps(work, sub, due, policy)
    decision = work.finish(policy)
    erase_at = decision.account.erasure_due_at()
    return decision, erase_at is not None and erase_at <= now


def _take_steps(work: Work, sub: Subscription, due: list[schedule.Step], policy: DunningPolicy) -> Subscription:
    delete_at = schedule.delete_at(sub, policy)
    occasion = f"{sub.subscription_id}@canceled-{sub.canceled_at.isoformat() if sub.canceled_at else ''}"
    new = replace(sub, steps_done=sub.steps_done | {s.name for s in due})
    deletion = next((s for s in due if s.kind == "delete"), None)
    if deletion is not None:
        # The confirmation names the subscription, so its name travels with the email's facts.
        email_contacts(work, "data_deleted", f"{occasion}|deleted", (sub.subscription_id,),
                       {"deleteAt": deletion.at.isoformat(), "names": {sub.subscription_id: sub.name}})
        work.effects.append(EmitLifecycleEvent(work.account.account_id, sub.subscription_id,
                                               "subscription.data_deleted", "retention_period_ended", deletion.at,
                                               occasion))
        work.log("state_changed", f"{sub.state} → deleted: customer data of the subscription deleted",
                 sub.subscription_id)
        return replace(new, state=SubscriptionState.DELETED, deleted_at=deletion.at, name=REDACTED)
    latest = due[-1]
    days_left = (delete_at - latest.at).days if delete_at else 0
    email_contacts(work, "deletion_warning", f"{occasion}|{latest.name}", (sub.subscription_id,),
                   {"deleteAt": delete_at.isoformat() if delete_at else "", "daysLeft": days_left})
    if len(due) > 1:
        work.log("notices_skipped", f"late sweep: {', '.join(s.name for s in due[:-1])} superseded by {latest.name}",
                 sub.subscription_id)
    return new


def erase_profile(account: Account, now: datetime, policy: DunningPolicy) -> Decision:
    """The last step: the account keeps only its financial records."""
    if account.profile is None:
        return Decision(account)
    work = Work(account, {}, now, occasion=f"erase-{account.revision + 1}")
    work.account = replace(account, profile=None)  # its contacts leave the address index too
    work.log("customer_data_deleted", "customer data deleted (profile, billing contacts, payment method); "
                                      "charges, payments and the timeline are kept as financial records")
    return work.finish(policy)


def set_legal_hold(account: Account, subscription_id: str, hold: bool, now: datetime,
                   policy: DunningPolicy) -> Decision:
    """An operator's legal hold stops the deletion date; lifting it lets retention resume."""
    sub = account.subscriptions.get(subscription_id)
    if sub is None or sub.legal_hold == hold:
        return Decision(account)
    work = Work(account.with_subscription(replace(sub, legal_hold=hold)), {}, now,
                occasion=f"hold-{account.revision + 1}")
    work.log("legal_hold", "legal hold placed: data deletion suspended" if hold else "legal hold lifted",
             subscription_id)
    return work.finish(policy)
