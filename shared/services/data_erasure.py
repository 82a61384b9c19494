"""The retention sweep's shell: deletion warnings and deletions from the pure core, then the
erasure of an account's customer data once nothing of it is left to serve.

Erasure redacts the personal data that financial records mention before it drops the profile:
every address and card summary the account ever held (`shared.domain.erasure`), derived from
the profile and from the records themselves (mail recipients, contact and card changes, quoted
delivery reports), whatever the case. A crash halfway is finished by the next run: the profile,
which names the current contacts and card, goes last, and what the records name is found again in
the rows not yet rewritten, by their spelling or by their shape.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from shared.adapters.store.system import MailIndex
from shared.domain.erasure import profile_words
from shared.domain.retention import REDACTED, erase_profile
from shared.services.unit_of_work import UnitOfWork, commit_decision, load_finished

log = logging.getLogger(__name__)
WAIT_FOR_MAIL = timedelta(hours=1)
"""A fallback only: closing the account's last email (sent, skipped or given up) puts it back on the
retention index at once (`shared/domain/mail.py`); this entry catches a lost index write."""


def erase_when_mailed(uow: UnitOfWork, mail_index: MailIndex, account_id: str) -> bool:
    """Erase the account's customer data once its last emails are out; until then the close of each
    email puts the account back on the retention index, and an entry an hour later stands in for
    a close whose index write was lost. True if it was erased now."""
    if any(r.kind == "email" for r in uow.accounts.pending_outbox(account_id)):
        # The deletion confirmation must reach the contacts before their addresses go.
        uow.indexes.mark_due(account_id, uow.clock.now() + WAIT_FOR_MAIL, "retention")
        return False
    erase_customer_data(uow, mail_index, account_id)
    return True


def erase_customer_data(uow: UnitOfWork, mail_index: MailIndex, account_id: str) -> None:
    profile = load_finished(uow, account_id).account.profile  # redact what follow-ups wrote too
    if profile is None:
        return
    operations = uow.accounts.redact(account_id, profile_words(profile), REDACTED)
    mail_index.forget(operations)
    now = uow.clock.now()
    commit_decision(uow, account_id, lambda snap: erase_profile(snap.account, now, uow.policy))
    log.info("account %s: customer data erased; %d email records redacted", account_id, len(operations))
