"""Sending the emails decisions committed, at most once each (delivery reports: `shared/services/delivery_reports.py`).

One path, three table requests at most: the hand-off names an email outbox row; one query reads
the account, that row (as a typed `SendEmail`) and whether it is closed already; the email is
rendered and sent under its deterministic operation id; one transaction closes it (its `mail|`
record, its timeline row, the outbox row gone) without rewriting the account row. A twin (the
same hand-off delivered twice) sends under the same operation id, which the email service
recognises, and only the first close is kept. Only a refusal naming the recipient's address
changes the account (the contact shown unreachable), through a decision of its own.

Throttling is not failure (contract §4 "Email service quotas"). A send the email service throttles
(`MailThrottled`: 429, or 503 with `Retry-After`) is put back: a new hand-off, visible when the
service said, and this invocation ends well (so the queue's dequeue count is not used up, and no
worker sleeps through the wait). The throttle is for every instance, not this email alone: the
shared budget row's hold moves to the time the service named (`EmailBudget.back_off`), so no
instance sends before it (`shared/adapters/store/email_budget.py`, with or without a quota set).
With a quota set, every send first takes a slot of the shared budget; one in the future puts the
email back until then, the hand-off naming the slot, so it goes out then without asking again
(unless a hold this process knows of has overtaken the slot: it takes a new one).

Any other passing failure (`MailTransient`: a 5xx naming no wait, a timeout, the service
unreachable) is put back the same way, after a back-off that grows with how long the email has been
due (`shared.domain.mail_retry`), never by failing the invocation: the host's dequeue count would
give the email up after five quick tries. Every put-back carries the trace the invocation
continues (the hand-off's `traceparent` / `tracestate`, contract §6), so one failed payment stays
one trace across its retries. An email is given up only `EMAIL_GIVE_UP_AFTER_HOURS` after it was
due: the timeline says so, and the contact shows the alert `email_undelivered`
(`shared.domain.mail.email_undelivered`) until a later email reaches it.
"""

from __future__ import annotations

import json
import logging
import math
import random
from datetime import datetime, timedelta
from typing import Literal

from shared.adapters.mailer.protocol import Mailer, MailRejected, MailThrottled, MailTransient
from shared.adapters.store.account_store import OpenEmail
from shared.adapters.store.decision_rows import OutboxRow
from shared.adapters.store.email_budget import EmailBudget
from shared.domain.effects import SendEmail, UpdateIndex
from shared.domain.mail import (
    close_email,
    email_delivered_again,
    email_failed,
    email_undelivered,
    still_relevant,
    time_critical,
)
from shared.domain.mail_retry import transient_retry_in
from shared.domain.model import Account
from shared.notifications.compose import compose
from shared.services.unit_of_work import UnitOfWork, commit_decision
from shared.settings import Settings
from shared.telemetry import count_email, current_fields

log = logging.getLogger(__name__)
EmailOutcome = Literal["sent", "already_sent", "gone", "failed", "skipped", "throttled", "paced", "retrying"]
"""`throttled`: the email service asked us to wait, and the email was put back for that long (and
every instance holds off as long); `paced`: the budget's next slot (or the shared hold) is ahead,
and the email was put back until then; `retrying`: the service failed it for a passing reason, and
it was put back for a back-off."""
PutBack = Literal["throttled", "paced", "retrying"]


