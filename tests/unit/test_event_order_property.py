"""Property: any delivery of a set of events — shuffled, with duplicates — ends where delivering
each event once, in order, ends. Run through the real service layer on the in-memory store, so
the event-id dedupe is the product's own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.facts import ChargeFailed, ChargeSucceeded, ChargeVoided, PaymentEvent, PaymentReceived
from shared.domain.model import Account, SubscriptionState
from shared.domain.money import Money
from shared.services.unit_of_work import UnitOfWork, apply_event
from tests.fakes.dispatcher import RecordingDispatcher
from tests.fakes.memory_store import InMemoryAccountStore
from tests.fakes.unit_of_work import in_memory_unit_of_work

NOW = datetime(2026, 12, 1, tzinfo=UTC)
CHARGES = {  # charge id -> (subscription, amount)
    "c1": ("s1", Money.parse("10.00", "USD")),
    "c2": ("s1", Money.parse("5.00", "USD")),
    "c3": ("s2", Money.parse("1000", "JPY")),
    "c4": ("s2", Money.parse("7.00", "USD")),
}


@dataclass
class World:
    store: InMemoryAccountStore
    uow: UnitOfWork
    dispatcher: RecordingDispatcher


def world() -> World:
    store = InMemoryAccountStore()
    dispatcher = RecordingDispatcher(store)
    return World(store, in_memory_unit_of_work(NOW, accounts=store, dispatcher=dispatcher), dispatcher)


@st.composite
def charge_event(draw: st.DrawFn, n: int, named_only: bool) -> PaymentEvent:
    cid = draw(st.sampled_from(sorted(CHARGES)))
    sub, amount = CHARGES[cid]
    kind = draw(st.sampled_from(["failed", "failed", "succeeded", "voided", "payment"]))
    eid = f"e{n}"
    if kind == "failed":
        return ChargeFailed(eid, "acc", sub, cid, amount, draw(st.sampled_from(["card_declined", "card_expired"])))
    if kind == "succeeded":
        return ChargeSucceeded(eid, "acc", sub, cid, amount)
    if kind == "voided":
        return ChargeVoided(eid, "acc", cid)
    paid = Money(draw(st.integers(1, amount.minor * 2)), amount.currency)
    names: tuple[str, ...] = (cid,) if named_only or draw(st.booleans()) else ()
    return PaymentReceived(eid, "acc", f"pay{n}", paid, "wire", names)


@st.composite
def deliveries(draw: st.DrawFn, named_only: bool) -> tuple[list[PaymentEvent], list[PaymentEvent]]:
    count = draw(st.integers(1, 10))
    events = [draw(charge_event(i, named_only)) for i in range(count)]
    repeats = draw(st.lists(st.sampled_from(events), max_size=6))
    delivered = draw(st.permutations(events + repeats))
    return events, delivered


def play(events: list[PaymentEvent]) -> World:
    w = world()
    for e in events:
        apply_event(w.uow, e, type(e).__name__)
    return w


def final(w: World) -> tuple[Account, dict[str, str]]:
    account = w.store.load("acc").account
    return account, {n.charge_id: str(n.status) for n in w.store.charge_notes("acc")}


@settings(max_examples=400, deadline=None)
@given(deliveries(named_only=True))
def test_any_order_with_duplicates_ends_in_the_same_state(case: tuple[list[PaymentEvent], list[PaymentEvent]]) -> None:
    events, delivered = case
    once, shuffled = play(events), play(delivered)
    a, _ = final(once)
    b, _ = final(shuffled)
    # Credit meets debt in any order (contract §1): the balance, the credit and what is held for
    # charges not yet reported never depend on the order; which charges credit paid may.
    assert a.balance() == b.balance()
    assert a.credit == b.credit and a.earmarks == b.earmarks
    for acc in (a, b):
        assert_credit_never_beside_debt(acc)


def assert_credit_never_beside_debt(acc: Account) -> None:
    """Nothing is past due while credit covers it, and a subscription owes iff it is not active."""
    for cur, minor in acc.credit.items():
        assert minor == 0 or cur not in acc.balance(), f"{cur} credit beside {cur} debt"
    for sub in acc.subscriptions.values():
        assert bool(acc.outstanding_of(sub.subscription_id)) == (sub.state is not SubscriptionState.ACTIVE)


@settings(max_examples=300, deadline=None)
@given(deliveries(named_only=False))
def test_payments_without_named_charges_never_change_what_is_owed_net_of_credit(
        case: tuple[list[PaymentEvent], list[PaymentEvent]]) -> None:
    # Which charge an unnamed payment covers depends on what is outstanding when it arrives
    # (documented in shared/domain/payments.py); what the customer owes net of credit does not.
    events, delivered = case
    a, _ = final(play(events))
    b, _ = final(play(delivered))

    def net(acc: Account) -> dict[str, int]:
        totals = {cur: m.minor for cur, m in acc.balance().items()}
        for cur, minor in acc.credit.items():
            totals[cur] = totals.get(cur, 0) - minor
        for m in acc.earmarks.values():
            totals[m.currency] = totals.get(m.currency, 0) - m.minor
        return {cur: v for cur, v in totals.items() if v}

    assert net(a) == net(b)
    assert a.balance() == b.balance() and a.credit == b.credit  # not only net: credit meets debt
    assert_credit_never_beside_debt(a)
    assert_credit_never_beside_debt(b)


@settings(max_examples=200, deadline=None)
@given(deliveries(named_only=True))
def test_each_transition_leaves_exactly_once(case: tuple[list[PaymentEvent], list[PaymentEvent]]) -> None:
    _events, delivered = case
    w = play(delivered)
    keys = [r.key for r in w.dispatcher.sent]
    assert len(keys) == len(set(keys)), "an effect left twice"
    assert w.store.pending_outbox("acc") == []
