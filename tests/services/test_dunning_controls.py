"""Issue 23 through the service layer on the twins: a pause moves the sweep's due index, the
card-expiry notice is found through it, and credit meets debt whatever the order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devstack.sandbox_gateway.cards import FakeGateway
from shared.domain.facts import ChargeFailed, PaymentReceived
from shared.domain.model import SubscriptionState
from shared.domain.money import Money
from shared.domain.pausing import PauseRefused
from shared.services.dunning_controls import UnknownAccount, pause_dunning
from shared.services.settle_account import update_card_and_settle
from shared.services.sweep_work import fan_out
from shared.services.unit_of_work import UnitOfWork, apply_event
from shared.services.views import account_view
from tests.services.conftest import ACC, NOW, handed_off, lifecycle_types, pending_emails, register
from tests.services.test_use_cases import drain


def day(n: float) -> datetime:
    return NOW + timedelta(days=n)


def sweep_at(uow: UnitOfWork, n: float, gateway: FakeGateway | None = None) -> list[str]:
    uow.clock.advance_to(day(n))  # type: ignore[attr-defined]
    fan_out(uow, "dunning")
    return drain(uow, gateway)


def kinds(uow: UnitOfWork, *wanted: str) -> list[str]:
    return [e["kind"] for e in uow.accounts.timeline(ACC) if e["kind"] in wanted]


def test_a_pause_moves_the_due_index_and_the_sweep_takes_no_step_until_it_ends(uow: UnitOfWork) -> None:
    register(uow)
    apply_event(uow, ChargeFailed("f1", ACC, "s1", "c1", Money.parse("10.00", "USD"), "card_declined"),
                "billing.charge.failed")
    for n in (1, 3, 5, 7):
        sweep_at(uow, n)
    uow.clock.advance_to(day(10))  # type: ignore[attr-defined]
    pause_dunning(uow, ACC, day(24))
    assert uow.accounts.load(ACC).account.next_due_at == day(24)
    # the entry written before the pause is a hint the account's own state outdates: one stale
    # visit, then nothing for the sweep while paused
    assert sweep_at(uow, 14) == ["stale"]
    assert sweep_at(uow, 21) == []
    assert sweep_at(uow, 24) == ["stepped"]  # records the resume
    for n in (28, 35, 41):
        assert sweep_at(uow, n) == ["stepped"]
    assert sweep_at(uow, 43.9) == []
    assert sweep_at(uow, 44) == ["stepped"]
    account = uow.accounts.load(ACC).account
    assert account.subscriptions["s1"].state is SubscriptionState.DISABLED
    assert account.subscriptions["s1"].disabled_at == day(44)
    assert lifecycle_types(uow) == ["subscription.past_due", "subscription.disabled"]
    assert kinds(uow, "dunning_paused", "dunning_resumed") == ["dunning_paused", "dunning_resumed"]
    view = account_view(account, uow.policy, day(44))
    assert view["dunning"]["pausedUntil"] is None
    assert view["dunning"]["pauses"] == [{"from": "2026-12-11T09:00:00Z", "to": "2026-12-25T09:00:00Z"}]


def test_pause_refusals_and_an_unknown_account(uow: UnitOfWork) -> None:
    register(uow)
    with pytest.raises(PauseRefused):
        pause_dunning(uow, ACC, NOW - timedelta(seconds=1))
    with pytest.raises(PauseRefused):
        pause_dunning(uow, ACC, NOW + timedelta(days=90, seconds=1))
    with pytest.raises(UnknownAccount):
        pause_dunning(uow, "nobody", NOW + timedelta(days=1))
    assert pause_dunning(uow, ACC, None).account.pauses == ()  # resuming what is not paused changes nothing


def test_a_pause_extended_beyond_the_maximum_from_its_start_is_refused_and_changes_nothing(
        uow: UnitOfWork) -> None:
    register(uow)
    apply_event(uow, ChargeFailed("f1", ACC, "s1", "c1", Money.parse("10.00", "USD"), "card_declined"),
                "billing.charge.failed")
    pause_dunning(uow, ACC, day(90))
    uow.clock.advance_to(day(33))  # type: ignore[attr-defined]
    before = uow.accounts.load(ACC).account
    with pytest.raises(PauseRefused) as refused:
        pause_dunning(uow, ACC, day(33 + 90))
    assert day(90).isoformat().replace("+00:00", "Z") in str(refused.value)
    assert uow.accounts.load(ACC).account == before and before.pauses == ((NOW, day(90)),)
    assert pause_dunning(uow, ACC, day(90)).account.pauses == ((NOW, day(90)),)
    # a resume, then a new pause: two intervals, each on the timeline
    pause_dunning(uow, ACC, None)
    assert pause_dunning(uow, ACC, day(33 + 90)).account.pauses == ((NOW, day(33)), (day(33), day(123)))
    assert kinds(uow, "dunning_paused", "dunning_resumed") == [
        "dunning_paused", "dunning_paused", "dunning_resumed", "dunning_paused"]


def test_a_card_expiring_this_month_is_noticed_once_through_the_due_index(uow: UnitOfWork) -> None:
    at = datetime(2030, 12, 5, tzinfo=UTC)  # tok_visa is good through December 2030
    uow.clock.advance_to(at)  # type: ignore[attr-defined]
    gateway = FakeGateway(clock=lambda: at)
    register(uow)
    update_card_and_settle(uow, gateway, ACC, "tok_visa")
    assert uow.accounts.load(ACC).account.next_due_at == datetime(2030, 12, 2, tzinfo=UTC)
    fan_out(uow, "dunning")
    assert drain(uow, gateway) == ["stepped"]
    fan_out(uow, "dunning")
    assert drain(uow, gateway) == []
    assert kinds(uow, "card_expiring") == ["card_expiring"]
    codes = [a["code"] for a in account_view(uow.accounts.load(ACC).account, uow.policy, at)["alerts"]]
    assert codes == ["card_expiring"]


def test_a_payment_before_its_failure_leaves_the_subscription_active(uow: UnitOfWork) -> None:
    register(uow)
    apply_event(uow, PaymentReceived("p1", ACC, "pay1", Money.parse("10.00", "USD"), "wire"),
                "billing.payment.received")
    apply_event(uow, ChargeFailed("f1", ACC, "s1", "c1", Money.parse("10.00", "USD"), "card_declined"),
                "billing.charge.failed")
    account = uow.accounts.load(ACC).account
    assert account.balance() == {} and account.credit == {}
    assert account.subscriptions["s1"].state is SubscriptionState.ACTIVE
    assert lifecycle_types(uow) == []


def test_the_same_card_saved_again_gets_no_second_notice(uow: UnitOfWork) -> None:
    at = datetime(2030, 12, 5, tzinfo=UTC)  # tok_visa is good through December 2030
    uow.clock.advance_to(at)  # type: ignore[attr-defined]
    gateway = FakeGateway(clock=lambda: at)
    register(uow)
    update_card_and_settle(uow, gateway, ACC, "tok_visa")
    fan_out(uow, "dunning")
    assert drain(uow, gateway) == ["stepped"]
    mailed = {*handed_off(uow), *pending_emails(uow)}
    assert len(mailed) == 2  # the notice, to each billing contact
    for hours in (1, 2):
        uow.clock.advance_to(at + timedelta(hours=hours))  # type: ignore[attr-defined]
        update_card_and_settle(uow, gateway, ACC, "tok_visa")
        assert uow.accounts.load(ACC).account.next_due_at is None
        fan_out(uow, "dunning")
        drain(uow, gateway)
    assert kinds(uow, "card_expiring") == ["card_expiring"]
    assert {*handed_off(uow), *pending_emails(uow)} == mailed
