"""What email sends and delivery reports change: the timeline, the outbox row, and whether a
billing contact is reachable (the source document's "not getting billing emails?")."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from shared.domain.decision import Decision, MailRecord, Work
from shared.domain.effects import SendEmail, TimelineEntry, UpdateIndex
from shared.domain.mailbox import same_mailbox
from shared.domain.model import Account
from shared.domain.policy import DunningPolicy

FAILED_DELIVERY = frozenset({"Bounced", "Suppressed", "Failed", "Quarantined"})  # contract §4
REPORT_CLOCK_SKEW = timedelta(minutes=5)  # how far ahead of our clock a report's own clock may run


@dataclass(frozen=True)
class EmailClosed:
    """An email closed without a decision on the account (its state does not change): the record
    and the timeline entry to write beside it, and when to put the account back on the retention
    index (`retention_due`), if its erasure was waiting for this email."""

    record: MailRecord
    entry: TimelineEntry
    retention_due: datetime | None


def close_email(account: Account, email: SendEmail, outcome: Literal["sent", "skipped", "failed"], now: datetime,
                *, operation_id: str | None = None, reason: str = "") -> EmailClosed:
    """Close `email` as sent (under `operation_id`), skipped (resolved before it went out) or failed
    (`reason`, never about the recipient's address: that one is `email_failed(..., bad_address=True)`,
    which changes the account). Contract §3: if the account's erasure is due, it may have been
    waiting for this email, so it goes back on the retention index at once."""
    detail = {
        "sent": f"{email.kind} email sent to {email.recipient} (operation {operation_id})",
        "skipped": f"{email.kind} email to {email.recipient} not sent: resolved before it went out",
        "failed": f"{email.kind} email to {email.recipient} could not be sent: {reason}",
    }[outcome]
    record = MailRecord(email.key, outcome, email.recipient, email.kind, operation_id or email.key,
                        reason if outcome == "failed" else "")
    erase_at = account.erasure_due_at()
    return EmailClosed(record, TimelineEntry(now, f"email_{outcome}", detail),
                       now if erase_at is not None and erase_at <= now else None)


def still_relevant(account: Account, email: SendEmail) -> bool:
    """Emails leave in parallel, so one can be overtaken by events: a failure notice for a charge
    that was paid in the meantime would only confuse the customer, and is not sent."""
    if email.kind == "payment_failed":
        return str(email.facts.get("chargeId")) in account.outstanding
    return True


def email_failed(account: Account, key: str, kind: str, recipient: str, reason: str, now: datetime,
                 policy: DunningPolicy, *, bad_address: bool = False) -> Decision:
    """A send that will never succeed, recorded on the timeline. The contact is shown as
    unreachable only when the refusal was about its address: a rendering problem, an outage that
    outlasted the retries or refused content are ours, not the customer's mailbox."""
    work = Work(_unreachable(account, recipient, now) if bad_address else account, {}, now, occasion=key)
    work.log("email_failed", f"{kind} email to {recipient} could not be sent: {reason}")
    work.mail.append(MailRecord(key, "failed", recipient, kind, key, reason))
    return _closed(work, policy)


ROUTINE_KINDS = frozenset({"payment_reminder", "payment_settled", "contact_changed"})
"""Emails that may wait behind the others when the email service's quota is short: reminders of
what an earlier email said, receipts, notices of a change the customer made. Every other kind
(payment failed, disable and deletion warnings, disabled, canceled, data deleted, card notices,
and any kind added later) tells of something with a date attached, and goes first."""


def time_critical(kind: str) -> bool:
    """Whether an email of `kind` goes before routine ones under a backlog (`ROUTINE_KINDS`)."""
    return kind not in ROUTINE_KINDS


def email_undelivered(account: Account, key: str, kind: str, recipient: str, reason: str, now: datetime,
                      policy: DunningPolicy) -> Decision:
    """An email given up without a fault of its address (throttled longer than the give-up time
    after it was due, or failing until its retries ran out): the timeline says why
    (`email_failed`), and the contact shows the alert `email_undelivered` until a later email to it
    is sent (`email_delivered_again`). Never marks the contact unreachable."""
    profile = account.profile
    contact = _contact(account, recipient)
    if profile is not None and contact is not None:
        account = replace(account, profile=replace(profile, undelivered={**profile.undelivered, contact: now}))
    work = Work(account, {}, now, occasion=key)
    work.touched = True
    work.log("email_failed", f"{kind} email to {recipient} could not be sent: {reason}")
    work.mail.append(MailRecord(key, "failed", recipient, kind, key, reason))
    return _closed(work, policy)


