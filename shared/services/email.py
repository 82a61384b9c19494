"""Sending the emails decisions committed, at most once each (delivery reports: `shared/services/delivery_reports.py`).

One path, three table requests at most: the hand-off names an email outbox row; one query reads
the account, that row (as a typed `SendEmail`) and whether it is closed already; the email is
rendered and sent under its deterministic operation id; one transaction closes it (its `mail|`
record, its timeline row, the outbox row gone) without rewriting the account row. A twin (the
same hand-off delivered twice) sends under the same operation id, which the email service
recognises, and only the first close is kept. Only a refusal naming the recipient's address
changes the account (the contact shown unreachable), through a decision of its own.
"""

from __future__ import annotations

import logging
from typing import Literal

from shared.adapters.mailer.protocol import Mailer, MailRejected
from shared.adapters.store.decision_rows import OutboxRow
from shared.domain.effects import SendEmail, UpdateIndex
from shared.domain.mail import close_email, email_failed, still_relevant
from shared.domain.model import Account
from shared.notifications.compose import compose
from shared.services.unit_of_work import UnitOfWork, commit_decision
from shared.settings import Settings

log = logging.getLogger(__name__)
EmailOutcome = Literal["sent", "already_sent", "gone", "failed", "skipped"]


def send_email(uow: UnitOfWork, mailer: Mailer, settings: Settings, account_id: str, key: str) -> EmailOutcome:
    """Send the email outbox row `key` of `account_id` once, and close it. Raises `MailTransient`
    when the email service cannot take it now (the hand-off is retried)."""
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
    try:
        outgoing = compose(account, email, settings, uow.policy, uow.clock.now())
    except ValueError as exc:  # ours to fix (data gone, a date missing): never the customer's address
        _close(uow, account, email, "failed", reason=f"the email could not be written: {exc}")
        return "failed"
    try:
        operation = mailer.send(outgoing, operation_id=key)
    except MailRejected as exc:
        if exc.bad_address:
            _address_refused(uow, email, str(exc))
        else:
            _close(uow, account, email, "failed", reason=str(exc))
        return "failed"
    _close(uow, account, email, "sent", operation_id=operation)
    log.info("account %s: %s email sent to %s (operation %s)", account_id, email.kind, email.recipient, operation)
    return "sent"


def give_up_email(uow: UnitOfWork, account_id: str, key: str, reason: str, *, bad_address: bool = False) -> bool:
    """Close an email that will never go out (its sends kept failing, or, with `bad_address`, the
    email service refused its recipient's address); False if it was closed or gone already."""
    opened = uow.accounts.open_email(account_id, key)
    if opened.closed or opened.email is None:
        return False
    if bad_address:
        _address_refused(uow, opened.email, reason)
        return True
    log.warning("account %s: %s email to %s given up: %s", account_id, opened.email.kind, opened.email.recipient,
                reason)
    return _close(uow, opened.account, opened.email, "failed", reason=reason)


def _close(uow: UnitOfWork, account: Account, email: SendEmail, outcome: Literal["sent", "skipped", "failed"], *,
           operation_id: str | None = None, reason: str = "") -> bool:
    now = uow.clock.now()
    closed = close_email(account, email, outcome, now, operation_id=operation_id, reason=reason)
    done = uow.accounts.close_email(account.account_id, closed.record, closed.entry, account.revision, now)
    if done and closed.retention_due is not None:
        # The account's erasure may have waited for this email: back on the retention index now.
        uow.dispatcher.update_index(UpdateIndex(account.account_id, "retention", closed.retention_due, True,
                                               account.revision))
    return done


def _address_refused(uow: UnitOfWork, email: SendEmail, reason: str) -> None:
    """The email service refused the recipient's address: closed by a decision that also shows the
    contact as unreachable."""
    now = uow.clock.now()
    log.warning("account %s: %s email to %s refused for its address: %s", email.account_id, email.kind,
                email.recipient, reason)
    commit_decision(uow, email.account_id, lambda snap: email_failed(
        snap.account, email.key, email.kind, email.recipient, reason, now, uow.policy, bad_address=True))
