"""Decisions of any size take effect exactly once (issue 17, point 1), on real Table Storage and
queues, at the API's maxima: 200 subscriptions x 5 billing contacts, every subscription changing
state in one decision, with a crash injected between the transactions of that decision and the
redelivery, the retried request or the next sweep finishing it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest
import requests
from azure.storage.queue import QueueClient

from shared.adapters.gateway.http import HttpPaymentGateway
from shared.bootstrap import Services
from shared.domain.decision import Decision, MailRecord
from shared.domain.dunning import advance
from shared.domain.effects import TimelineEntry
from shared.domain.facts import ChargeFailed, PaymentReceived
from shared.domain.model import Account, PaymentMethod, Profile, SubscriptionState
from shared.domain.money import Money
from shared.domain.payments import Registration, apply_payment_event, register
from shared.domain.retention import REDACTED, advance_retention
from shared.faults import CrashInjected, Faults
from shared.services.settle_account import update_card_and_settle
from shared.services.sweep_work import SweepName, SweepWork, fan_out, run_work
from shared.services.unit_of_work import apply_event, commit_decision
from tests.integration.queues import queue
from tests.integration.sweeping import expand_pages, sweep

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SUBSCRIPTIONS = 200  # the API's maximum
CONTACTS = tuple(f"ap{n}@contoso.example" for n in range(5))  # the API's maximum
ACCOUNT = "acc-large"
Ladder = Literal["due", "retention"]


def usd(s: str) -> Money:
    return Money.parse(s, "USD")


class CrashBetweenTransactions(Faults):
    """The process dies once, right after the first transaction of a decision too large for one."""

    def __init__(self) -> None:
        self.crashed = 0

    def between_transactions(self) -> None:
        if not self.crashed:
            self.crashed += 1
            raise CrashInjected("between transactions")


@dataclass
class Outside:
    """What left the product, read off the real queues (each message taken once)."""

    lifecycle: QueueClient
    email: QueueClient

    def lifecycle_events(self) -> list[dict[str, Any]]:
        return [json.loads(m) for m in _drain(self.lifecycle)]

    def email_handoffs(self) -> list[str]:
        return [json.loads(m)["key"] for m in _drain(self.email)]


def _drain(queue: QueueClient) -> list[str]:
    """Every message not read before (each read hides it for the rest of the test)."""
    out: list[str] = []
    while batch := list(queue.receive_messages(messages_per_page=32, visibility_timeout=3600, max_messages=32)):
        out += [m.content for m in batch]
    return out


@pytest.fixture
def svc(make_services: Callable[..., Services], sandbox: str) -> Services:
    s = make_services(gateway=HttpPaymentGateway(sandbox, "sandbox-local-key"))
    s.test_clock.set(T0)  # type: ignore[union-attr]
    s.uow.redelivery_grace = timedelta(0)  # the redelivery comes after the host's visibility timeout
    return s


@pytest.fixture
def crashing(make_services: Callable[..., Services], sandbox: str) -> Services:
    """A second instance on the same tables, which dies between the transactions of a decision."""
    s = make_services(faults=CrashBetweenTransactions(), gateway=HttpPaymentGateway(sandbox, "sandbox-local-key"))
    s.uow.redelivery_grace = timedelta(0)
    return s


@pytest.fixture
def outside(svc: Services) -> Outside:
    return Outside(queue(svc, "subscription-lifecycle"), queue(svc, "email-outbox"))


def every_subscription_past_due(svc: Services, method: PaymentMethod | None) -> Account:
    """200 subscriptions, each with one failed 10.00 charge, past due since T0."""
    account = _past_due(svc, method)
    _store(svc, account, "due", account.next_due_at)
    return account


def _store(svc: Services, account: Account, ladder: Ladder, due: datetime | None) -> None:
    """Store an account built with the pure core as one decision, so the queues start empty."""
    commit_decision(svc.uow, ACCOUNT, lambda snap: Decision(account))
    assert due is not None
    svc.uow.indexes.mark_due(ACCOUNT, due, ladder)


def _past_due(svc: Services, method: PaymentMethod | None) -> Account:
    policy = svc.uow.policy
    subs = tuple((f"s{i:03d}", f"Service {i}") for i in range(SUBSCRIPTIONS))
    account = register(Account(ACCOUNT), Registration(Profile("Contoso", "en", CONTACTS, method), subs), T0,
                       policy).account
    for i in range(SUBSCRIPTIONS):
        failed = ChargeFailed(f"e-c{i:03d}", ACCOUNT, f"s{i:03d}", f"c{i:03d}", usd("10.00"), "insufficient_funds")
        account = apply_payment_event(account, failed, {}, T0, policy).account
    return account


def assert_finished(svc: Services) -> None:
    """No follow-up write waits: no continuation row, and the account row's flag is down."""
    table = svc.uow.accounts.table
    assert list(table.query_entities("PartitionKey eq @pk and RowKey ge 'cont|' and RowKey lt 'cont}'",
                                     parameters={"pk": ACCOUNT})) == []
    assert table.get_entity(ACCOUNT, "account").get("followUps") is False