def email_delivered_again(account: Account, recipient: str, now: datetime, policy: DunningPolicy) -> Decision:
    """An email reached `recipient` (ACS accepted it): the contact's `email_undelivered` alert
    clears. No change when the contact shows none."""
    profile = account.profile
    contact = _contact(account, recipient)
    if profile is None or contact is None or contact not in profile.undelivered:
        return Decision(account)
    work = Work(replace(account, profile=replace(profile, undelivered={
        c: t for c, t in profile.undelivered.items() if c != contact})), {}, now, occasion=f"sent|{contact}")
    work.touched = True
    return work.finish(policy)


def _closed(work: Work, policy: DunningPolicy) -> Decision:
    """An email is closed (sent, skipped or given up). If the account's erasure is due it may have
    been waiting for this email (contract §3: the deletion confirmation reaches the contacts before
    their addresses go): put the account back on the retention index at once, so the next sweep
    erases it (or finds another email still out, and waits for that one's close)."""
    erase_at = work.account.erasure_due_at()
    if erase_at is not None and erase_at <= work.now:
        work.effects.append(UpdateIndex(work.account.account_id, "retention", work.now, True,
                                        work.account.revision + 1))
    return work.finish(policy)


def delivery_reported(account: Account, recipient: str, status: str, at: datetime, detail: str, now: datetime,
                      policy: DunningPolicy) -> Decision:
    """Contract §4: a `Bounced`, `Suppressed`, `Failed` or `Quarantined` report marks that address
    unreachable, a `Delivered` one clears it, whatever message it is about. The newest attempt
    wins: a report older than the last one applied for the address changes nothing. Other
    statuses (`FilteredSpam`: the content was filtered, the mailbox is fine) change nothing.
    A report time later than `now` plus `REPORT_CLOCK_SKEW` (year 9999, a sender's broken clock)
    is taken as `now`, and a kept time that far ahead (stored before this rule) counts as none,
    so no report can outrank every later one."""
    profile = account.profile
    contact = _contact(account, recipient)
    if profile is None or contact is None or (status not in FAILED_DELIVERY and status != "Delivered"):
        return Decision(account)  # a former contact, data already deleted, or nothing about the mailbox
    at = _report_time(at, now)
    last = profile.reported.get(contact)
    if last is not None and at <= last <= now + REPORT_CLOCK_SKEW:
        return Decision(account)
    work = Work(account, {}, now, occasion=f"report|{contact}|{at.isoformat()}")
    work.touched = True
    unreachable = dict(profile.unreachable)
    if status == "Delivered":
        if unreachable.pop(contact, None) is not None:
            work.log("contact_reachable", f"mail to {contact} was delivered again")
    elif contact not in unreachable:
        unreachable[contact] = at
        work.log("contact_unreachable", f"mail to {contact} was not delivered: {status}"
                                        + (f" ({detail})" if detail else ""))
    work.account = replace(account, profile=replace(profile, unreachable=unreachable,
                                                    reported={**profile.reported, contact: at}))
    return work.finish(policy)


def _report_time(at: datetime, now: datetime) -> datetime:
    """When a report counts as made: its own time, or `now` when that is beyond `now` plus the
    allowed clock skew (a time no report can truly have yet)."""
    return now if at > now + REPORT_CLOCK_SKEW else at


def _contact(account: Account, recipient: str) -> str | None:
    """The billing contact that is `recipient`'s mailbox, as the account spells it."""
    profile = account.profile
    if profile is None:
        return None
    return next((c for c in profile.billing_contacts if same_mailbox(c, recipient)), None)


def _unreachable(account: Account, recipient: str, at: datetime) -> Account:
    profile = account.profile
    contact = _contact(account, recipient)
    if profile is None or contact is None:
        return account
    return replace(account, profile=replace(profile, unreachable={**profile.unreachable, contact: at}))
