"""The timer-driven sweeps: dunning (contract §3) and reconciliation.

Both read an index rather than every account, re-read each account they are pointed at, and act
on what its state says (the index is a hint). Every step is idempotent per (subscription, step,
episode), so a sweep that runs twice, late, or on two instances at once does each thing once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from shared.gateway.protocol import GatewayError, PaymentGateway
from shared.handlers import Lifecycle, commit_decision
from shared.lifecycle.dunning import advance
from shared.lifecycle.model import Account, SubscriptionState
from shared.lifecycle.work import Decision, Work
from shared.policy import DunningPolicy
from shared.settlement import NoCardOnFile, settle_account
from shared.store.accounts import Snapshot
from shared.store.indexes import Indexes, Ladder
from shared.store.leases import AccountLeases, LeaseBusy

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    accounts: int = 0
    stale: int = 0
    retries: int = 0
    retried_paid: int = 0
    reconciled: list[str] = field(default_factory=list)
    erased: list[str] = field(default_factory=list)


Step = Callable[[Account, datetime, DunningPolicy], tuple[Decision, bool]]


def sweep_due(lc: Lifecycle, indexes: Indexes, ladder: Ladder, due_of: Callable[[Account], datetime | None],
              step: Step, then: Callable[[str, SweepReport], None]) -> SweepReport:
    """Walk the index entries of `ladder` that are due, re-read each account, commit `step` on it,
    and call `then` for the accounts whose step asked for more (a retry, an erasure)."""
    report = SweepReport()
    now = lc.clock.now()
    for entry in indexes.due(now, ladder):
        due = due_of(lc.store.load(entry.account_id).account)
        if due is None or due > now:
            report.stale += 1  # paid, or rescheduled: the account's own state says there is nothing yet
            indexes.done(entry)
            continue
        report.accounts += 1
        if _commit_step(lc, entry.account_id, now, step):
            then(entry.account_id, report)
        indexes.done(entry)
    return report


def _commit_step(lc: Lifecycle, account_id: str, now: datetime, step: Step) -> bool:
    more = False

    def decide(snap: Snapshot) -> Decision:
        nonlocal more
        decision, more = step(snap.account, now, lc.policy)
        return decision

    commit_decision(lc, account_id, decide)
    return more


def dunning_sweep(lc: Lifecycle, indexes: Indexes, gateway: PaymentGateway | None, leases: AccountLeases,
                  ) -> SweepReport:
    def retry(account_id: str, report: SweepReport) -> None:
        if gateway is not None:
            report.retries += 1
            report.retried_paid += _retry(lc, gateway, leases, account_id)

    return sweep_due(lc, indexes, "due", lambda a: a.next_due_at, advance, retry)


def _retry(lc: Lifecycle, gateway: PaymentGateway, leases: AccountLeases, account_id: str) -> int:
    """The automatic retry is a settlement with the saved card: the same function the API calls."""
    try:
        return len(settle_account(lc, gateway, leases, account_id, wait=2.0).paid)
    except (LeaseBusy, NoCardOnFile):
        return 0  # a settlement is already in flight, or the card was removed meanwhile
    except GatewayError as exc:
        log.warning("account %s: automatic retry could not reach the gateway: %s", account_id, exc)
        return 0


def reconciliation_sweep(lc: Lifecycle, indexes: Indexes) -> SweepReport:
    """The source document's "payment processed but the subscription is still disabled": re-enable
    what owes nothing, and say so loudly, because it means something upstream went wrong."""
    report = SweepReport()
    now = lc.clock.now()
    for account_id in indexes.disabled():
        report.accounts += 1
        decision = commit_decision(lc, account_id, lambda snap: _reconcile(snap.account, now, lc.policy))
        fixed = [t.subscription_id or "" for t in decision.timeline if t.kind == "reconciled"]
        if fixed:
            log.warning("account %s: re-enabled %s, which were disabled with nothing owing", account_id, fixed)
            report.reconciled += [f"{account_id}/{s}" for s in fixed]
        elif not any(s.state is SubscriptionState.DISABLED for s in decision.account.subscriptions.values()):
            indexes.set_disabled(account_id, False)  # a stale hint
    return report


def _reconcile(account: Account, now: datetime, policy: DunningPolicy) -> Decision:
    stuck = [s.subscription_id for s in account.subscriptions.values()
             if s.state is SubscriptionState.DISABLED and not account.outstanding_of(s.subscription_id)]
    if not stuck:
        return Decision(account)
    work = Work(account, {}, now, occasion=f"reconcile-{account.revision + 1}")
    for sub_id in stuck:
        work.log("reconciled", "disabled with nothing owing: re-enabled by the reconciliation sweep", sub_id)
    return work.finish(policy)
