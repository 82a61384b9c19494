"""Pausing an account's dunning (contract §2 `PUT /api/accounts/{id}/dunning`, §3 "Paused dunning").

A pause is a paused interval [from, to) on the account (`Account.pauses`): it starts when it is
set, and ends at its `pausedUntil` or, resumed with `null`, at that moment. Setting a pause while
one runs moves its end. The days of contract §3 count only the time outside these intervals
(`shared.domain.schedule`), so every later date moves by the paused time; the dunning sweep takes
no step from day 1 to day 90 while one runs (`shared.domain.dunning.advance`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from shared.domain import schedule
from shared.domain.decision import Decision, Work
from shared.domain.dunning import record_pause_end
from shared.domain.model import Account
from shared.domain.policy import DunningPolicy

MAX_PAUSES = 20
"""Paused intervals kept per account (those that can still move a date): a 21st pause within one
episode of past due is refused."""


class PauseRefused(ValueError):
    """A `pausedUntil` the contract does not allow: in the past, or too far ahead."""


def set_pause(account: Account, until: datetime | None, now: datetime, policy: DunningPolicy) -> Decision:
    """Pause the account's dunning until `until`, or resume it now (`None`). Raises `PauseRefused`
    for a time at or before `now` or more than `policy.max_pause_days` ahead."""
    work = Work(account, {}, now, occasion=f"pause-{account.revision + 1}")
    record_pause_end(work)  # one that ran out and the sweep has not recorded yet
    account = work.account
    pauses = list(account.pauses)
    current = schedule.paused_at(pauses, now)
    if until is None:
        if current is None:
            return work.finish(policy)
        pauses.remove(current)
        if current[0] < now:
            pauses.append((current[0], now))
        work.account = replace(account, pauses=tuple(sorted(pauses)), paused_until=None)
        work.log("dunning_resumed", f"dunning resumed by an operator before {current[1].isoformat()}: "
                                    f"paused {_days(now - current[0])}")
        return work.finish(policy)
    if until <= now:
        raise PauseRefused(f"must lie ahead of now ({now.isoformat()}); null resumes dunning")
    if until > now + timedelta(days=policy.max_pause_days):
        raise PauseRefused(f"at most {policy.max_pause_days} days ahead (DUNNING_MAX_PAUSE_DAYS)")
    if current is not None:
        pauses.remove(current)
        pauses.append((current[0], until))
        what = f"pause extended to {until.isoformat()}" if until > current[1] else \
            f"pause shortened to {until.isoformat()}"
    else:
        if len(pauses) >= MAX_PAUSES:
            raise PauseRefused(f"the account already has {MAX_PAUSES} pauses that still move its dates")
        pauses.append((now, until))
        what = f"dunning paused until {until.isoformat()}"
    work.account = replace(account, pauses=tuple(sorted(pauses)), paused_until=until)
    work.log("dunning_paused", what)
    return work.finish(policy)


def _days(span: timedelta) -> str:
    days = span.total_seconds() / 86_400
    return f"{days:.2f} days"
