"""The dunning and reconciliation sweeps on real Table Storage, pointed by their indexes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import requests

from devstack.sandbox_gateway import start_in_thread
from shared.adapters.gateway.http import HttpPaymentGateway
from shared.adapters.store.indexes import SHARDS
from shared.bootstrap import Services
from shared.domain.decision import Decision
from shared.domain.effects import TimelineEntry
from shared.domain.facts import ChargeFailed
from shared.domain.model import PaymentMethod, Profile, SubscriptionState
from shared.domain.money import Money
from shared.domain.payments import Registration
from shared.faults import CrashInjected, Faults
from shared.services.sweep_work import SWEEP_CLAIM, SweepPage, SweepWork, fan_out, run_work
from shared.services.unit_of_work import apply_event, commit_decision, register_account
from tests.integration.queues import queue
from tests.integration.queues import queue as queue_of
from tests.integration.sweeping import drain, expand_pages, sweep

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sandbox(storage_connection_string: str) -> Iterator[str]:
    with start_in_thread(storage_connection_string) as sb:
        yield sb.url


@pytest.fixture
def svc(make_services: Callable[..., Services], sandbox: str) -> Services:
    s = make_services(gateway=HttpPaymentGateway(sandbox, "sandbox-local-key"))
    s.test_clock.set(T0)  # type: ignore[union-attr]
    return s


def owing(s: Services, account_id: str, reason: str = "insufficient_funds", token: str | None = "tok_visa") -> None:
    card = PaymentMethod("card", token, "visa", "4242", 12, 2030) if token else None
    register_account(s.uow, account_id, Registration(Profile("Contoso", "en", ("ap@contoso.example",), card),
                                                          (("s1", "Web"),)))
    apply_event(s.uow, ChargeFailed(f"e-{account_id}", account_id, "s1", "c1", Money.parse("10.00", "USD"),
                                          reason), "billing.charge.failed")  # type: ignore[arg-type]


def lifecycle_types(s: Services, account_id: str) -> list[str]:
    queue = queue_of(s, "subscription-lifecycle")
    events = [json.loads(m.content) for m in queue.peek_messages(max_messages=32)]
    return [e["type"] for e in events if e["data"]["accountId"] == account_id]


def test_a_sweep_on_day_31_disables_and_reschedules_and_a_second_sweep_does_nothing(svc: Services) -> None:
    owing(svc, "acc-late", reason="card_expired")  # hard decline: no retries get in the way
    assert [e.account_id for e in svc.uow.indexes.due(T0 + timedelta(days=1))] == ["acc-late"]
    svc.test_clock.set(T0 + timedelta(days=31))  # type: ignore[union-attr]
    report = sweep(svc, "dunning")
    assert report.queued == 1 and report.outcomes == {"stepped": 1}
    account = svc.uow.accounts.load("acc-late").account
    assert account.subscriptions["s1"].state is SubscriptionState.DISABLED
    assert account.next_due_at == T0 + timedelta(days=90)
    assert lifecycle_types(svc, "acc-late") == ["subscription.past_due", "subscription.disabled"]
    assert [e.at for e in svc.uow.indexes.due(T0 + timedelta(days=365))] == [T0 + timedelta(days=90)]
    again = sweep(svc, "dunning")
    assert again.queued == 0 and lifecycle_types(svc, "acc-late") == ["subscription.past_due",
                                                                         "subscription.disabled"]
    assert "acc-late" in svc.uow.indexes.disabled()


def test_the_day_one_retry_charges_the_saved_card_and_reactivates(svc: Services, sandbox: str) -> None:
    owing(svc, "acc-retry")
    svc.test_clock.set(T0 + timedelta(days=1, hours=1))  # type: ignore[union-attr]
    report = sweep(svc, "dunning")
    assert report.outcomes == {"retried": 1} and report.paid == 1
    assert svc.uow.accounts.load("acc-retry").account.subscriptions["s1"].state is SubscriptionState.ACTIVE
    charges = requests.get(f"{sandbox}/charges", params={"accountId": "acc-retry"}, timeout=10).json()
    assert [(c["amount"], c["status"]) for c in charges] == [("10.00", "succeeded")]


def test_a_stale_index_entry_is_repaired_not_acted_on(svc: Services) -> None:
    owing(svc, "acc-stale", token=None)
    svc.uow.indexes.mark_due("acc-stale", T0 - timedelta(days=5))  # a hint that no longer holds
    report = sweep(svc, "dunning")
    assert report.outcomes == {"stale": 1}
    assert [e.at for e in svc.uow.indexes.due(T0 + timedelta(days=400))] == [T0 + timedelta(days=1)]


def test_reconciliation_re_enables_a_disabled_subscription_with_nothing_owing(svc: Services) -> None:
    register_account(svc.uow, "acc-stuck", Registration(Profile("Contoso", "en", ("ap@contoso.example",)),
                                                             (("s1", "Web"),)))

    def stuck(snap: object) -> Decision:  # what a bug upstream could leave behind
        acc = svc.uow.accounts.load("acc-stuck").account
        return Decision(replace(acc.with_subscription(replace(acc.subscriptions["s1"],
                                                              state=SubscriptionState.DISABLED, disabled_at=T0)),
                                revision=acc.revision + 1),
                        timeline=(TimelineEntry(T0, "operator_edit", "disabled by hand, with nothing owing"),))

    commit_decision(svc.uow, "acc-stuck", stuck)
    svc.uow.indexes.set_disabled("acc-stuck", True)
    report = sweep(svc, "reconciliation")
    assert report.reconciled == ["acc-stuck/s1"]
    assert svc.uow.accounts.load("acc-stuck").account.subscriptions["s1"].state is SubscriptionState.ACTIVE
    assert "reconciled" in [e["kind"] for e in svc.uow.accounts.timeline("acc-stuck")]
    assert lifecycle_types(svc, "acc-stuck") == ["subscription.reactivated"]
    assert "acc-stuck" not in svc.uow.indexes.disabled()


def test_the_timer_queues_each_due_account_once_a_page_at_a_time_and_never_twice_while_it_waits(svc: Services) -> None:
    for n in range(3):
        owing(svc, f"acc-q{n}", reason="card_expired")
    svc.test_clock.set(T0 + timedelta(days=35))  # type: ignore[union-attr]
    owing(svc, "acc-later", reason="card_expired")  # its first step is due after the others'
    svc.test_clock.set(T0 + timedelta(days=31))  # type: ignore[union-attr]
    first = fan_out(svc.uow, "dunning")
    pages = [SweepPage.from_message(m.content) for m in queue(svc, "sweep-pages").peek_messages(max_messages=32)]
    assert not queue(svc, "sweep-work").peek_messages(max_messages=32)  # the timer sends pages, not per-account work
    assert expand_pages(svc) == len(pages) <= SHARDS
    queued = [SweepWork.from_message(m.content) for m in queue(svc, "sweep-work").peek_messages(max_messages=32)]
    assert first.queued == 3 and sorted(w.entry.account_id for w in queued) == ["acc-q0", "acc-q1", "acc-q2"]
    assert {w.sweep for w in queued} == {"dunning"}
    # The timer's run changed no account: the work is the queue's.
    assert svc.uow.accounts.load("acc-q0").account.subscriptions["s1"].state is SubscriptionState.PAST_DUE
    assert fan_out(svc.uow, "dunning").queued == 0  # claimed while their messages wait
    svc.test_clock.set(T0 + timedelta(days=31) + SWEEP_CLAIM + timedelta(seconds=1))  # type: ignore[union-attr]
    assert fan_out(svc.uow, "dunning").queued == 3  # a lost message's account comes back after its claim
    done = drain(svc)
    assert sorted(d.outcome for d in done) == ["stale"] * 3 + ["stepped"] * 3  # the repeat finds nothing to do
    assert all(svc.uow.accounts.load(f"acc-q{n}").account.subscriptions["s1"].state is SubscriptionState.DISABLED
               for n in range(3))


def test_a_timer_out_of_time_leaves_the_rest_to_the_next_run_taking_every_shard_in_turn(svc: Services) -> None:
    accounts = [f"acc-many-{n:04d}" for n in range(260)]
    for account_id in accounts:  # index rows only: the timer never reads an account
        svc.uow.indexes.mark_due(account_id, T0 - timedelta(hours=1))
    first = fan_out(svc.uow, "dunning", budget=timedelta(0))
    assert not first.finished and 0 < first.queued <= 100
    rest = fan_out(svc.uow, "dunning")
    assert rest.finished and first.queued + rest.queued == len(accounts)
    pages = [SweepPage.from_message(m.content) for m in queue(svc, "sweep-pages").peek_messages(max_messages=32)]
    assert all(len({e.partition for e in p.entries}) == 1 for p in pages)  # a page is one shard's
    assert expand_pages(svc) == len(pages) < len(accounts) // 10  # a send per page, not per account
    messages = []
    while batch := list(queue(svc, "sweep-work").receive_messages(max_messages=32)):
        messages += [SweepWork.from_message(m.content) for m in batch]
        for m in batch:
            queue(svc, "sweep-work").delete_message(m)
    assert sorted(w.entry.account_id for w in messages) == accounts  # each exactly once
    first_shards = [w.entry.partition for w in messages[:SHARDS * 5]]
    assert len(set(first_shards)) > 1  # a page from each shard in turn, not one shard after another



def test_an_unreadable_index_row_is_skipped_and_never_stops_its_shard(svc: Services) -> None:
    accounts = [f"acc-shard-{n:02d}" for n in range(40)]
    for account_id in accounts:
        svc.uow.indexes.mark_due(account_id, T0 - timedelta(hours=1))
    # Rows no writer of this code makes (a hand edit, a bad migration), sorted first in every shard.
    for n in range(SHARDS):
        svc.uow.indexes.table.upsert_entity({"PartitionKey": f"due-{n}", "RowKey": "20000101T000000000000Z|no-account",
                                         "at": "2000-01-01T00:00:00+00:00"})
        svc.uow.indexes.table.upsert_entity({"PartitionKey": f"due-{n}", "RowKey": "20000101T000000000001Z|bad-time",
                                         "accountId": "bad-time", "at": "yesterday"})
    report = fan_out(svc.uow, "dunning")
    assert report.finished and report.queued == len(accounts)
    assert expand_pages(svc) >= 1
    queued = []
    while batch := list(queue(svc, "sweep-work").receive_messages(max_messages=32)):
        queued += [SweepWork.from_message(m.content).entry.account_id for m in batch]
        for m in batch:
            queue(svc, "sweep-work").delete_message(m)
    assert sorted(queued) == accounts


class _FailAfterCommit(Faults):
    """Storage fails between a step's commit and its outbox (a "connection reset" the soak met)."""

    def __init__(self) -> None:
        self.armed = False

    def before_dispatch(self) -> None:
        if self.armed:
            self.armed = False
            raise CrashInjected("before_dispatch")


