"""`PUT /api/accounts/{id}/dunning` as a use case: pause an account's dunning, or resume it."""

from __future__ import annotations

from datetime import datetime

from shared.domain.decision import Decision
from shared.domain.pausing import set_pause
from shared.services.unit_of_work import UnitOfWork, commit_decision


class UnknownAccount(LookupError):
    """No account by that id: nothing to pause."""


def pause_dunning(uow: UnitOfWork, account_id: str, until: datetime | None) -> Decision:
    """Pause until `until` (None: resume now), at the clock's now. Raises `UnknownAccount`, and
    `shared.domain.pausing.PauseRefused` for a time the contract does not allow."""
    if uow.accounts.load(account_id).etag is None:
        raise UnknownAccount(account_id)
    now = uow.clock.now()
    return commit_decision(uow, account_id, lambda snap: set_pause(snap.account, until, now, uow.policy))
