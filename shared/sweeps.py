"""The sweeps (contract §3): dunning, retention and reconciliation, fanned out one account per
queue message.

The timer side (`fan_out`) only reads an index, claims what is due and puts one `SweepWork`
message per account on the `sweep-work` queue, so its own run takes seconds however much is due.
The queue side (`run_work`) does one account's step; the Functions scale controller spreads the
messages over every instance. Each account's work succeeds, fails and is retried on its own: a
failure is logged with the account id and raised, so the host retries the message; the last
attempt records a dead letter with the reason (`give_up`) instead, listed by
`GET /api/deadletters` like a payment event.

The index is a hint: the worker re-reads the account and acts on what its state says. Every step
is idempotent per (subscription, step, episode), so a message delivered twice, late, or to two
instances at once does each thing once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, get_args

from shared.gateway.protocol import CardRejected
from shared.handlers import Lifecycle, commit_decision, finish_outbox, load_finished
from shared.json_reader import read_json
from shared.lifecycle.dunning import advance
from shared.lifecycle.model import Account, SubscriptionState
from shared.lifecycle.retention import advance_retention
from shared.lifecycle.work import Decision, Work
from shared.policy import DunningPolicy
from shared.retention import erase_when_mailed
from shared.rfc3339 import parse_rfc3339
from shared.settlement import NoCardOnFile, settle_account
from shared.store.accounts import Snapshot
from shared.store.indexes import DueEntry
from shared.store.leases import LeaseBusy

if TYPE_CHECKING:
    from shared.bootstrap import Services

log = logging.getLogger(__name__)

SweepName = Literal["dunning", "retention", "reconciliation"]
SWEEPS: tuple[SweepName, ...] = get_args(SweepName)
INDEX_OF = {"dunning": "due", "retention": "retention", "reconciliation": "disabled"}

MAX_ATTEMPTS = 5
"""host.json `extensions.queues.maxDequeueCount`: the attempt that records the dead letter."""
CLAIM = timedelta(minutes=10)
"""How long a queued entry is left to its message before a later sweep queues it again."""
QUARANTINE = timedelta(days=1)
"""How long an account whose work was dead-lettered waits before a sweep tries it again."""
SEND_THREADS = 16


class RetryUnanswered(Exception):
    """An automatic retry's charge has no answer yet: the message is tried again, which reads the
    charge back from the gateway before the step is recorded."""


class MalformedWork(ValueError):
    """A `sweep-work` message that is not one: dead-lettered at once, never retried."""


@dataclass(frozen=True)
class SweepWork:
    """One account's step, as a `sweep-work` message: JSON `{"sweep", "accountId", "partition",
    "row"}`, the last two naming the index entry to delete once the step is done."""

    sweep: SweepName
    entry: DueEntry

    def to_message(self) -> str:
        return json.dumps({"sweep": self.sweep, "accountId": self.entry.account_id,
                           "partition": self.entry.partition, "row": self.entry.row,
                           "at": self.entry.at.isoformat() if self.entry.at else None})

    @classmethod
    def from_message(cls, text: str) -> SweepWork:
        try:
            doc = read_json(text)  # JsonRefused is a ValueError: deep nesting, duplicate keys
            sweep, account_id, partition, row = doc["sweep"], doc["accountId"], doc["partition"], doc["row"]
            at = parse_rfc3339(doc["at"]) if doc.get("at") else None
        except (ValueError, TypeError, KeyError) as exc:
            raise MalformedWork(f"not a sweep-work message: {type(exc).__name__}: {exc}") from exc
        if sweep not in SWEEPS or not all(isinstance(v, str) and v for v in (account_id, partition, row)):
            raise MalformedWork(f"not a sweep-work message: sweep {sweep!r}, accountId {account_id!r}")
        return cls(sweep, DueEntry(account_id, at, partition, row))


# -- the timer side ---------------------------------------------------------------------------------


@dataclass
class FanOut:
    sweep: SweepName
    queued: int = 0
    seconds: float = 0.0
    finished: bool = True
    """False if the run stopped at its time budget; the rest is queued by the next run."""


def fan_out(svc: Services, sweep: SweepName, budget: timedelta = timedelta(minutes=2)) -> FanOut:
    """Queue one `SweepWork` per due, unclaimed index entry, page by page across the shards;
    each page is claimed (one `$batch`) before its messages go, so a crash in between only delays
    those accounts by `CLAIM`."""
    started = time.monotonic()
    report = FanOut(sweep)
    now = svc.lifecycle.clock.now()
    with ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="sweep-send") as pool:
        for page in svc.indexes.unclaimed(now, INDEX_OF[sweep]):  # type: ignore[arg-type]
            svc.indexes.claim(page, now + CLAIM)
            list(pool.map(svc.sweep_queue.send_message, [SweepWork(sweep, e).to_message() for e in page]))
            report.queued += len(page)
            if time.monotonic() - started > budget.total_seconds():
                report.finished = False
                break
    report.seconds = time.monotonic() - started
    return report


# -- the queue side ---------------------------------------------------------------------------------


Outcome = Literal["stale", "stepped", "retried", "reconciled", "erased", "erasure_waits"]


@dataclass(frozen=True)
class WorkDone:
    outcome: Outcome
    paid: int = 0
    reconciled: list[str] = field(default_factory=list)


def run_work(svc: Services, work: SweepWork, *, retried: bool = False) -> WorkDone:
    """Do one account's step at the clock's `now`; raises on a failure worth retrying. A `retried`
    message first finishes the outbox its failed attempt may have left after committing the step
    (the next due entry among it): the step itself is then found taken ("stale")."""
    now = svc.lifecycle.clock.now()
    if retried:
        finish_outbox(svc.lifecycle, work.entry.account_id)
    if work.sweep == "dunning":
        done = _dunning(svc, work.entry.account_id, now)
    elif work.sweep == "retention":
        done = _retention(svc, work.entry.account_id, now)
    else:
        done = _reconciliation(svc, work.entry.account_id, now)
    if work.sweep != "reconciliation":
        svc.indexes.done(work.entry)  # the step committed its own next entry, if any
    return done


def give_up(svc: Services, work: SweepWork | None, body: bytes, reason: str, message_id: str | None) -> None:
    """The last attempt failed, or the message is malformed: list it with the reason, and leave
    the account's index entry alone for `QUARANTINE` (the rest of the sweep goes on regardless)."""
    svc.deadletters.add(source="sweep-work", reason=reason, body=body, received_at=svc.lifecycle.clock.now(),
                        message_id=message_id)
    if work is not None:
        svc.indexes.claim([work.entry], svc.lifecycle.clock.now() + QUARANTINE)


def _dunning(svc: Services, account_id: str, now: datetime) -> WorkDone:
    lc = svc.lifecycle
    snap = load_finished(lc, account_id)
    if _stale(snap.account.next_due_at, now):
        return WorkDone("stale")
    paid, retried = 0, False
    _, retry_due = advance(snap.account, now, lc.policy)
    if retry_due and svc.gateway is not None:
        # The retry goes first and the step is recorded after it, so a retry the gateway could not
        # answer raises and is made again by the message's next attempt, not lost.
        retried = True
        try:
            result = settle_account(lc, svc.gateway, svc.leases, account_id, wait=2.0)
        except (LeaseBusy, NoCardOnFile, CardRejected) as exc:
            log.info("account %s: automatic retry not made (%s)", account_id, type(exc).__name__)
        else:
            if result.unanswered:
                raise RetryUnanswered(f"the gateway did not answer the retry in {result.unanswered}; the next "
                                      "attempt reads it back by its key")
            paid = len(result.paid)
    # Decided on the snapshot already read unless a settlement changed the account since.
    _commit_step(lc, account_id, lambda a: advance(a, now, lc.policy)[0], None if retried else snap)
    return WorkDone("retried" if retried else "stepped", paid=paid)


def _retention(svc: Services, account_id: str, now: datetime) -> WorkDone:
    lc = svc.lifecycle
    snap = load_finished(lc, account_id)
    if _stale(snap.account.next_retention_at, now):
        return WorkDone("stale")
    erase: list[bool] = []

    def step(account: Account) -> Decision:
        decision, due = advance_retention(account, now, lc.policy)
        erase[:] = [due]
        return decision

    _commit_step(lc, account_id, step, snap)
    if not any(erase):
        return WorkDone("stepped")
    erased = erase_when_mailed(lc, svc.store, svc.indexes, svc.mail_index, account_id)
    return WorkDone("erased" if erased else "erasure_waits")


def _reconciliation(svc: Services, account_id: str, now: datetime) -> WorkDone:
    """The source document's "payment processed but the subscription is still disabled": re-enable
    what owes nothing, and say so loudly, because it means something upstream went wrong."""
    lc = svc.lifecycle
    decision = commit_decision(lc, account_id, lambda snap: _reconcile(snap.account, now, lc.policy))
    fixed = [t.subscription_id or "" for t in decision.timeline if t.kind == "reconciled"]
    if fixed:
        log.warning("account %s: re-enabled %s, which were disabled with nothing owing", account_id, fixed)
        return WorkDone("reconciled", reconciled=[f"{account_id}/{s}" for s in fixed])
    if not any(s.state is SubscriptionState.DISABLED for s in decision.account.subscriptions.values()):
        svc.indexes.set_disabled(account_id, False)  # a stale hint
        return WorkDone("stale")
    return WorkDone("stepped")


def _stale(due: datetime | None, now: datetime) -> bool:
    """Paid, or rescheduled: the account's own state says there is nothing to do yet."""
    return due is None or due > now


def _commit_step(lc: Lifecycle, account_id: str, step: Callable[[Account], Decision],
                 first: Snapshot | None) -> Decision:
    """Commit `step` under the account's ETag, deciding first on `first` if given (one read saved)."""
    return commit_decision(lc, account_id, lambda snap: step(snap.account), first=first)


def _reconcile(account: Account, now: datetime, policy: DunningPolicy) -> Decision:
    stuck = [s.subscription_id for s in account.subscriptions.values()
             if s.state is SubscriptionState.DISABLED and not account.outstanding_of(s.subscription_id)]
    if not stuck:
        return Decision(account)
    work = Work(account, {}, now, occasion=f"reconcile-{account.revision + 1}")
    for sub_id in stuck:
        work.log("reconciled", "disabled with nothing owing: re-enabled by the reconciliation sweep", sub_id)
    return work.finish(policy)