def send_email(uow: UnitOfWork, mailer: Mailer, settings: Settings, account_id: str, key: str, *,
               budget: EmailBudget | None = None, slot: datetime | None = None) -> EmailOutcome:
    """Send the email outbox row `key` of `account_id` once, and close it; with a `budget`, only in
    a slot of it (`slot`: the one the hand-off reserved). Throttled, paced or failed for a passing
    reason, the email is put back on the queue and the call returns: only storage trouble raises
    (the host then retries the hand-off)."""
    opened = uow.accounts.open_email(account_id, key)
    email = opened.email
    if email is None:
        return "gone"  # closed and tidied (or never written)
    if opened.closed:
        uow.accounts.delete_outbox([OutboxRow(account_id, key, "email", {})])  # closed by a decision: tidy
        return "already_sent"
    account = opened.account
    if not still_relevant(account, email):
        _close(uow, account, email, "skipped")
        return "skipped"
    if budget is not None:
        wait, keep = _budget_wait(budget, email, slot)
        if wait > timedelta(0):
            return _put_back(uow, settings, opened, email, wait, keep, "paced",
                             "still waiting for a slot of the email quota, or for the email service's hold")
    try:
        outgoing = compose(account, email, settings, uow.policy, uow.clock.now())
    except ValueError as exc:  # ours to fix (data gone, a date missing): never the customer's address
        _close(uow, account, email, "failed", reason=f"the email could not be written: {exc}")
        return "failed"
    try:
        operation = mailer.send(outgoing, operation_id=key)
    except MailThrottled as exc:
        wait, keep = _throttled_wait(budget, email, exc.retry_after)
        return _put_back(uow, settings, opened, email, wait, keep, "throttled", str(exc))
    except MailTransient as exc:  # not the service's quota: this email's own back-off
        now = uow.clock.now()
        wait = transient_retry_in(now - (opened.due_at or now), random.random())
        return _put_back(uow, settings, opened, email, wait, None, "retrying", str(exc))
    except MailRejected as exc:
        if exc.bad_address:
            _address_refused(uow, email, str(exc))
        else:
            _close(uow, account, email, "failed", reason=str(exc))
        return "failed"
    _close(uow, account, email, "sent", operation_id=operation)
    log.info("account %s: %s email sent to %s (operation %s)", account_id, email.kind, email.recipient, operation)
    if account.profile is not None and account.profile.undelivered:
        now = uow.clock.now()  # the contact's `email_undelivered` alert, if it shows one, clears
        commit_decision(uow, account_id, lambda snap: email_delivered_again(
            snap.account, email.recipient, now, uow.policy))
    return "sent"


def _budget_wait(budget: EmailBudget, email: SendEmail, slot: datetime | None) -> tuple[timedelta, datetime | None]:
    """How long the email must wait for the budget (zero: send now), and the slot to keep for it
    meanwhile (None: ask the budget again when it comes back). A slot reserved before is the
    email's own, never asked for again, unless a hold this process knows of (no request: see
    `EmailBudget.held_until`) overtook it: the service refused sends then, so it takes a new one."""
    now = budget.now()
    held = budget.held_until()
    if slot is not None and (held is None or slot >= held):
        return max(slot - now, timedelta(0)), slot
    taken = budget.reserve(critical=time_critical(email.kind))
    return taken.wait, taken.at if taken.reserved else None


def _throttled_wait(budget: EmailBudget | None, email: SendEmail,
                    retry_after: timedelta) -> tuple[timedelta, datetime | None]:
    """Every instance holds off until the time the service named (the shared row's hold), and this
    email takes its next turn after it: a slot of the quota, or the end of the hold. The row is
    best effort: if storage fails it here, the email still waits as the service said (its put-back
    must not be lost to it) and the other instances learn from their own 429."""
    if budget is None:
        return retry_after, None
    try:
        budget.back_off(budget.now() + retry_after)
        taken = budget.reserve(critical=time_critical(email.kind))
    except Exception:  # storage trouble: see above
        log.warning("the email budget's hold could not be moved; %s email to %s waits alone", email.kind,
                    email.recipient, exc_info=True)
        return retry_after, None
    return max(retry_after, taken.wait), taken.at if taken.reserved else None


