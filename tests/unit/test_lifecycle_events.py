"""Every transition a payment event causes, on the pure core (no storage, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.domain.decision import Decision
from shared.domain.effects import EmitLifecycleEvent, SendEmail
from shared.domain.facts import ChargeFailed, ChargeSucceeded, ChargeVoided, PaymentEvent, PaymentReceived
from shared.domain.model import Account, ChargeStatus, Profile, SubscriptionState
from shared.domain.money import Money
from shared.domain.payments import Registration, apply_payment_event, register
from shared.domain.policy import DunningPolicy

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICY = DunningPolicy()
USD = "USD"


def usd(s: str) -> Money:
    return Money.parse(s, USD)


def account(contacts: tuple[str, ...] = ("ap@contoso.example", "cfo@contoso.example")) -> Account:
    reg = Registration(Profile("Contoso", "en", contacts), (("s1", "Web"), ("s2", "DB")))
    return register(Account("acc-1"), reg, NOW, POLICY).account


def run(acc: Account, *events: PaymentEvent, at: datetime = NOW) -> tuple[Account, list[Decision]]:
    decisions = []
    notes: dict = {}
    for e in events:
        d = apply_payment_event(acc, e, notes, at, POLICY)
        notes.update({n.charge_id: n for n in d.notes})
        acc = d.account
        decisions.append(d)
    return acc, decisions


def failed(cid: str = "c1", amount: str = "12.34", sub: str = "s1", eid: str | None = None) -> ChargeFailed:
    return ChargeFailed(eid or f"f-{cid}", "acc-1", sub, cid, usd(amount), "card_declined")


def test_failed_charge_makes_the_subscription_past_due_with_email_and_event() -> None:
    acc, [d] = run(account(), failed())
    sub = acc.subscriptions["s1"]
    assert sub.state is SubscriptionState.PAST_DUE and sub.past_due_since == NOW
    assert acc.subscriptions["s2"].state is SubscriptionState.ACTIVE
    assert acc.balance() == {USD: usd("12.34")}
    events = [e for e in d.effects if isinstance(e, EmitLifecycleEvent)]
    assert [(e.type, e.subscription_id) for e in events] == [("subscription.past_due", "s1")]
    mails = [e for e in d.effects if isinstance(e, SendEmail)]
    assert sorted(m.recipient for m in mails) == ["ap@contoso.example", "cfo@contoso.example"]
    assert {m.kind for m in mails} == {"payment_failed"}
    assert mails[0].facts["disableAt"] == (NOW + timedelta(days=30)).isoformat()


def test_second_failure_of_a_past_due_subscription_adds_to_the_balance_without_a_second_past_due_event() -> None:
    acc, [_, d] = run(account(), failed("c1"), failed("c2", "5.00"))
    assert acc.balance() == {USD: usd("17.34")}
    assert not [e for e in d.effects if isinstance(e, EmitLifecycleEvent)]
    assert {m.kind for m in d.effects if isinstance(m, SendEmail)} == {"payment_failed"}


def test_same_charge_failing_again_changes_nothing_but_the_reason() -> None:
    acc, [_, d] = run(account(), failed("c1"), failed("c1", eid="retry-1"))
    assert acc.balance() == {USD: usd("12.34")}
    assert d.effects == ()


def test_charge_succeeded_pays_the_charge_and_reactivates() -> None:
    acc, [_, d] = run(account(), failed(), ChargeSucceeded("s-1", "acc-1", "s1", "c1", usd("12.34")))
    assert acc.subscriptions["s1"].state is SubscriptionState.ACTIVE
    assert acc.subscriptions["s1"].past_due_since is None
    assert acc.balance() == {}
    assert [e.type for e in d.effects if isinstance(e, EmitLifecycleEvent)] == ["subscription.reactivated"]
    assert {m.kind for m in d.effects if isinstance(m, SendEmail)} == {"payment_settled"}
    assert [(n.charge_id, n.status) for n in d.notes] == [("c1", ChargeStatus.PAID)]


def test_success_before_failure_still_ends_paid() -> None:
    acc, [_, d] = run(account(), ChargeSucceeded("s-1", "acc-1", "s1", "c1", usd("12.34")), failed())
    assert acc.subscriptions["s1"].state is SubscriptionState.ACTIVE
    assert acc.balance() == {}
    assert d.effects == ()


def test_void_writes_off_the_charge_and_reactivates() -> None:
    acc, [_, d] = run(account(), failed(), ChargeVoided("v-1", "acc-1", "c1"))
    assert acc.balance() == {} and acc.subscriptions["s1"].state is SubscriptionState.ACTIVE
    assert [(n.charge_id, n.status) for n in d.notes] == [("c1", ChargeStatus.VOIDED)]


def test_void_before_failure_means_the_failure_owes_nothing() -> None:
    acc, _ = run(account(), ChargeVoided("v-1", "acc-1", "c1"), failed())
    assert acc.balance() == {} and acc.subscriptions["s1"].state is SubscriptionState.ACTIVE


def test_payment_goes_to_the_named_charges_and_the_rest_to_credit() -> None:
    acc, _ = run(account(), failed("c1", "10.00"), failed("c2", "20.00", sub="s2"),
                 PaymentReceived("p-1", "acc-1", "pay-1", usd("25.00"), "wire", ("c2",)))
    # c2 first, as named; the 5.00 left is credit, which pays what else is owed (contract §1)
    assert acc.outstanding["c1"].remaining == usd("5.00")
    assert "c2" not in acc.outstanding
    assert acc.subscriptions["s2"].state is SubscriptionState.ACTIVE
    assert acc.subscriptions["s1"].state is SubscriptionState.PAST_DUE
    assert acc.credit == {}


def test_unnamed_payment_pays_the_oldest_first() -> None:
    acc, _ = run(account(), failed("c1", "10.00"))
    acc, _ = run(acc, failed("c2", "10.00", sub="s2"), at=NOW + timedelta(hours=1))
    acc, _ = run(acc, PaymentReceived("p-1", "acc-1", "pay-1", usd("10.00"), "check"), at=NOW + timedelta(hours=2))
    assert list(acc.outstanding) == ["c2"]
    assert acc.subscriptions["s1"].state is SubscriptionState.ACTIVE


def test_partial_payment_leaves_the_subscription_past_due() -> None:
    acc, _ = run(account(), failed("c1", "10.00"),
                 PaymentReceived("p-1", "acc-1", "pay-1", usd("4.00"), "wire", ("c1",)))
    assert acc.balance() == {USD: usd("6.00")}
    assert acc.subscriptions["s1"].state is SubscriptionState.PAST_DUE


def test_payment_in_another_currency_becomes_credit_in_that_currency() -> None:
    acc, _ = run(account(), failed("c1", "10.00"),
                 PaymentReceived("p-1", "acc-1", "pay-1", Money.parse("1000", "JPY"), "wire"))
    assert acc.balance() == {USD: usd("10.00")}
    assert acc.credit == {"JPY": 1000}


def test_credit_pays_a_failure_that_arrives_later() -> None:
    acc, d = run(account(), PaymentReceived("p-1", "acc-1", "pay-1", usd("50.00"), "wire"), failed("c1", "10.00"))
    assert acc.balance() == {} and acc.credit == {USD: 4000}
    assert acc.subscriptions["s1"].state is SubscriptionState.ACTIVE
    # never past due, so no failure email and no lifecycle event; the timeline says who paid
    assert not d[-1].effects
    assert "charge c1 of 10.00 USD paid by account credit" in [t.detail for t in d[-1].timeline]


def test_payment_naming_a_charge_not_yet_reported_is_held_for_it() -> None:
    pay = PaymentReceived("p-1", "acc-1", "pay-1", usd("15.00"), "wire", ("c1",))
    early, _ = run(account(), pay, failed("c1", "10.00"))
    late, _ = run(account(), failed("c1", "10.00"), pay)
    assert early.balance() == late.balance() == {}
    assert early.credit == late.credit == {USD: 500}
    assert early.subscriptions["s1"].state is late.subscriptions["s1"].state is SubscriptionState.ACTIVE


def test_paid_charge_written_off_becomes_credit() -> None:
    acc, [_, _, d] = run(account(), failed(), ChargeSucceeded("s-1", "acc-1", "s1", "c1", usd("12.34")),
                         ChargeVoided("v-1", "acc-1", "c1"))
    assert [(n.charge_id, n.status) for n in d.notes] == [("c1", ChargeStatus.VOIDED)]
    assert acc.credit == {USD: 1234}


def test_card_payment_after_a_partial_payment_returns_the_partial_amount_as_credit() -> None:
    acc, _ = run(account(), failed("c1", "10.00"),
                 PaymentReceived("p-1", "acc-1", "pay-1", usd("4.00"), "wire", ("c1",)),
                 ChargeSucceeded("s-1", "acc-1", "s1", "c1", usd("10.00")))
    assert acc.balance() == {} and acc.credit == {USD: 400}


def test_event_for_an_unregistered_account_is_kept_without_emails() -> None:
    acc, [d] = run(Account("acc-1"), failed())
    assert acc.subscriptions["s1"].state is SubscriptionState.PAST_DUE
    assert not [e for e in d.effects if isinstance(e, SendEmail)]
    assert any(t.kind == "email_skipped" for t in d.timeline)


def test_a_canceled_subscription_is_not_reactivated_by_payment() -> None:
    from dataclasses import replace
    acc, _ = run(account(), failed())
    acc = acc.with_subscription(replace(acc.subscriptions["s1"], state=SubscriptionState.CANCELED, canceled_at=NOW))
    acc, [d] = run(acc, ChargeSucceeded("s-1", "acc-1", "s1", "c1", usd("12.34")))
    assert acc.subscriptions["s1"].state is SubscriptionState.CANCELED
    assert not [e for e in d.effects if isinstance(e, EmitLifecycleEvent)]


def test_a_disabled_subscription_comes_back_when_paid() -> None:
    from dataclasses import replace
    acc, _ = run(account(), failed())
    acc = acc.with_subscription(replace(acc.subscriptions["s1"], state=SubscriptionState.DISABLED, disabled_at=NOW))
    acc, [d] = run(acc, ChargeSucceeded("s-1", "acc-1", "s1", "c1", usd("12.34")))
    assert acc.subscriptions["s1"].state is SubscriptionState.ACTIVE
    assert [e.reason for e in d.effects if isinstance(e, EmitLifecycleEvent)] == ["balance_settled"]


def test_changing_contacts_tells_old_and_new_addresses() -> None:
    acc = account(("old@contoso.example",))
    reg = Registration(Profile("Contoso", "en", ("new@contoso.example",)), ())
    d = register(acc, reg, NOW, POLICY)
    mails = [e for e in d.effects if isinstance(e, SendEmail)]
    assert sorted(m.recipient for m in mails) == ["new@contoso.example", "old@contoso.example"]
    assert {m.kind for m in mails} == {"contact_changed"}


def test_registering_twice_with_the_same_details_changes_nothing() -> None:
    acc = account()
    reg = Registration(Profile("Contoso", "en", ("ap@contoso.example", "cfo@contoso.example")),
                       (("s1", "Web"), ("s2", "DB")))
    assert not register(acc, reg, NOW, POLICY).changed


def test_effect_keys_are_stable_across_a_retried_decision() -> None:
    a = apply_payment_event(account(), failed(), {}, NOW, POLICY)
    b = apply_payment_event(account(), failed(), {}, NOW, POLICY)
    assert [e.key for e in a.effects] == [e.key for e in b.effects]


def test_adding_or_renaming_a_subscription_is_a_change_worth_storing() -> None:
    acc = account()
    reg = Registration(Profile("Contoso", "en", ("ap@contoso.example", "cfo@contoso.example")),
                       (("s1", "Web shop"), ("s2", "DB"), ("s3", "Cache")))
    d = register(acc, reg, NOW, POLICY)
    assert d.changed and d.account.subscriptions["s1"].name == "Web shop" and "s3" in d.account.subscriptions
    assert sorted(t.kind for t in d.timeline) == ["subscription_added", "subscription_renamed"]
