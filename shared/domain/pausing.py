"""Pausing an account's dunning (contract §2 `PUT /api/accounts/{id}/dunning`, §3 "Paused dunning").

A pause is a paused interval [from, to) on the account (`Account.pauses`): it starts when it is
set, and ends at its `pausedUntil` or, resumed with `null`, at that moment. Setting a pause while
one runs moves its end, within `DUNNING_MAX_PAUSE_DAYS` of its start: the whole interval is
limited, not each request. Pausing after a resume (or after a pause ran out) is a new pause. The
days of contract §3 count only the time outside these intervals (`shared.domain.schedule`), so
every later date moves by the paused time; the dunning sweep takes no step from day 1 to day 90
while one runs (`shared.domain.dunning.advance`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from shared.domain import schedule
from shared.domain.decision import Decision, Work
from shared.domain.dunning import record_pause_end
from shared.domain.model import Account
from shared.domain.policy import DunningPolicy
from shared.inbound.rfc3339 import format_rfc3339

MAX_PAUSES = 20
"""Paused intervals kept per account (those that can still move a date): a 21st pause within one
episode of past due is refused."""

_text = format_rfc3339  # every time in a timeline or problem detail


class PauseRefused(ValueError):
    """A `pausedUntil` the contract does not allow: in the past, or too far ahead (the message
    then names the latest time allowed)."""


def set_pause(account: Account, until: datetime | None, now: datetime, policy: DunningPolicy) -> Decision:
    """Pause the account's dunning until `until`, or resume it now (`None`). Raises `PauseRefused`
    for a time at or before `now`, or more than `policy.max_pause_days` after the start of the
    pause: now for a new pause, its start for one in progress that this moves."""
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
        work.log("dunning_resumed", f"dunning resumed by an operator before {_text(current[1])}: "
                                    f"paused {_days(now - current[0])}")
        return work.finish(policy)
    if until <= now:
        raise PauseRefused(f"must lie ahead of now ({_text(now)}); null resumes dunning")
    start = now if current is None else current[0]
    latest = start + timedelta(days=policy.max_pause_days)
    if until > latest:
        since = "from now" if current is None else f"from the start of the pause in progress ({_text(start)})"
        raise PauseRefused(f"a pause lasts at most {policy.max_pause_days} days (DUNNING_MAX_PAUSE_DAYS) {since}: "
                           f"at the latest {_text(latest)}")
    if current is not None:
        pauses.remove(current)
        pauses.append((current[0], until))
        what = f"pause {'extended' if until > current[1] else 'shortened'} to {_text(until)}"
    else:
        if len(pauses) >= MAX_PAUSES:
            raise PauseRefused(f"the account already has {MAX_PAUSES} pauses that still move its dates")
        pauses.append((now, until))
        what = f"dunning paused until {_text(until)}"
    work.account = replace(account, pauses=tuple(sorted(pauses)), paused_until=until)
    work.log("dunning_paused", what)
    return work.finish(policy)


def _days(span: timedelta) -> str:
    days = span.total_seconds() / 86_400
    return f"{days:.2f} days"
