"""How a decision's rows are split to fit Table Storage's transactions, and the in-memory store
modelling the same: a crash between the transactions of one decision, then the redelivery, ends
where one uninterrupted run ends."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from azure.data.tables import EdmType, EntityProperty
from hypothesis import given
from hypothesis import strategies as st

from shared.adapters.store.decision_rows import (
    CONTINUATION_RAW_BYTES,
    MAX_OPERATIONS,
    WRITES_PER_CONTINUATION,
    DecisionRows,
    account_entity,
    continuation_rows,
    entity_size,
    fits_one_transaction,
    split,
    timeline_entities,
    writes_in,
)
from shared.domain.decision import Decision
from shared.domain.effects import TimelineEntry
from shared.domain.facts import ChargeFailed, PaymentReceived
from shared.domain.model import Account, Profile, SubscriptionState
from shared.domain.money import Money
from shared.domain.payments import Registration, apply_payment_event, register
from shared.faults import CrashInjected, Faults
from shared.services.unit_of_work import UnitOfWork, apply_event, commit_decision
from tests.fakes.dispatcher import RecordingDispatcher
from tests.fakes.memory_store import InMemoryAccountStore
from tests.fakes.unit_of_work import in_memory_unit_of_work

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CONTACTS = tuple(f"ap{n}@contoso.example" for n in range(5))

entities = st.lists(st.builds(
    lambda n, text, big: {"PartitionKey": "acc", "RowKey": f"charge|{n}", "detail": text,
                          "amountMinor": EntityProperty(big, EdmType.INT64), "at": NOW + timedelta(seconds=n)},
    st.integers(0, 10**6), st.text(max_size=20_000), st.integers(-(2**63), 2**63 - 1)), max_size=300)


@given(entities)
def test_continuation_rows_carry_every_write_in_order_within_the_limits(writes: list[dict[str, object]]) -> None:
    rows = continuation_rows("acc", 7, writes)
    assert [w for row in rows for w in writes_in(row)] == writes  # typed values (Int64, datetime) survive
    for row in rows:
        carried = writes_in(row)
        assert 1 <= len(carried) <= WRITES_PER_CONTINUATION  # applied with its own deletion: <= 100 operations
        assert len(carried) == 1 or sum(entity_size(w) for w in carried) <= CONTINUATION_RAW_BYTES
        assert entity_size(row) < 1024 * 1024 // 2  # under 1 MiB counted as UTF-16
    assert [r["RowKey"] for r in rows] == sorted(r["RowKey"] for r in rows)


def test_a_small_decision_is_one_transaction_and_a_large_one_raises_the_flag() -> None:
    account = Account("acc", Profile("Contoso", "en", CONTACTS))
    small = DecisionRows([{"PartitionKey": "acc", "RowKey": f"charge|{n}"} for n in range(98)], [])
    row = account_entity(account, follow_ups=False)
    upserts, follow = split(row, [{"PartitionKey": "acc", "RowKey": "event|x"}], small, 1)
    assert not follow and upserts == small.writes and row["followUps"] is False
    large = DecisionRows([{"PartitionKey": "acc", "RowKey": f"charge|{n}", "d": "x" * 500} for n in range(1200)], [])
    upserts, follow = split(row, [{"PartitionKey": "acc", "RowKey": "event|x"}], large, 1)
    assert follow and row["followUps"] is True
    assert all(u["RowKey"].startswith("cont|") for u in upserts)
    assert fits_one_transaction([row, {}, *upserts]) and len(upserts) + 2 <= MAX_OPERATIONS


def test_a_long_timeline_spills_into_rows_that_sort_between_the_decisions_before_and_after() -> None:
    entries = [TimelineEntry(NOW, "charge_paid", f"charge c{n}") for n in range(450)]
    rows = timeline_entities("acc", entries, 5)
    keys = [r["RowKey"] for r in rows]
    assert len(rows) == 3 and keys == sorted(keys)
    assert not any(b.startswith(a) for a in keys for b in keys if a != b)  # a cursor row never takes in the next
    assert timeline_entities("acc", entries[:1], 4)[0]["RowKey"] < keys[0]
    assert keys[-1] < timeline_entities("acc", entries[:1], 6)[0]["RowKey"]


class CrashBetween(Faults):
    def __init__(self) -> None:
        self.armed = True

    def between_transactions(self) -> None:
        if self.armed:
            self.armed = False
            raise CrashInjected("between transactions")


def _world(faults: Faults) -> tuple[InMemoryAccountStore, RecordingDispatcher, UnitOfWork]:
    store = InMemoryAccountStore(faults)
    dispatcher = RecordingDispatcher(store)
    uow = in_memory_unit_of_work(NOW, faults=faults, accounts=store, dispatcher=dispatcher)
    subs = tuple((f"s{i:03d}", f"Service {i}") for i in range(200))
    account = register(Account("acc"), Registration(Profile("Contoso", "en", CONTACTS), subs), NOW, uow.policy).account
    for i in range(200):
        account = apply_payment_event(account, ChargeFailed(f"e{i}", "acc", f"s{i:03d}", f"c{i:03d}",
                                                            Money.parse("10.00", "USD"), "card_declined"),
                                      {}, NOW, uow.policy).account
    commit_decision(uow, "acc", lambda snap: Decision(account))
    return store, dispatcher, uow


def test_the_in_memory_store_finishes_a_decision_a_crash_split_like_table_storage() -> None:
    payment = PaymentReceived("pay", "acc", "p1", Money.parse("2000.00", "USD"), "wire")
    store, sent, uow = _world(Faults())
    apply_event(uow, payment, "billing.payment.received")
    crashed, crashed_sent, crashed_lc = _world(CrashBetween())
    try:
        apply_event(crashed_lc, payment, "billing.payment.received")
        raise AssertionError("the crash was not injected")
    except CrashInjected:
        pass
    assert crashed.flagged == {"acc"} and crashed.timeline("acc") == []
    assert {s.state for s in crashed.load("acc").account.subscriptions.values()} == {SubscriptionState.ACTIVE}
    assert apply_event(crashed_lc, payment, "billing.payment.received").duplicate
    assert crashed.flagged == set() and crashed.continuations == {}
    assert crashed.timeline("acc") == store.timeline("acc")
    assert crashed.charge_notes("acc") == store.charge_notes("acc")
    assert Counter(r.key for r in crashed_sent.sent) == Counter(r.key for r in sent.sent)
    assert Counter(r.kind for r in sent.sent) == {"lifecycle": 200, "email": 5}