def assert_each_once(entries: list[dict[str, Any]]) -> None:
    seen = Counter(json.dumps(e, sort_keys=True) for e in entries)
    assert [e for e, n in seen.items() if n > 1] == []


def assert_all_settled(svc: Services, outside: Outside) -> None:
    account = svc.uow.accounts.load(ACCOUNT).account
    assert account.outstanding == {}
    assert {s.state for s in account.subscriptions.values()} == {SubscriptionState.ACTIVE}
    notes = svc.uow.accounts.charge_notes(ACCOUNT)
    assert len(notes) == SUBSCRIPTIONS and {str(n.status) for n in notes} == {"paid"}
    events = outside.lifecycle_events()
    assert len(events) == SUBSCRIPTIONS and len({e["id"] for e in events}) == SUBSCRIPTIONS
    assert {e["type"] for e in events} == {"subscription.reactivated"}
    assert {e["data"]["subscriptionId"] for e in events} == set(account.subscriptions)
    # One receipt per billing contact, waiting for the sender, which has been handed each (a
    # redelivery hands a row over again: the sender's claim and mail record keep it to one email).
    handed = set(outside.email_handoffs())
    waiting = svc.uow.accounts.pending_outbox(ACCOUNT)
    assert {r.key for r in waiting} == handed and len(handed) == len(CONTACTS)
    assert {r.payload["kind"] for r in waiting} == {"payment_settled"}
    timeline = svc.uow.accounts.timeline(ACCOUNT)  # (a retried card update saves the card twice, rightly)
    assert_each_once([e for e in timeline if e["kind"] != "payment_method_updated"])
    assert Counter(e["kind"] for e in timeline if e["kind"] in ("charge_paid", "state_changed")) == {
        "charge_paid": SUBSCRIPTIONS, "state_changed": SUBSCRIPTIONS}
    assert_finished(svc)


@pytest.mark.parametrize("crash", [False, True], ids=["straight", "crash-between-transactions"])
def test_a_payment_over_200_charges_without_names_settles_every_one_once(
        svc: Services, crashing: Services, outside: Outside, crash: bool) -> None:
    every_subscription_past_due(svc, None)
    payment = PaymentReceived("evt-wire", ACCOUNT, "pay-1", usd("2000.00"), "wire")
    if crash:
        with pytest.raises(CrashInjected):
            apply_event(crashing.uow, payment, "billing.payment.received")
        # Money and states committed together in the first transaction; the rest waits.
        committed = svc.uow.accounts.load(ACCOUNT).account
        assert committed.outstanding == {}
        assert {s.state for s in committed.subscriptions.values()} == {SubscriptionState.ACTIVE}
        assert outside.lifecycle_events() == [] and svc.uow.accounts.timeline(ACCOUNT) == []
    first = apply_event(svc.uow, payment, "billing.payment.received")  # the redelivery, or the only run
    assert first.duplicate is crash
    again = apply_event(svc.uow, payment, "billing.payment.received")
    assert again.duplicate
    assert_all_settled(svc, outside)


