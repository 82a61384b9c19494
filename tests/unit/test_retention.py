"""Retention on the pure core: warnings 30, 7 and 1 days before, deletion at cancel + 90, erasure
of the account's customer data once nothing is left, and the legal hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.domain.dunning import advance
from shared.domain.effects import EmitLifecycleEvent, SendEmail
from shared.domain.facts import ChargeFailed
from shared.domain.model import Account, Profile, SubscriptionState
from shared.domain.money import Money
from shared.domain.payments import Registration, apply_payment_event, register
from shared.domain.policy import DunningPolicy
from shared.domain.retention import REDACTED, advance_retention, erase_profile, set_legal_hold

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICY = DunningPolicy()
CANCELED_AT = T0 + timedelta(days=90)


def canceled() -> Account:
    reg = Registration(Profile("Contoso", "en", ("ap@contoso.example",)), (("s1", "Web shop"),))
    acc = register(Account("acc"), reg, T0, POLICY).account
    acc = apply_payment_event(acc, ChargeFailed("e1", "acc", "s1", "c1", Money.parse("10.00", "USD"),
                                                "card_expired"), {}, T0, POLICY).account
    acc = advance(acc, CANCELED_AT, POLICY)[0].account
    assert acc.subscriptions["s1"].state is SubscriptionState.CANCELED
    return acc


def at(days_after_cancel: int) -> datetime:
    return CANCELED_AT + timedelta(days=days_after_cancel)


def test_cancellation_schedules_the_first_deletion_warning() -> None:
    assert canceled().next_retention_at == at(60)


def test_warnings_then_deletion_with_its_event_and_confirmation() -> None:
    acc = canceled()
    seen = []
    for d in (59, 60, 83, 89, 90):
        decision, erase = advance_retention(acc, at(d), POLICY)
        acc = decision.account
        seen.append((d, [(e.kind, e.facts.get("daysLeft")) for e in decision.effects if isinstance(e, SendEmail)],
                     [e.type for e in decision.effects if isinstance(e, EmitLifecycleEvent)], erase))
    assert seen == [
        (59, [], [], False),
        (60, [("deletion_warning", 30)], [], False),
        (83, [("deletion_warning", 7)], [], False),
        (89, [("deletion_warning", 1)], [], False),
        (90, [("data_deleted", None)], ["subscription.data_deleted"], True),
    ]
    sub = acc.subscriptions["s1"]
    assert sub.state is SubscriptionState.DELETED and sub.deleted_at == at(90) and sub.name == REDACTED
    assert acc.balance() == {"USD": Money.parse("10.00", "USD")}  # the financial record stays
    erased = erase_profile(acc, at(90), POLICY).account
    assert erased.profile is None and erased.next_retention_at is None
    assert erased.outstanding == acc.outstanding


def test_a_late_sweep_sends_only_the_latest_warning() -> None:
    decision, _ = advance_retention(canceled(), at(85), POLICY)
    assert [(e.kind, e.facts["daysLeft"]) for e in decision.effects if isinstance(e, SendEmail)] == [
        ("deletion_warning", 7)]


def test_a_legal_hold_stops_the_deletion_and_lifting_it_resumes() -> None:
    held = set_legal_hold(canceled(), "s1", True, at(10), POLICY).account
    assert held.next_retention_at is None
    decision, erase = advance_retention(held, at(120), POLICY)
    assert decision.account.subscriptions["s1"].state is SubscriptionState.CANCELED and not erase
    lifted = set_legal_hold(held, "s1", False, at(200), POLICY).account
    decision, erase = advance_retention(lifted, at(200), POLICY)
    assert decision.account.subscriptions["s1"].state is SubscriptionState.DELETED and erase


def test_an_account_with_a_live_subscription_keeps_its_profile() -> None:
    acc = canceled()
    acc = register(acc, Registration(acc.profile, (("s2", "Other"),)), at(1), POLICY).account  # type: ignore[arg-type]
    decision, erase = advance_retention(acc, at(90), POLICY)
    assert not erase and decision.account.erasure_due_at() is None
