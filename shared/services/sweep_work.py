"""The sweeps (contract §3): dunning, retention and reconciliation, fanned out one account per
queue message.

The timer side (`fan_out`) only reads an index, claims what is due a page at a time and puts one
`SweepPage` message per page (up to 100 accounts) on the `sweep-pages` queue: its own run costs
about three storage requests per 100 due accounts, so it takes seconds however much is due. A
worker expands each page into one `SweepWork` message per account on `sweep-work` (`expand`), and
the queue side (`run_work`) does one account's step; the Functions scale controller spreads both
queues' messages over every instance. Each account's work succeeds, fails and is retried on its own: a
failure is logged with the account id and raised, so the host retries the message; the last
attempt records a dead letter with the reason (`dead_letter_work`) instead, listed by
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
from typing import Any, Literal, get_args

from shared.adapters.gateway.protocol import CardRejected, PaymentGateway
from shared.adapters.store.account_store import Snapshot
from shared.adapters.store.indexes import PAGE, DueEntry, Ladder, index_entry
from shared.adapters.store.leases import LeaseBusy
from shared.adapters.store.system import MailIndex
from shared.domain.decision import Decision, Work
from shared.domain.dunning import advance
from shared.domain.identifiers import is_identifier
from shared.domain.model import Account, SubscriptionState
from shared.domain.policy import DunningPolicy
from shared.domain.retention import advance_retention
from shared.inbound.json_reader import read_json
from shared.inbound.rfc3339 import parse_rfc3339
from shared.services.data_erasure import erase_when_mailed
from shared.services.settle_account import NoCardOnFile, settle_account
from shared.services.unit_of_work import UnitOfWork, commit_decision, finish_outbox, load_finished
from shared.telemetry import current_fields, record_sweep_lag

log = logging.getLogger(__name__)

SweepName = Literal["dunning", "retention", "reconciliation"]
SWEEPS: tuple[SweepName, ...] = get_args(SweepName)
INDEX_OF: dict[SweepName, Ladder | Literal["disabled"]] = {
    "dunning": "due", "retention": "retention", "reconciliation": "disabled"}

MAX_ATTEMPTS = 5
"""host.json `extensions.queues.maxDequeueCount`: the attempt that records the dead letter."""
SWEEP_CLAIM = timedelta(minutes=10)
"""How long a queued entry is left to its message before a later sweep queues it again."""
QUARANTINE = timedelta(days=1)
"""How long an account whose work was dead-lettered waits before a sweep tries it again."""
SEND_THREADS = 16
"""Concurrent `sweep-work` sends while one page is expanded."""


class RetryUnanswered(Exception):
    """An automatic retry's charge has no answer yet: the message is tried again, which reads the
    charge back from the gateway before the step is recorded."""


class MalformedWork(ValueError):
    """A `sweep-work` or `sweep-pages` message that is not one: dead-lettered at once, never retried."""


def _entry_of(sweep: SweepName, doc: Any, what: str) -> DueEntry:
    """The index entry a message names: `accountId` and `at` (absent for reconciliation) give
    the row (`index_entry`); `partition` and `row`, where the message carries them, must be that
    row's keys. MalformedWork naming `what` for anything else, so a message can only ever claim,
    quarantine or delete an entry the sweep's own index keeps."""
    try:
        account_id = doc["accountId"]
        at = parse_rfc3339(doc["at"]) if doc.get("at") is not None else None
        if not is_identifier(account_id):
            raise ValueError(f"accountId {account_id!r} is not an identifier")
        entry = index_entry(INDEX_OF[sweep], account_id, at)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise MalformedWork(f"not a {what} message: {type(exc).__name__}: {exc}") from exc
    keys = {k: doc[k] for k in ("partition", "row") if k in doc}
    if keys and keys != {"partition": entry.partition, "row": entry.row}:
        raise MalformedWork(f"not a {what} message: partition and row {keys} are not the {sweep} index's "
                            f"keys for account {account_id} at {at}")
    return entry