def _put_back(uow: UnitOfWork, settings: Settings, opened: OpenEmail, email: SendEmail, wait: timedelta,
              slot: datetime | None, outcome: PutBack, why: str) -> EmailOutcome:
    """Hand the email off again, visible after `wait` (whole seconds, at least one: a queue's
    visibility is counted in seconds), or give it up once `EMAIL_GIVE_UP_AFTER_HOURS` have passed
    since it was due. The new hand-off carries the trace this invocation continues: the first
    hand-off's `traceparent` and `tracestate` (as they are without an exporter; with one, this
    invocation's span of the same trace), so the email's retries stay in its payment's trace."""
    now = uow.clock.now()
    due = opened.due_at or now
    if now - due >= settings.email_give_up_after:
        hours = settings.email_give_up_after.total_seconds() / 3600
        how = "failed by the email service again and again" if outcome == "retrying" else \
            "throttled by the email service"
        _undelivered(uow, email, f"{how} for {hours:g} hours after it was due ({why})")
        return "failed"
    seconds = max(1, math.ceil(wait.total_seconds()))
    body = {"accountId": email.account_id, "key": email.key, **({"slot": slot.isoformat()} if slot else {}),
            **current_fields()}  # the trace goes on with the email (contract §6)
    uow.queues.send("email-outbox", json.dumps(body), visible_in=timedelta(seconds=seconds))
    count_email(email.kind, "throttled") if outcome == "throttled" else None  # contract §6 `billing.emails`
    (log.warning if outcome == "retrying" else log.info)(
        "account %s: %s email to %s put back for %d s (%s): %s", email.account_id, email.kind, email.recipient,
        seconds, outcome, why)
    return outcome


def give_up_email(uow: UnitOfWork, account_id: str, key: str, reason: str, *, bad_address: bool = False) -> bool:
    """Close an email that will never go out (its sends kept failing, or, with `bad_address`, the
    email service refused its recipient's address); False if it was closed or gone already."""
    opened = uow.accounts.open_email(account_id, key)
    if opened.closed or opened.email is None:
        return False
    if bad_address:
        _address_refused(uow, opened.email, reason)
        return True
    _undelivered(uow, opened.email, reason)
    return True


def _close(uow: UnitOfWork, account: Account, email: SendEmail, outcome: Literal["sent", "skipped", "failed"], *,
           operation_id: str | None = None, reason: str = "") -> bool:
    now = uow.clock.now()
    closed = close_email(account, email, outcome, now, operation_id=operation_id, reason=reason)
    done = uow.accounts.close_email(account.account_id, closed.record, closed.entry, account.revision, now)
    count_email(email.kind, outcome) if done else None  # contract §6 `billing.emails`: closed here, once
    if done and closed.retention_due is not None:
        # The account's erasure may have waited for this email: back on the retention index now.
        uow.dispatcher.update_index(UpdateIndex(account.account_id, "retention", closed.retention_due, True,
                                               account.revision))
    return done


def _undelivered(uow: UnitOfWork, email: SendEmail, reason: str) -> None:
    """Give the email up without a fault of its address: closed by a decision that shows the
    contact's `email_undelivered` alert and says why on the timeline."""
    now = uow.clock.now()
    log.warning("account %s: %s email to %s given up: %s", email.account_id, email.kind, email.recipient, reason)
    count_email(email.kind, "failed")  # contract §6 `billing.emails`
    commit_decision(uow, email.account_id, lambda snap: email_undelivered(
        snap.account, email.key, email.kind, email.recipient, reason, now, uow.policy))


def _address_refused(uow: UnitOfWork, email: SendEmail, reason: str) -> None:
    """The email service refused the recipient's address: closed by a decision that also shows the
    contact as unreachable."""
    now = uow.clock.now()
    log.warning("account %s: %s email to %s refused for its address: %s", email.account_id, email.kind,
                email.recipient, reason)
    count_email(email.kind, "failed")  # contract §6 `billing.emails`
    commit_decision(uow, email.account_id, lambda snap: email_failed(
        snap.account, email.key, email.kind, email.recipient, reason, now, uow.policy, bad_address=True))
