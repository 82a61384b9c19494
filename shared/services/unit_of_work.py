"""The unit of work, and the account use cases on it: load → decide → commit → dispatch.

Every handler can run twice, crash halfway, or race a twin: the event marker and the account
row's ETag, both in the decision's transaction, make the second run a no-op or a clean retry.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from tenacity import before_sleep_log, retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from shared.adapters.queues.protocol import Queues
from shared.adapters.store.account_store import (
    AccountRepository,
    AlreadyApplied,
    ConcurrencyConflict,
    OutboxRow,
    Snapshot,
)
from shared.adapters.store.protocol import ContactDirectory, DeadLetterStore, DueIndexes, Leases
from shared.clock import Clock
from shared.domain.decision import Decision
from shared.domain.effects import UpdateIndex
from shared.domain.facts import PaymentEvent, PaymentReceived, charge_ids_of
from shared.domain.model import Account
from shared.domain.payments import Registration, apply_payment_event, register
from shared.domain.policy import DunningPolicy
from shared.faults import Faults
from shared.inbound.cloudevents import Rejected
from shared.services.dispatch import Dispatcher

log = logging.getLogger(__name__)

_STRIPES = [threading.RLock() for _ in range(256)]


def account_lock(account_id: str) -> threading.RLock:
    """Twins in one process take turns on an account instead of racing for its ETag (which they
    would mostly lose, and retry). Across processes the ETag alone still decides."""
    return _STRIPES[zlib.crc32(account_id.encode()) % len(_STRIPES)]


on_conflict = retry(
    retry=retry_if_exception_type(ConcurrencyConflict),
    stop=stop_after_attempt(30),
    wait=wait_random_exponential(multiplier=0.005, max=0.25),
    before_sleep=before_sleep_log(log, logging.INFO),  # lost races are visible, and countable
    reraise=True,
)


class Refused(Rejected):
    """A valid fact the lifecycle refuses as a whole (a limit of `shared.domain.limits`): the
    account is unchanged. A queue message is dead-lettered at once with `reason`, never retried;
    a request answers 400."""


@dataclass
class UnitOfWork:
    """Every port a use case touches, and the clock and policy it decides with: wired once per
    process from Azure (`shared/bootstrap.py`), or from in-memory twins in the service tests
    (`tests/fakes/unit_of_work.py`). A use case takes it first: `apply_event(uow, event, ...)`."""

    accounts: AccountRepository
    """The account partitions: state, event markers, charge records, outbox, mail records, timeline."""
    indexes: DueIndexes
    contacts: ContactDirectory
    dead_letters: DeadLetterStore
    leases: Leases
    queues: Queues
    dispatcher: Dispatcher
    """Carries out what a commit left in the outbox (over `queues`, `indexes` and `contacts`)."""
    clock: Clock
    policy: DunningPolicy
    faults: Faults
    redelivery_grace: timedelta = timedelta(seconds=30)
    """How old outbox rows must be before a duplicate delivery carries them out itself: younger ones
    belong to a live twin that is sending them right now (a crashed one's message comes back only
    after the host's visibility timeout, which is longer)."""


@dataclass(frozen=True)
class Applied:
    account: Account
    duplicate: bool


def apply_event(uow: UnitOfWork, event: PaymentEvent, event_type: str, *, redelivered: bool = False) -> Applied:
    """Apply one payment event exactly once, whatever the delivery. `redelivered`: this very
    message was delivered before (its dequeue count is above 1), so that attempt is over.
    Raises `Refused` when the event would take the account past a limit: nothing is committed."""
    now = uow.clock.now()
    finished: list[OutboxRow] = []
    refused: list[str] = []
    first_try = [True]

    @on_conflict
    def attempt() -> tuple[Account, list[OutboxRow] | None]:
        # The first try decides on this process's copy of the account and assumes the charges the
        # event names are new: its commit checks both (the account row's ETag, the notes it
        # creates) and the event's marker, so a stale copy or a known charge only costs a retry.
        optimistic, first_try[0] = first_try[0], False
        snap = uow.accounts.load(event.account_id, charge_ids=charge_ids_of(event), finish=True, cached=optimistic,
                             assume_new=optimistic and not isinstance(event, PaymentReceived))
        finished.extend(snap.finished)
        decision = apply_payment_event(snap.account, event, snap.notes, now, uow.policy)
        if decision.refused is not None:
            if uow.accounts.applied(event.account_id, event.event_id):
                return snap.account, None  # a redelivery of an event applied before the limit was reached
            refused.append(decision.refused)
            return snap.account, []
        uow.faults.before_commit()
        try:
            rows = uow.accounts.commit(snap, hints_first(uow, decision), event_id=event.event_id, event_type=event_type,
                                   now=now)
        except AlreadyApplied:
            return snap.account, None
        return decision.account, rows

    with account_lock(event.account_id):
        account, rows = attempt()
    if refused:
        uow.dispatcher.dispatch(_distinct(finished))  # what this load finished of an earlier decision
        raise Refused(refused[-1])
    duplicate = rows is None
    if rows is None:
        # A redelivery also finishes what a crashed first delivery committed but never sent.
        rows = uow.accounts.pending_outbox(event.account_id, settled_for=outbox_grace(uow, redelivered))
    uow.faults.before_dispatch()
    uow.dispatcher.dispatch(_distinct(finished + rows))
    return Applied(account, duplicate)


def hints_first(uow: UnitOfWork, decision: Decision) -> Decision:
    """Write the decision's new `due` and `retention` index entries before its commit, and commit
    it without them. An entry is a hint the sweeps check against the account (one whose commit
    failed, or was decided again, points at nothing due and is dropped by the sweep), so writing
    it first is safe, and it saves an outbox row and its deletion. Removals and the address index
    still leave through the outbox, after the commit."""
    hints = [e for e in decision.effects if isinstance(e, UpdateIndex) and e.present and e.index != "disabled"]
    for hint in hints:
        uow.dispatcher.update_index(hint)
    return replace(decision, effects=tuple(e for e in decision.effects if e not in hints)) if hints else decision


def outbox_grace(uow: UnitOfWork, redelivered: bool) -> timedelta:
    """How old outbox rows must be before this delivery carries them out: none for a message
    delivered before, whose earlier attempt failed after its commit (the host brings it back after
    `visibilityTimeout`, 5 s, well inside the grace), else `uow.redelivery_grace` (a live twin's)."""
    return timedelta(0) if redelivered else uow.redelivery_grace


def finish_outbox(uow: UnitOfWork, account_id: str) -> None:
    """Carry out whatever the account's committed decisions left in the outbox, however young: for
    a retried message whose earlier attempt failed after its commit and may now have nothing left
    to decide (a sweep step already taken, a request already applied)."""
    uow.dispatcher.dispatch(uow.accounts.pending_outbox(account_id, settled_for=outbox_grace(uow, True)))


def commit_decision(uow: UnitOfWork, account_id: str, decide: Callable[[Snapshot], Decision],
                    first: Snapshot | None = None, *, marker: str | None = None) -> Decision:
    """Load, decide and commit under the account's ETag, retrying on conflict; then dispatch.

    `first` is a snapshot the caller already loaded: the first attempt decides on it (saving a
    read) unless an earlier decision's follow-ups may be unapplied; if it is stale the ETag says
    so and the retry loads afresh. `marker` makes the decision take effect once: it commits with
    the marker, and a later one under the same marker changes nothing (a card charge is recorded
    once per idempotency key, whichever process reads its answer)."""
    now = uow.clock.now()
    given = [first] if first is not None and not first.pending else []
    finished: list[OutboxRow] = []

    @on_conflict
    def attempt() -> tuple[Decision, list[OutboxRow]]:
        if given and marker is None:
            snap = given.pop()  # what its loader finished is the loader's to carry out
        else:
            snap = uow.accounts.load(account_id, event_id=marker, finish=True)
            finished.extend(snap.finished)
        decision = decide(snap) if not snap.already_applied else Decision(snap.account)
        if decision.refused is not None:
            return decision, []
        if not decision.changed and snap.etag is not None:
            # Nothing to change, typically a client retrying a request whose first run crashed
            # after its commit: finish what that run left in the outbox.
            return decision, uow.accounts.pending_outbox(account_id, settled_for=uow.redelivery_grace)
        uow.faults.before_commit()
        try:
            return decision, uow.accounts.commit(snap, hints_first(uow, decision), event_id=marker,
                                             event_type=marker and "decision.marker",
                                                      now=now)
        except AlreadyApplied:
            return Decision(snap.account), []

    with account_lock(account_id):
        decision, rows = attempt()
    uow.faults.before_dispatch()
    uow.dispatcher.dispatch(_distinct(finished + rows))
    return decision


def load_finished(uow: UnitOfWork, account_id: str) -> Snapshot:
    """Load an account to act on it without a decision of its own (a sweep finding nothing due,
    an erasure): an earlier decision's follow-ups are applied and carried out first."""
    with account_lock(account_id):
        snap = uow.accounts.load(account_id, finish=True)
    uow.dispatcher.dispatch(snap.finished)
    return snap


def _distinct(rows: list[OutboxRow]) -> list[OutboxRow]:
    """Each row once: one this run finished may also be pending (a duplicate delivery's sweep-up)."""
    return list({row.key: row for row in rows}.values())


def register_account(uow: UnitOfWork, account_id: str, reg: Registration) -> Account:
    """Register or update the account; `Refused` (nothing stored) past 200 subscriptions."""
    now = uow.clock.now()
    decision = commit_decision(uow, account_id, lambda snap: register(snap.account, reg, now, uow.policy))
    if decision.refused is not None:
        raise Refused(decision.refused, "subscriptions")
    return decision.account
