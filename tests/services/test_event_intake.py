"""Event intake (`apply_event`): exactly-once effects on at-least-once delivery, on the twins.
Moved from tests/integration/test_exactly_once.py, whose assertions were about the service, not
Table Storage (the two-process race stays there)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.facts import ChargeFailed, ChargeSucceeded, PaymentReceived
from shared.domain.limits import MAX_SUBSCRIPTIONS
from shared.domain.model import Profile, SubscriptionState
from shared.domain.money import Money
from shared.domain.payments import Registration
from shared.faults import CrashInjected, Faults
from shared.services.unit_of_work import Refused, UnitOfWork, apply_event, register_account
from tests.fakes.unit_of_work import in_memory_unit_of_work
from tests.services.conftest import ACC, NOW, handed_off, lifecycle_types, register


def usd(s: str) -> Money:
    return Money.parse(s, "USD")


def failed(cid: str, sub: str = "s1", amount: str = "10.00") -> ChargeFailed:
    return ChargeFailed(f"evt-{cid}", ACC, sub, cid, usd(amount), "card_declined")


class CrashOnce(Faults):
    def __init__(self, where: str) -> None:
        self.where = where
        self.armed = True

    def _maybe(self, here: str) -> None:
        if self.armed and here == self.where:
            self.armed = False
            raise CrashInjected(here)

    def before_commit(self) -> None:
        self._maybe("before_commit")

    def before_dispatch(self) -> None:
        self._maybe("before_dispatch")


@pytest.fixture
def svc() -> UnitOfWork:
    uow = in_memory_unit_of_work(NOW)
    register(uow, contacts=("ap@contoso.example",))
    return uow


def crashing(svc: UnitOfWork, where: str, grace: timedelta = timedelta(0)) -> UnitOfWork:
    """A second instance on the same storage, whose process dies once at `where`."""
    return replace(svc, faults=CrashOnce(where), redelivery_grace=grace)


def test_an_event_is_applied_and_its_effects_leave(svc: UnitOfWork) -> None:
    applied = apply_event(svc, failed("c1"), "billing.charge.failed")
    assert not applied.duplicate and applied.account.subscriptions["s1"].state is SubscriptionState.PAST_DUE
    assert lifecycle_types(svc) == ["subscription.past_due"]
    assert len(handed_off(svc)) == 1 and handed_off(svc) == [r.key for r in svc.accounts.pending_outbox(ACC)]
    assert [e.account_id for e in svc.indexes.due(NOW + timedelta(days=30))] == [ACC]


def test_a_redelivered_event_changes_nothing(svc: UnitOfWork) -> None:
    first = apply_event(svc, failed("c1"), "billing.charge.failed")
    etag = svc.accounts.load(ACC).etag
    timeline = svc.accounts.timeline(ACC)
    again = apply_event(svc, failed("c1"), "billing.charge.failed")
    assert not first.duplicate and again.duplicate
    assert svc.accounts.load(ACC).etag == etag
    assert svc.accounts.timeline(ACC) == timeline
    assert lifecycle_types(svc) == ["subscription.past_due"]
    # One email row, still pending for the sender; a hand-off repeated by the redelivery names the same row.
    assert set(handed_off(svc)) == {r.key for r in svc.accounts.pending_outbox(ACC)}
    assert len(set(handed_off(svc))) == 1


def test_an_event_past_a_limit_is_refused_and_changes_nothing(svc: UnitOfWork) -> None:
    register_account(svc, ACC, Registration(Profile("Contoso", "en", ("ap@contoso.example",)),
                                            tuple((f"s{i}", "Web") for i in range(MAX_SUBSCRIPTIONS))))
    before = svc.accounts.load(ACC)
    with pytest.raises(Refused, match="200-subscription limit"):
        apply_event(svc, failed("c1", sub="s-new"), "billing.charge.failed")
    after = svc.accounts.load(ACC)
    assert after.etag == before.etag and not svc.accounts.applied(ACC, "evt-c1")


@pytest.mark.parametrize("where", ["before_commit", "before_dispatch"])
def test_a_crash_then_the_redelivery_leaves_state_and_outbox_consistent(svc: UnitOfWork, where: str) -> None:
    # The host redelivers a crashed message only after its visibility timeout; here it comes back at once.
    twin = crashing(svc, where)
    with pytest.raises(CrashInjected):
        apply_event(twin, failed("c1"), "billing.charge.failed")
    account = svc.accounts.load(ACC).account
    if where == "before_commit":
        assert account.outstanding == {} and svc.accounts.pending_outbox(ACC) == []
    else:
        assert "c1" in account.outstanding
        # the lifecycle event and the email wait in the outbox; the due-index hint for the dunning
        # sweep was written before the commit
        assert sorted(r.kind for r in svc.accounts.pending_outbox(ACC)) == ["email", "lifecycle"]
        assert ACC in [e.account_id for e in svc.indexes.due(datetime.max.replace(tzinfo=UTC))]
    assert lifecycle_types(svc) == []
    redelivery = apply_event(twin, failed("c1"), "billing.charge.failed")
    assert redelivery.duplicate is (where == "before_dispatch")
    account = svc.accounts.load(ACC).account
    assert account.subscriptions["s1"].state is SubscriptionState.PAST_DUE
    assert account.balance() == {"USD": usd("10.00")}
    assert lifecycle_types(svc) == ["subscription.past_due"]
    # The email row stays until the sender has sent it; its hand-off went out once per dispatch.
    assert [r.kind for r in svc.accounts.pending_outbox(ACC)] == ["email"]


def test_success_before_failure_ends_paid(svc: UnitOfWork) -> None:
    apply_event(svc, ChargeSucceeded("evt-s", ACC, "s1", "c1", usd("10.00")), "billing.charge.succeeded")
    apply_event(svc, failed("c1"), "billing.charge.failed")
    account = svc.accounts.load(ACC).account
    assert account.outstanding == {} and account.subscriptions["s1"].state is SubscriptionState.ACTIVE
    assert [(n.charge_id, str(n.status)) for n in svc.accounts.charge_notes(ACC)] == [("c1", "paid")]


def test_a_payment_settling_more_charges_than_one_transaction_holds_keeps_every_record(svc: UnitOfWork) -> None:
    for i in range(130):
        apply_event(svc, failed(f"c{i:03d}", amount="1.00"), "billing.charge.failed")
    apply_event(svc, PaymentReceived("evt-pay", ACC, "pay-1", usd("130.00"), "wire"), "billing.payment.received")
    account = svc.accounts.load(ACC).account
    assert account.outstanding == {} and account.subscriptions["s1"].state is SubscriptionState.ACTIVE
    notes = svc.accounts.charge_notes(ACC)
    assert len(notes) == 130 and {str(n.status) for n in notes} == {"paid"}
    assert [r.kind for r in svc.accounts.pending_outbox(ACC) if r.kind != "email"] == []


def test_a_retried_request_finishes_what_a_crash_after_its_commit_left(svc: UnitOfWork) -> None:
    twin = crashing(svc, "before_dispatch")  # the client retries at once
    change = Registration(Profile("Contoso", "en", ("new@contoso.example",)), (("s1", "Web"),))
    with pytest.raises(CrashInjected):
        register_account(twin, ACC, change)
    assert [r.payload["kind"] for r in svc.accounts.pending_outbox(ACC) if r.kind == "email"] == [
        "contact_changed"] * 2
    assert handed_off(svc) == []  # committed, never dispatched
    register_account(twin, ACC, change)  # the same PUT again: nothing to change
    assert set(handed_off(svc)) == {r.key for r in svc.accounts.pending_outbox(ACC)}
    assert svc.contacts.accounts("new@contoso.example") == [ACC]  # the index row, carried out too
    assert len(handed_off(svc)) == 2


def test_the_hosts_retry_of_a_message_whose_dispatch_failed_finishes_its_outbox(svc: UnitOfWork) -> None:
    # Found by the soak: the host brought the same message back inside the grace a duplicate leaves
    # a live twin's rows; being a redelivery of the very message, it carries them out itself.
    twin = crashing(svc, "before_dispatch", grace=timedelta(seconds=30))
    with pytest.raises(CrashInjected):
        apply_event(twin, failed("c1"), "billing.charge.failed")
    again = apply_event(twin, failed("c1"), "billing.charge.failed", redelivered=True)
    assert again.duplicate
    assert lifecycle_types(svc) == ["subscription.past_due"]
    assert [r.kind for r in svc.accounts.pending_outbox(ACC)] == ["email"]  # handed to the sender
    assert len(handed_off(svc)) == 1
    assert [e.account_id for e in svc.indexes.due(NOW + timedelta(days=1))] == [ACC]


def test_a_fresh_duplicate_still_leaves_a_live_twins_young_rows_to_it(svc: UnitOfWork) -> None:
    twin = crashing(svc, "before_dispatch", grace=timedelta(seconds=30))
    with pytest.raises(CrashInjected):  # stands in for a twin still busy sending
        apply_event(twin, failed("c1"), "billing.charge.failed")
    svc.redelivery_grace = timedelta(seconds=30)
    assert apply_event(svc, failed("c1"), "billing.charge.failed").duplicate
    assert lifecycle_types(svc) == []
    # the due-index hint went before the commit
    assert sorted(r.kind for r in svc.accounts.pending_outbox(ACC)) == ["email", "lifecycle"]