def test_a_retried_sweep_message_finishes_the_outbox_its_failed_attempt_left(
        make_services: Callable[..., Services], sandbox: str) -> None:
    # Found by the soak: the reminder step committed, writing the next due entry failed, and the
    # retry found the step taken ("stale") and dropped the account from the dunning sweep for good.
    faults = _FailAfterCommit()
    s = make_services(gateway=HttpPaymentGateway(sandbox, "sandbox-local-key"), faults=faults)
    s.test_clock.set(T0)  # type: ignore[union-attr]
    owing(s, "acc-reset", reason="card_expired")  # no retries in the way
    s.test_clock.set(T0 + timedelta(days=7, hours=1))  # type: ignore[union-attr]
    assert fan_out(s.uow, "dunning").queued == 1
    expand_pages(s)
    message = next(iter(queue(s, "sweep-work").receive_messages(max_messages=1, visibility_timeout=60)))
    work = SweepWork.from_message(message.content)
    faults.armed = True
    with pytest.raises(CrashInjected):
        run_work(s.uow, s.gateway, s.mail_index, work)
    # the claimed entry stays; the next one (day 14) was written before the step's commit
    assert [e.at for e in s.uow.indexes.due(T0 + timedelta(days=365))] == [T0 + timedelta(days=1),
                                                                       T0 + timedelta(days=14)]
    assert run_work(s.uow, s.gateway, s.mail_index, work, retried=True).outcome == "stale"
    assert [e.at for e in s.uow.indexes.due(T0 + timedelta(days=365))] == [T0 + timedelta(days=14)]
    assert [r.kind for r in s.uow.accounts.pending_outbox("acc-reset") if r.kind != "email"] == []