@pytest.mark.parametrize("crash", [False, True], ids=["straight", "crash-between-transactions"])
def test_a_card_update_over_200_charges_charges_once_and_records_it(
        svc: Services, crashing: Services, outside: Outside, sandbox: str, crash: bool) -> None:
    every_subscription_past_due(svc, None)
    if crash:
        with pytest.raises(CrashInjected):
            update_card_and_settle(crashing.uow, crashing.gateway,  # type: ignore[arg-type]
                                   ACCOUNT, "tok_visa")
        assert svc.uow.accounts.load(ACCOUNT).account.outstanding == {}  # the charge is recorded with the money
    retried = update_card_and_settle(svc.uow, svc.gateway, ACCOUNT,  # type: ignore[arg-type]
                                     "tok_visa")  # the client's retry, or the only request
    assert retried.status == "settled"
    if not crash:
        assert len(retried.settlement.paid) == SUBSCRIPTIONS
        assert retried.settlement.totals() == {"USD": "2000.00"}
    charged = requests.get(f"{sandbox}/charges", params={"accountId": ACCOUNT}, timeout=10).json()
    assert [(c["amount"], c["currency"], c["status"]) for c in charged] == [("2000.00", "USD", "succeeded")]
    assert_all_settled(svc, outside)


CANCEL = T0 + timedelta(days=90)
STEPS: list[tuple[str, datetime, Ladder, SubscriptionState, str | None]] = [
    # (email kind, when, sweep, state after, lifecycle event)
    ("payment_reminder", T0 + timedelta(days=7), "due", SubscriptionState.PAST_DUE, None),
    ("disable_warning", T0 + timedelta(days=27), "due", SubscriptionState.PAST_DUE, None),
    ("service_disabled", T0 + timedelta(days=30), "due", SubscriptionState.DISABLED, "subscription.disabled"),
    ("service_canceled", CANCEL, "due", SubscriptionState.CANCELED, "subscription.canceled"),
    ("deletion_warning", CANCEL + timedelta(days=60), "retention", SubscriptionState.CANCELED, None),
    ("data_deleted", CANCEL + timedelta(days=90), "retention", SubscriptionState.DELETED,
     "subscription.data_deleted"),
]


def _crash_then_redeliver(crashing: Services, svc: Services, ladder: Ladder, outcome: str) -> None:
    """The timer queues the account's work; the instance that takes the message dies between the
    transactions of the decision; the host delivers the message again, to another instance."""
    name: SweepName = "dunning" if ladder == "due" else "retention"
    assert fan_out(crashing.uow, name).queued == 1
    assert expand_pages(svc) == 1
    (message,) = list(queue(svc, "sweep-work").receive_messages(max_messages=32, visibility_timeout=600))
    work = SweepWork.from_message(message.content)
    with pytest.raises(CrashInjected):
        run_work(crashing.uow, crashing.gateway, crashing.mail_index, work)
    assert run_work(svc.uow, svc.gateway, svc.mail_index, work).outcome == outcome
    queue(svc, "sweep-work").delete_message(message)
    assert sweep(svc, name).queued == 0  # and the next sweep finds nothing more to do


def _stored_before(svc: Services, step: int) -> None:
    """Invoice customers (no automatic retry), every subscription at the step before `step`:
    the earlier steps run through the pure core and are stored as one decision, queues empty."""
    policy = svc.uow.policy
    account = _past_due(svc, PaymentMethod("invoice"))
    for _, at, ladder, _, _ in STEPS[:step]:
        account = (advance if ladder == "due" else advance_retention)(account, at, policy)[0].account
    _, at, ladder, _, _ = STEPS[step]
    _store(svc, account, ladder, at)


