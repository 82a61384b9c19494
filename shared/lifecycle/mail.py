"""What email sends and delivery reports change: the timeline, the outbox row, and whether a
billing contact is reachable (the source document's "not getting billing emails?")."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from shared.lifecycle.model import Account
from shared.lifecycle.work import Decision, MailRecord, Work
from shared.policy import DunningPolicy

FAILED_DELIVERY = frozenset({"Bounced", "Suppressed", "Failed", "Quarantined", "FilteredSpam"})


def email_sent(account: Account, key: str, kind: str, recipient: str, operation_id: str, now: datetime,
               policy: DunningPolicy) -> Decision:
    work = Work(account, {}, now, occasion=key)
    work.log("email_sent", f"{kind} email sent to {recipient} (operation {operation_id})")
    work.mail.append(MailRecord(key, "sent", recipient, kind, operation_id))
    return work.finish(policy)


def still_relevant(account: Account, kind: str, facts: dict[str, Any]) -> bool:
    """Emails leave in parallel, so one can be overtaken by events: a failure notice for a charge
    that was paid in the meantime would only confuse the customer, and is not sent."""
    if kind == "payment_failed":
        return str(facts.get("chargeId")) in account.outstanding
    return True


def email_skipped(account: Account, key: str, kind: str, recipient: str, now: datetime,
                  policy: DunningPolicy) -> Decision:
    work = Work(account, {}, now, occasion=key)
    work.log("email_skipped", f"{kind} email to {recipient} not sent: resolved before it went out")
    work.mail.append(MailRecord(key, "skipped", recipient, kind, key))
    return work.finish(policy)


def email_failed(account: Account, key: str, kind: str, recipient: str, reason: str, now: datetime,
                 policy: DunningPolicy, *, bad_address: bool = False) -> Decision:
    """A send that will never succeed, recorded on the timeline. The contact is shown as
    unreachable only when the refusal was about its address: a rendering problem, an outage that
    outlasted the retries or refused content are ours, not the customer's mailbox."""
    work = Work(_unreachable(account, recipient, now) if bad_address else account, {}, now, occasion=key)
    work.log("email_failed", f"{kind} email to {recipient} could not be sent: {reason}")
    work.mail.append(MailRecord(key, "failed", recipient, kind, key, reason))
    return work.finish(policy)


def delivery_reported(account: Account, recipient: str, status: str, at: datetime, detail: str, now: datetime,
                      policy: DunningPolicy) -> Decision:
    """A failed delivery marks the contact unreachable; a later `Delivered` clears it."""
    work = Work(account, {}, now, occasion=f"report|{recipient}|{at.isoformat()}")
    profile = account.profile
    if profile is None or recipient.lower() not in {c.lower() for c in profile.billing_contacts}:
        return Decision(account)  # a former contact, or data already deleted: nothing to mark
    since = _since(account, recipient)
    if status in FAILED_DELIVERY:
        if since is not None and since >= at:
            return Decision(account)
        work.account = _unreachable(account, recipient, at)
        work.log("contact_unreachable", f"mail to {recipient} was not delivered: {status}"
                                        + (f" ({detail})" if detail else ""))
    elif status == "Delivered":
        if since is None or since > at:
            return Decision(account)
        work.account = replace(account, profile=replace(profile, unreachable={
            c: t for c, t in profile.unreachable.items() if c.lower() != recipient.lower()}))
        work.log("contact_reachable", f"mail to {recipient} was delivered again")
    else:
        return Decision(account)
    return work.finish(policy)


def _since(account: Account, recipient: str) -> datetime | None:
    profile = account.profile
    if profile is None:
        return None
    return next((t for c, t in profile.unreachable.items() if c.lower() == recipient.lower()), None)


def _unreachable(account: Account, recipient: str, at: datetime) -> Account:
    profile = account.profile
    if profile is None:
        return account
    contact = next((c for c in profile.billing_contacts if c.lower() == recipient.lower()), None)
    if contact is None:
        return account
    return replace(account, profile=replace(profile, unreachable={**profile.unreachable, contact: at}))