def _read(text: str, what: str) -> dict[str, Any]:
    try:
        doc = read_json(text)  # JsonRefused is a ValueError: deep nesting, duplicate keys
    except ValueError as exc:
        raise MalformedWork(f"not a {what} message: {type(exc).__name__}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("sweep") not in SWEEPS:
        sweep = doc.get("sweep") if isinstance(doc, dict) else None
        raise MalformedWork(f"not a {what} message: sweep {sweep!r}")
    return doc


@dataclass(frozen=True)
class SweepWork:
    """One account's step, as a `sweep-work` message: JSON `{"sweep", "accountId", "partition",
    "row", "at"}`, the partition and row naming the index entry to delete once the step is done,
    and the `traceparent` of the page that queued it (the step starts a trace of its own, linked)."""

    sweep: SweepName
    entry: DueEntry

    def to_message(self) -> str:
        e = self.entry  # the keys are derived, and kept for messages queued before pages existed
        return json.dumps({"sweep": self.sweep, "accountId": e.account_id, "partition": e.partition, "row": e.row,
                           "at": e.at.isoformat() if e.at else None, **current_fields()})

    @classmethod
    def from_message(cls, text: str) -> SweepWork:
        """Raises MalformedWork (with the reason) for anything else."""
        doc = _read(text, "sweep-work")
        return cls(doc["sweep"], _entry_of(doc["sweep"], doc, "sweep-work"))


@dataclass(frozen=True)
class SweepPage:
    """One claimed index page, as a `sweep-pages` message: JSON `{"sweep", "entries": [{"accountId",
    "at"}, ...]}` with 1 to `PAGE` (100) entries (`at` null for reconciliation; each entry's index
    keys follow from the two), and the `traceparent` of the sweep run that queued it. At the longest
    identifiers (64 characters) a page is at most 12.5 KB, well inside a queue message's 64 KiB."""

    sweep: SweepName
    entries: tuple[DueEntry, ...]

    def to_message(self) -> str:
        return json.dumps({"sweep": self.sweep, "entries": [
            {"accountId": e.account_id, "at": e.at.isoformat() if e.at else None} for e in self.entries],
            **current_fields()})

    @classmethod
    def from_message(cls, text: str) -> SweepPage:
        """Raises MalformedWork (with the reason) for anything else."""
        doc = _read(text, "sweep-pages")
        entries = doc.get("entries")
        if not isinstance(entries, list) or not 1 <= len(entries) <= PAGE:
            raise MalformedWork(f"not a sweep-pages message: entries must be a list of 1 to {PAGE} index entries")
        return cls(doc["sweep"], tuple(_entry_of(doc["sweep"], e, "sweep-pages") for e in entries))

    def work(self) -> list[SweepWork]:
        return [SweepWork(self.sweep, e) for e in self.entries]


# -- the timer side ---------------------------------------------------------------------------------


@dataclass
class FanOut:
    sweep: SweepName
    queued: int = 0
    seconds: float = 0.0
    finished: bool = True
    """False if the run stopped at its time budget; the rest is queued by the next run."""


def fan_out(uow: UnitOfWork, sweep: SweepName, budget: timedelta = timedelta(minutes=2)) -> FanOut:
    """Queue one `SweepPage` per page of due, unclaimed index entries (one shard, at most 100
    entries), taking the shards in turn. Each page is claimed (one `$batch`) before its message
    goes, so a crash in between only delays those accounts by `SWEEP_CLAIM`. Storage requests: one read,
    one `$batch` and one send per page."""
    started = time.monotonic()
    report = FanOut(sweep)
    now = uow.clock.now()
    for page in uow.indexes.unclaimed(now, INDEX_OF[sweep]):
        uow.indexes.claim(page, now + SWEEP_CLAIM)
        uow.queues.send("sweep-pages", SweepPage(sweep, tuple(page)).to_message())
        report.queued += len(page)
        if time.monotonic() - started > budget.total_seconds():
            report.finished = False
            break
    report.seconds = time.monotonic() - started
    return report


def expand(uow: UnitOfWork, page: SweepPage) -> int:
    """Queue the page's `SweepWork` messages on `sweep-work` (`SEND_THREADS` at a time); returns
    how many went. The entries whose send failed go back on `sweep-pages` as a smaller page, so a
    passing failure repeats none of the sends that succeeded; if that send fails too, it raises
    and the whole page is retried (a repeated account finds its step taken: "stale")."""
    with ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="sweep-send") as pool:
        sends = [(w, pool.submit(uow.queues.send, "sweep-work", w.to_message())) for w in page.work()]
    failed = [(w.entry, f.exception()) for w, f in sends if f.exception() is not None]
    if failed:
        log.warning("%d of %d sweep-work sends failed (first: %s); queued again as a page", len(failed),
                    len(sends), failed[0][1], extra={"counter": "sweep_send_failed", "sweep": page.sweep})
        uow.queues.send("sweep-pages", SweepPage(page.sweep, tuple(e for e, _ in failed)).to_message())
    return len(sends) - len(failed)


# -- the queue side ---------------------------------------------------------------------------------


StepOutcome = Literal["stale", "stepped", "retried", "reconciled", "erased", "erasure_waits"]


@dataclass(frozen=True)
class WorkDone:
    outcome: StepOutcome
    paid: int = 0
    reconciled: list[str] = field(default_factory=list)


def run_work(uow: UnitOfWork, gateway: PaymentGateway | None, mail_index: MailIndex, work: SweepWork, *,
             retried: bool = False) -> WorkDone:
    """Do one account's step at the clock's `now`; raises on a failure worth retrying. A `retried`
    message first finishes the outbox its failed attempt may have left after committing the step
    (the next due entry among it): the step itself is then found taken ("stale")."""
    now = uow.clock.now()
    if work.entry.at is not None and not retried:
        record_sweep_lag((now - work.entry.at).total_seconds())  # contract §6 `billing.sweep.lag`
    if retried:
        finish_outbox(uow, work.entry.account_id)
    if work.sweep == "dunning":
        done = _dunning(uow, gateway, work.entry.account_id, now)
    elif work.sweep == "retention":
        done = _retention(uow, mail_index, work.entry.account_id, now)
    else:
        done = _reconciliation(uow, work.entry.account_id, now)
    if work.sweep != "reconciliation":
        uow.indexes.done(work.entry)  # the step committed its own next entry, if any
    return done


