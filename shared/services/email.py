"""Sending the emails decisions committed, at most once each (delivery reports: `shared/services/delivery_reports.py`).

An email outbox row is claimed (by the hand-off message's id, so the host's retries of that
message keep the claim), rendered, sent under the row's deterministic operation id, and closed by
a `mail|` record in the account's transaction. A crash anywhere repeats at most the send, which
ACS recognises by the operation id.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Literal

from shared.adapters.mailer.protocol import Mailer, MailRejected
from shared.adapters.store.account_store import AccountStore
from shared.adapters.store.system import MailIndex
from shared.domain.mail import email_failed, email_sent, email_skipped, still_relevant
from shared.notifications.compose import compose
from shared.services.unit_of_work import Lifecycle, commit_decision
from shared.settings import Settings

log = logging.getLogger(__name__)
EMAIL_CLAIM = timedelta(minutes=2)
EmailOutcome = Literal["sent", "already_sent", "gone", "claimed_by_twin", "failed", "skipped"]


def send_outbox_email(lc: Lifecycle, store: AccountStore, mailer: Mailer, index: MailIndex, settings: Settings,
                      account_id: str, key: str, holder: str) -> EmailOutcome:
    found = store.outbox_row(account_id, key)
    if found is None:
        return "gone"
    row, entity = found
    if store.mail_record(account_id, key) is not None:
        store.delete_outbox([row])
        return "already_sent"
    if not store.claim_outbox(entity, holder, datetime.now(UTC) + EMAIL_CLAIM):
        return "claimed_by_twin"
    recipient, kind = row.payload["recipient"], row.payload["kind"]
    index.remember(key, account_id, recipient)
    now = lc.clock.now()
    snapshot = store.load(account_id)
    account = snapshot.account
    if not still_relevant(account, kind, row.payload.get("facts") or {}):
        commit_decision(lc, account_id, lambda snap: email_skipped(snap.account, key, kind, recipient, now, lc.policy),
                        first=snapshot)
        return "skipped"
    try:
        email = compose(account, row.payload, settings, lc.policy, now)
    except ValueError as exc:  # ours to fix (data gone, a date missing): never the customer's address
        give_up_email(lc, account_id, key, kind, recipient, f"the email could not be written: {exc}")
        return "failed"
    try:
        operation = mailer.send(email, operation_id=key)
    except MailRejected as exc:
        give_up_email(lc, account_id, key, kind, recipient, str(exc), bad_address=exc.bad_address)
        return "failed"
    commit_decision(lc, account_id, lambda snap: email_sent(snap.account, key, kind, recipient, operation, now,
                                                            lc.policy), first=snapshot)
    log.info("account %s: %s email sent to %s (operation %s)", account_id, kind, recipient, operation)
    return "sent"


def give_up_email(lc: Lifecycle, account_id: str, key: str, kind: str, recipient: str, reason: str, *,
            bad_address: bool = False) -> None:
    """Close an email that will never go out; `bad_address` only when the refusal was about the address."""
    now = lc.clock.now()
    log.warning("account %s: %s email to %s given up: %s", account_id, kind, recipient, reason)
    commit_decision(lc, account_id, lambda snap: email_failed(snap.account, key, kind, recipient, reason, now,
                                                              lc.policy, bad_address=bad_address))
