"""The time-driven lifecycle on the pure core: each step once, on its day, and no storm when late."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain import schedule
from shared.domain.decision import Decision
from shared.domain.dunning import advance
from shared.domain.effects import EmitLifecycleEvent, SendEmail, UpdateIndex
from shared.domain.facts import ChargeFailed, ChargeSucceeded
from shared.domain.model import Account, PaymentMethod, Profile, SubscriptionState
from shared.domain.money import Money
from shared.domain.payments import Registration, apply_payment_event, register
from shared.domain.policy import DunningPolicy

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICY = DunningPolicy()
CARD = PaymentMethod("card", "tok_visa", "visa", "4242", 12, 2030)


def past_due(reason: str = "insufficient_funds", card: PaymentMethod | None = CARD) -> Account:
    reg = Registration(Profile("Contoso", "en", ("ap@contoso.example",), card), (("s1", "Web"),))
    acc = register(Account("acc"), reg, T0, POLICY).account
    return apply_payment_event(acc, ChargeFailed("e1", "acc", "s1", "c1", Money.parse("10.00", "USD"), reason),  # type: ignore[arg-type]
                               {}, T0, POLICY).account


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def mails(d: Decision) -> list[str]:
    return [e.kind for e in d.effects if isinstance(e, SendEmail)]


def events(d: Decision) -> list[str]:
    return [e.type for e in d.effects if isinstance(e, EmitLifecycleEvent)]


def test_the_failure_schedules_the_first_step_in_the_due_index() -> None:
    acc = past_due()
    assert acc.next_due_at == day(1)


def test_each_step_happens_on_its_day_once() -> None:
    acc = past_due()
    seen: list[tuple[float, list[str], list[str], bool]] = []
    for n in [0.5, 1, 1, 3, 5, 7, 14, 21, 27, 30, 30, 60, 90, 91]:
        d, retry = advance(acc, day(n), POLICY)
        acc = d.account
        seen.append((n, mails(d), events(d), retry))
    assert seen == [
        (0.5, [], [], False), (1, [], [], True), (1, [], [], False), (3, [], [], True), (5, [], [], True),
        (7, ["payment_reminder"], [], True), (14, ["payment_reminder"], [], False),
        (21, ["payment_reminder"], [], False), (27, ["disable_warning"], [], False),
        (30, ["service_disabled"], ["subscription.disabled"], False), (30, [], [], False),
        (60, [], [], False), (90, ["service_canceled"], ["subscription.canceled"], False), (91, [], [], False),
    ]
    sub = acc.subscriptions["s1"]
    assert sub.state is SubscriptionState.CANCELED and sub.disabled_at == day(30) and sub.canceled_at == day(90)
    assert acc.next_due_at == schedule.card_notice_at(acc, POLICY)  # only the saved card's expiry notice is left


def test_a_late_sweep_lands_on_the_right_state_without_stale_mail() -> None:
    d, _ = advance(past_due(), day(95), POLICY)
    assert mails(d) == ["service_canceled"]
    assert events(d) == ["subscription.disabled", "subscription.canceled"]
    sub = d.account.subscriptions["s1"]
    assert sub.state is SubscriptionState.CANCELED and sub.disabled_at == day(30)
    d, _ = advance(past_due(), day(22), POLICY)
    assert mails(d) == ["payment_reminder"] and any(t.kind == "notices_skipped" for t in d.timeline)


def test_hard_declines_and_missing_cards_get_no_automatic_retry() -> None:
    assert advance(past_due("card_expired"), day(1), POLICY)[1] is False
    assert advance(past_due(card=None), day(1), POLICY)[1] is False


def test_payment_stops_the_ladder_and_a_disabled_subscription_comes_back() -> None:
    acc = advance(past_due(), day(31), POLICY)[0].account
    assert acc.subscriptions["s1"].state is SubscriptionState.DISABLED
    d = apply_payment_event(acc, ChargeSucceeded("e2", "acc", "s1", "c1", Money.parse("10.00", "USD")), {}, day(32),
                            POLICY)
    assert d.account.subscriptions["s1"].state is SubscriptionState.ACTIVE
    assert d.account.next_due_at == schedule.card_notice_at(d.account, POLICY)
    assert events(d) == ["subscription.reactivated"]
    # the due index now holds only the saved card's expiry notice
    assert [e.index for e in d.effects if isinstance(e, UpdateIndex)] == ["due", "disabled"]
    assert advance(d.account, day(90), POLICY)[0].effects == ()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 120), min_size=1, max_size=12))
def test_any_sweep_schedule_ends_in_the_same_place_with_each_transition_once(times: list[float]) -> None:
    acc = past_due()
    sent: list[str] = []
    transitions: list[str] = []
    for n in [*sorted(times), 120]:
        d, _ = advance(acc, day(n), POLICY)
        acc = d.account
        sent += [e.key for e in d.effects if isinstance(e, EmitLifecycleEvent | SendEmail)]
        transitions += events(d)
    assert acc.subscriptions["s1"].state is SubscriptionState.CANCELED
    assert acc.subscriptions["s1"].disabled_at == day(30) and acc.subscriptions["s1"].canceled_at == day(90)
    assert len(sent) == len(set(sent))
    assert transitions == ["subscription.disabled", "subscription.canceled"]


def test_a_disable_warning_on_a_reminder_day_is_the_notice_sent() -> None:
    """DUNNING_DISABLE_WARNING_DAY=7 with the default reminders (7, 14, 21): day 7 is both. The
    customer gets the warning that says the services stop on day 10, not a plain reminder."""
    policy = DunningPolicy(disable_warning_day=7, disable_day=10)
    reg = Registration(Profile("Contoso", "en", ("ap@contoso.example",), CARD), (("s1", "Web"),))
    acc = register(Account("acc"), reg, T0, policy).account
    acc = apply_payment_event(acc, ChargeFailed("e1", "acc", "s1", "c1", Money.parse("10.00", "USD"),
                                                "insufficient_funds"), {}, T0, policy).account
    sent: list[tuple[float, list[str]]] = []
    for n in (1, 3, 5, 7 + 1 / 1440, 8, 10):
        d, _retry = advance(acc, day(n), policy)
        acc = d.account
        sent.append((n, mails(d)))
        if n == 7 + 1 / 1440:
            assert any("superseded by disable-warning" in e.detail for e in d.timeline), d.timeline
    assert sent == [(1, []), (3, []), (5, []), (7 + 1 / 1440, ["disable_warning"]), (8, []),
                    (10, ["service_disabled"])]