SweepSource = Literal["sweep-work", "sweep-work-poison", "sweep-pages", "sweep-pages-poison"]


def dead_letter_work(uow: UnitOfWork, work: SweepWork | None, body: bytes, reason: str, message_id: str | None,
            source: SweepSource = "sweep-work") -> None:
    """The last attempt failed, or the message is malformed: list it with the reason (the rest of
    the sweep goes on regardless). An account's `work` also leaves its index entry alone for
    `QUARANTINE`; a page's entries (no `work`) keep the timer's claim, so a sweep after `SWEEP_CLAIM`
    queues them again."""
    uow.dead_letters.add(source=source, reason=reason, body=body, received_at=uow.clock.now(),
                        message_id=message_id)
    if work is not None:
        uow.indexes.claim([work.entry], uow.clock.now() + QUARANTINE)


def _dunning(uow: UnitOfWork, gateway: PaymentGateway | None, account_id: str, now: datetime) -> WorkDone:
    snap = load_finished(uow, account_id)
    if _stale(snap.account.next_due_at, now):
        return WorkDone("stale")
    paid, retried = 0, False
    _, retry_due = advance(snap.account, now, uow.policy)
    if retry_due and gateway is not None:
        # The retry goes first and the step is recorded after it, so a retry the gateway could not
        # answer raises and is made again by the message's next attempt, not lost.
        retried = True
        try:
            result = settle_account(uow, gateway, account_id, wait=2.0)
        except (LeaseBusy, NoCardOnFile, CardRejected) as exc:
            log.info("account %s: automatic retry not made (%s)", account_id, type(exc).__name__)
        else:
            if result.unanswered:
                raise RetryUnanswered(f"the gateway did not answer the retry in {result.unanswered}; the next "
                                      "attempt reads it back by its key")
            paid = len(result.paid)
    # Decided on the snapshot already read unless a settlement changed the account since.
    _commit_step(uow, account_id, lambda a: advance(a, now, uow.policy)[0], None if retried else snap)
    return WorkDone("retried" if retried else "stepped", paid=paid)


def _retention(uow: UnitOfWork, mail_index: MailIndex, account_id: str, now: datetime) -> WorkDone:
    snap = load_finished(uow, account_id)
    if _stale(snap.account.next_retention_at, now):
        return WorkDone("stale")
    erase: list[bool] = []

    def step(account: Account) -> Decision:
        decision, due = advance_retention(account, now, uow.policy)
        erase[:] = [due]
        return decision

    _commit_step(uow, account_id, step, snap)
    if not any(erase):
        return WorkDone("stepped")
    erased = erase_when_mailed(uow, mail_index, account_id)
    return WorkDone("erased" if erased else "erasure_waits")


def _reconciliation(uow: UnitOfWork, account_id: str, now: datetime) -> WorkDone:
    """The source document's "payment processed but the subscription is still disabled": re-enable
    what owes nothing, and say so loudly, because it means something upstream went wrong."""
    decision = commit_decision(uow, account_id, lambda snap: _reconcile(snap.account, now, uow.policy))
    fixed = [t.subscription_id or "" for t in decision.timeline if t.kind == "reconciled"]
    if fixed:
        log.warning("account %s: re-enabled %s, which were disabled with nothing owing", account_id, fixed)
        return WorkDone("reconciled", reconciled=[f"{account_id}/{s}" for s in fixed])
    if not any(s.state is SubscriptionState.DISABLED for s in decision.account.subscriptions.values()):
        uow.indexes.set_disabled(account_id, False)  # a stale hint
        return WorkDone("stale")
    return WorkDone("stepped")


def _stale(due: datetime | None, now: datetime) -> bool:
    """Paid, or rescheduled: the account's own state says there is nothing to do yet."""
    return due is None or due > now


def _commit_step(uow: UnitOfWork, account_id: str, step: Callable[[Account], Decision],
                 first: Snapshot | None) -> Decision:
    """Commit `step` under the account's ETag, deciding first on `first` if given (one read saved)."""
    return commit_decision(uow, account_id, lambda snap: step(snap.account), first=first)


def _reconcile(account: Account, now: datetime, policy: DunningPolicy) -> Decision:
    stuck = [s.subscription_id for s in account.subscriptions.values()
             if s.state is SubscriptionState.DISABLED and not account.outstanding_of(s.subscription_id)]
    if not stuck:
        return Decision(account)
    work = Work(account, {}, now, occasion=f"reconcile-{account.revision + 1}")
    for sub_id in stuck:
        work.log("reconciled", "disabled with nothing owing: re-enabled by the reconciliation sweep", sub_id)
    return work.finish(policy)