@pytest.mark.parametrize("step", range(len(STEPS)), ids=[s[0] for s in STEPS])
def test_a_sweep_step_for_200_subscriptions_at_once_happens_once(
        svc: Services, crashing: Services, outside: Outside, step: int) -> None:
    """Every subscription takes the step in one decision; the sweep dies between its transactions
    and the next sweep finishes it: each lifecycle event and email once, nothing lost."""
    _stored_before(svc, step)
    outside.lifecycle_events(), outside.email_handoffs()  # what the setup left is not this step's
    kind, at, ladder, state, event = STEPS[step]
    svc.test_clock.set(at)  # type: ignore[union-attr]
    # The account row committed with the first transaction: only the rest was left to finish (and,
    # once every subscription's data is deleted, the erasure waits for the confirmations to go out).
    _crash_then_redeliver(crashing, svc, ladder, "erasure_waits" if kind == "data_deleted" else "stale")
    account = svc.uow.accounts.load(ACCOUNT).account
    assert {s.state for s in account.subscriptions.values()} == {state}
    events = outside.lifecycle_events()
    assert Counter(e["type"] for e in events) == ({event: SUBSCRIPTIONS} if event else {})
    assert len({e["id"] for e in events}) == len(events)
    assert {e["data"]["subscriptionId"] for e in events} == (set(account.subscriptions) if event else set())
    handed = set(outside.email_handoffs())  # (a row may be handed over twice: see assert_all_settled)
    kinds = {r.key: r.payload["kind"] for r in svc.uow.accounts.pending_outbox(ACCOUNT)}
    assert set(kinds) == handed and len(handed) == SUBSCRIPTIONS * len(CONTACTS)
    assert set(kinds.values()) == {kind}
    timeline = svc.uow.accounts.timeline(ACCOUNT)
    assert_each_once(timeline)
    assert Counter(e["kind"] for e in timeline)["dunning_steps" if ladder == "due" else "state_changed"] == (
        SUBSCRIPTIONS if ladder == "due" or event else 0)
    assert_finished(svc)


def test_erasing_an_account_of_200_deleted_subscriptions_redacts_every_record_once_finished(
        svc: Services, crashing: Services, outside: Outside) -> None:
    """1,000 deletion confirmations sent and recorded; the erasure dies between the batches of its
    redaction and the redelivered work finishes it: no address left, the profile gone last."""
    policy = svc.uow.policy
    account = _past_due(svc, PaymentMethod("invoice"))
    for _, at, ladder, _, _ in STEPS:
        account = (advance if ladder == "due" else advance_retention)(account, at, policy)[0].account
    sent = [(n, contact) for n in range(SUBSCRIPTIONS) for contact in CONTACTS]
    records = Decision(account, timeline=tuple(TimelineEntry(at, "email_sent", f"data_deleted email sent to {c}")
                                               for _, c in sent),
                       mail=tuple(MailRecord(f"k{n}-{c}", "sent", c, "data_deleted", f"op{n}-{c}") for n, c in sent))
    commit_decision(svc.uow, ACCOUNT, lambda snap: records)  # as the sender recorded them
    assert account.erasure_due_at() == at
    svc.uow.indexes.mark_due(ACCOUNT, at, "retention")
    svc.test_clock.set(at + timedelta(hours=2))  # type: ignore[union-attr]
    outside.lifecycle_events(), outside.email_handoffs()
    _crash_then_redeliver(crashing, svc, "retention", "erased")
    assert svc.uow.accounts.load(ACCOUNT).account.profile is None
    timeline = svc.uow.accounts.timeline(ACCOUNT)
    assert len([e for e in timeline if e["kind"] == "email_sent"]) == len(sent)
    assert not [e for e in timeline if "@" in e["detail"]]
    mail = list(svc.uow.accounts.table.query_entities("PartitionKey eq @pk and RowKey ge 'mail|' and RowKey lt 'mail}'",
                                               parameters={"pk": ACCOUNT}))
    assert len(mail) == len(sent) and {m["recipient"] for m in mail} == {REDACTED}
    assert outside.lifecycle_events() == [] and outside.email_handoffs() == []
    assert_finished(svc)
