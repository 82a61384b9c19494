"""Settlement on the pure core: credit first, one charge per currency, outcomes recorded once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from shared.lifecycle.decide import Registration, apply_payment_event, register
from shared.lifecycle.effects import EmitLifecycleEvent, SendEmail
from shared.lifecycle.facts import ChargeFailed, PaymentEvent, PaymentReceived
from shared.lifecycle.model import Account, PaymentMethod, Profile, SubscriptionState
from shared.lifecycle.settlement import ChargeOutcome, plan_settlement, record_outcome
from shared.money import Money
from shared.policy import DunningPolicy

NOW = datetime(2026, 12, 1, tzinfo=UTC)
POLICY = DunningPolicy()
CARD = PaymentMethod("card", "tok_visa", "visa", "4242", 12, 2030)


def owing(*events: PaymentEvent) -> Account:
    reg = Registration(Profile("Contoso", "en", ("ap@contoso.example",), CARD), (("s1", "A"), ("s2", "B"), ("s3", "C")))
    acc = register(Account("acc"), reg, NOW, POLICY).account
    for e in events:
        acc = apply_payment_event(acc, e, {}, NOW, POLICY).account
    return acc


def fail(cid: str, sub: str, amount: str, cur: str = "USD") -> ChargeFailed:
    return ChargeFailed(f"e-{cid}", "acc", sub, cid, Money.parse(amount, cur), "card_declined")


def test_one_pending_charge_per_currency_for_the_whole_balance() -> None:
    acc = owing(fail("c1", "s1", "10.00"), fail("c2", "s2", "5.50"), fail("c3", "s3", "1000", "JPY"))
    decision, pending = plan_settlement(acc, NOW, POLICY)
    assert sorted((p.amount.currency, p.amount.minor) for p in pending) == [("JPY", 1000), ("USD", 1550)]
    assert set(decision.account.settling) == {"JPY", "USD"}
    assert {cid for p in pending for cid, _ in p.parts} == {"c1", "c2", "c3"}


def test_credit_is_spent_first_and_only_the_rest_is_charged() -> None:
    acc = owing(PaymentReceived("p", "acc", "pay", Money.parse("12.00", "USD"), "wire"),
                fail("c1", "s1", "10.00"), fail("c2", "s2", "5.00"))
    decision, [pending] = plan_settlement(acc, NOW, POLICY)
    assert pending.amount == Money.parse("3.00", "USD")
    assert decision.account.credit == {}
    assert decision.account.subscriptions["s1"].state is SubscriptionState.ACTIVE  # paid by credit alone


def test_success_pays_every_planned_charge_reactivates_and_sends_one_receipt() -> None:
    acc = owing(fail("c1", "s1", "10.00"), fail("c2", "s2", "5.00"))
    acc = acc.with_subscription(replace(acc.subscriptions["s2"], state=SubscriptionState.DISABLED, disabled_at=NOW))
    planned, [_] = plan_settlement(acc, NOW, POLICY)
    done = record_outcome(planned.account, "USD", ChargeOutcome("succeeded", "ch_1"), NOW, POLICY)
    assert done.account.outstanding == {} and done.account.settling == {}
    assert {s.state for s in done.account.subscriptions.values()} == {SubscriptionState.ACTIVE}
    assert sorted(e.subscription_id for e in done.effects if isinstance(e, EmitLifecycleEvent)) == ["s1", "s2"]
    assert [e.kind for e in done.effects if isinstance(e, SendEmail)] == ["payment_settled"]
    assert record_outcome(done.account, "USD", ChargeOutcome("succeeded", "ch_1"), NOW, POLICY).changed is False


def test_decline_marks_nothing_paid() -> None:
    acc = owing(fail("c1", "s1", "10.00"))
    planned, _ = plan_settlement(acc, NOW, POLICY)
    done = record_outcome(planned.account, "USD", ChargeOutcome("declined", decline_code="insufficient_funds"),
                          NOW, POLICY)
    assert done.account.balance() == {"USD": Money.parse("10.00", "USD")}
    assert done.account.subscriptions["s1"].state is SubscriptionState.PAST_DUE
    assert done.account.settling == {} and not done.effects


def test_a_charge_in_flight_is_never_planned_twice() -> None:
    acc = owing(fail("c1", "s1", "10.00"))
    planned, [first] = plan_settlement(acc, NOW, POLICY)
    again, more = plan_settlement(planned.account, NOW, POLICY)
    assert more == [] and again.account.settling["USD"] == first


def test_a_charge_paid_otherwise_while_the_card_was_charged_becomes_credit() -> None:
    acc = owing(fail("c1", "s1", "10.00"))
    planned, _ = plan_settlement(acc, NOW, POLICY)
    paid = apply_payment_event(planned.account, PaymentReceived("p", "acc", "pay", Money.parse("10.00", "USD"),
                                                                "wire", ("c1",)), {}, NOW, POLICY).account
    done = record_outcome(paid, "USD", ChargeOutcome("succeeded", "ch_1"), NOW, POLICY)
    assert done.account.credit == {"USD": 1000} and done.account.outstanding == {}


def test_a_new_attempt_after_a_decline_uses_a_new_idempotency_key() -> None:
    acc = owing(fail("c1", "s1", "10.00"))
    planned, [first] = plan_settlement(acc, NOW, POLICY)
    declined = record_outcome(planned.account, "USD", ChargeOutcome("declined", decline_code="card_declined"),
                              NOW, POLICY).account
    _, [second] = plan_settlement(declined, NOW, POLICY)
    assert second.idempotency_key != first.idempotency_key and second.amount == first.amount
