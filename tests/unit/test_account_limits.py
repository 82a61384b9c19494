"""Issue 24 (3): events may not grow an account past its storage row. The pure core refuses a fact
that would add a 201st subscription or a 501st outstanding charge (held payments included), as a
decision that changes nothing and says why; the service layer commits nothing and raises
`Refused`, which the queue function dead-letters at once. The worst row at both limits is
measured against Table Storage's 1 MiB, by Azurite's measure and by Azure's."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.adapters.store.decision_rows import account_entity
from shared.domain.decision import Decision
from shared.domain.facts import ChargeFailed, ChargeSucceeded, ChargeVoided, PaymentEvent, PaymentReceived
from shared.domain.limits import MAX_OPEN_CHARGES, MAX_SUBSCRIPTIONS
from shared.domain.model import (
    Account,
    Charge,
    ChargeStatus,
    PaymentMethod,
    PendingCharge,
    Profile,
    Subscription,
    SubscriptionState,
)
from shared.domain.money import MAX_MINOR, Money
from shared.domain.payments import Registration, apply_payment_event, register
from shared.domain.policy import DunningPolicy
from shared.inbound.account_body import AccountBody
from shared.services.unit_of_work import Refused, UnitOfWork, apply_event, register_account
from tests.fakes.dispatcher import RecordingDispatcher
from tests.fakes.memory_store import InMemoryAccountStore
from tests.fakes.unit_of_work import in_memory_unit_of_work

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICY = DunningPolicy()
PROFILE = Profile("Contoso", "en", ("ap@contoso.example",))
MIB = 1024 * 1024


def usd(s: str) -> Money:
    return Money.parse(s, "USD")


def with_subscriptions(n: int) -> Account:
    """A registered account listing subscriptions s1..sn."""
    subs = tuple((f"s{i + 1}", f"Service {i + 1}") for i in range(n))
    return register(Account("acc-1"), Registration(PROFILE, subs), NOW, POLICY).account


def with_charges(n: int, held: int = 0) -> Account:
    """An account on s1 owing `n` charges of 1.00, and `held` payments waiting for unreported charges."""
    acc = with_subscriptions(1)
    owed = {f"c{i}": Charge(f"c{i}", "s1", usd("1.00"), ChargeStatus.OUTSTANDING, "card_declined", NOW)
            for i in range(n)}
    earmarks = {f"later-{i}": usd("1.00") for i in range(held)}
    return Account(acc.account_id, acc.profile, acc.subscriptions, owed, earmarks=earmarks)


def decide(acc: Account, event: PaymentEvent) -> Decision:
    return apply_payment_event(acc, event, {}, NOW, POLICY)


def assert_refused(d: Decision, before: Account, *words: str) -> None:
    assert d.refused is not None and all(w in d.refused for w in words), d.refused
    assert d.account == before and not d.changed  # nothing to commit, nothing sent, nothing logged


def test_the_api_and_the_core_share_one_subscription_limit() -> None:
    limit = next(m.max_length for m in AccountBody.model_fields["subscriptions"].metadata if hasattr(m, "max_length"))
    assert limit == MAX_SUBSCRIPTIONS == 200


@settings(max_examples=60, deadline=None)
@given(existing=st.integers(min_value=0, max_value=MAX_SUBSCRIPTIONS), unknown=st.booleans(),
       kind=st.sampled_from(["failed", "succeeded"]))
def test_an_event_is_refused_exactly_when_it_would_add_a_201st_subscription(existing: int, unknown: bool,
                                                                            kind: str) -> None:
    acc = with_subscriptions(existing)
    sub = "new-sub" if unknown or existing == 0 else f"s{existing}"
    adds = sub not in acc.subscriptions
    event: PaymentEvent = (ChargeFailed("e1", "acc-1", sub, "c1", usd("10.00"), "card_declined") if kind == "failed"
                           else ChargeSucceeded("e1", "acc-1", sub, "c1", usd("10.00")))
    d = decide(acc, event)
    if adds and existing == MAX_SUBSCRIPTIONS:
        assert_refused(d, acc, "at most 200 subscriptions", "200-subscription limit")
    else:
        assert d.refused is None
        assert len(d.account.subscriptions) == existing + adds <= MAX_SUBSCRIPTIONS
        assert sub in d.account.subscriptions


def test_an_account_stored_over_the_limit_still_applies_events_for_the_subscriptions_it_has() -> None:
    subs = {f"s{i}": Subscription(f"s{i}", f"s{i}") for i in range(1588)}  # grown by events before the limit
    acc = Account("acc-1", PROFILE, subs)
    known = decide(acc, ChargeFailed("e1", "acc-1", "s7", "c1", usd("10.00"), "card_declined"))
    assert known.refused is None and known.account.subscriptions["s7"].state is SubscriptionState.PAST_DUE
    assert_refused(decide(acc, ChargeFailed("e2", "acc-1", "s-new", "c2", usd("1.00"), "card_declined")), acc,
                   "already holds 1588 subscriptions")


def test_a_registration_that_would_take_the_account_past_200_subscriptions_is_refused() -> None:
    by_events = with_subscriptions(150)
    more = Registration(PROFILE, tuple((f"t{i}", f"Other {i}") for i in range(51)))
    assert_refused(register(by_events, more, NOW, POLICY), by_events, "200-subscription limit")
    renamed = Registration(PROFILE, tuple((f"s{i + 1}", f"Renamed {i}") for i in range(150)))
    assert register(by_events, renamed, NOW, POLICY).refused is None  # listing the ones it has is no growth
    fifty = Registration(PROFILE, tuple((f"t{i}", f"Other {i}") for i in range(50)))
    assert len(register(by_events, fifty, NOW, POLICY).account.subscriptions) == 200


@settings(max_examples=40, deadline=None)
@given(owed=st.integers(min_value=MAX_OPEN_CHARGES - 3, max_value=MAX_OPEN_CHARGES), held=st.integers(0, 3))
def test_a_new_charge_is_refused_exactly_when_it_would_be_the_501st_the_account_keeps(owed: int, held: int) -> None:
    acc = with_charges(owed - held, held)  # outstanding charges and held payments count alike
    d = decide(acc, ChargeFailed("e1", "acc-1", "s1", "c-new", usd("1.00"), "card_declined"))
    if owed == MAX_OPEN_CHARGES:
        assert_refused(d, acc, "at most 500", "500-outstanding-charge limit")
    else:
        assert d.refused is None and "c-new" in d.account.outstanding


def test_at_the_charge_limit_everything_that_does_not_add_a_charge_still_applies() -> None:
    acc = with_charges(MAX_OPEN_CHARGES)
    again = decide(acc, ChargeFailed("e1", "acc-1", "s1", "c3", usd("1.00"), "insufficient_funds"))
    assert again.refused is None and again.account.outstanding["c3"].reason == "insufficient_funds"
    paid = decide(acc, ChargeSucceeded("e2", "acc-1", "s1", "c3", usd("1.00")))
    assert paid.refused is None and "c3" not in paid.account.outstanding
    voided = decide(acc, ChargeVoided("e3", "acc-1", "c4"))
    assert voided.refused is None and "c4" not in voided.account.outstanding
    wire = decide(acc, PaymentReceived("e4", "acc-1", "wire-1", usd("2.00"), "wire"))
    assert wire.refused is None and len(wire.account.outstanding) == MAX_OPEN_CHARGES - 2
    # Once one is paid, the next new charge fits again.
    next_one = ChargeFailed("e5", "acc-1", "s1", "c-new", usd("1.00"), "card_declined")
    assert decide(paid.account, next_one).refused is None


def test_at_the_charge_limit_a_payment_held_for_an_unreported_charge_is_refused() -> None:
    acc = with_charges(MAX_OPEN_CHARGES)
    held = PaymentReceived("e1", "acc-1", "wire-1", usd("5.00"), "wire", ("c-later",))
    assert_refused(decide(acc, held), acc, "500-outstanding-charge limit")
    # Naming charges it has and paying them off frees the room it needs.
    pays = PaymentReceived("e2", "acc-1", "wire-2", usd("3.00"), "wire", ("c1", "c2", "c-later"))
    d = decide(acc, pays)
    assert d.refused is None and d.account.earmarks == {"c-later": usd("1.00")}


def service() -> tuple[InMemoryAccountStore, UnitOfWork]:
    store = InMemoryAccountStore()
    uow = in_memory_unit_of_work(NOW, policy=POLICY, accounts=store, dispatcher=RecordingDispatcher(store))
    return store, uow


def test_the_service_layer_commits_nothing_for_a_refused_event_and_refuses_it_again_on_redelivery() -> None:
    store, uow = service()
    register_account(uow, "acc-1", Registration(PROFILE, tuple((f"s{i}", f"S {i}") for i in range(200))))
    before = store.load("acc-1")
    event = ChargeFailed("e-201", "acc-1", "s-201", "c1", usd("10.00"), "card_declined")
    for redelivered in (False, True):
        with pytest.raises(Refused, match="200-subscription limit"):
            apply_event(uow, event, "billing.charge.failed", redelivered=redelivered)
    after = store.load("acc-1", event_id="e-201")
    assert after.account == before.account and after.etag == before.etag and not after.already_applied
    with pytest.raises(Refused) as refused:
        register_account(uow, "acc-1", Registration(PROFILE, (("s-201", "One more"),)))
    assert refused.value.field == "subscriptions" and store.load("acc-1").etag == before.etag


def row_sizes(account: Account) -> tuple[int, int]:
    """The stored account row's size as Azurite measures it (its JSON on the wire, non-ASCII
    escaped, in UTF-8) and as Azure documents it (UTF-16 strings plus per-property overhead)."""
    entity = {k: getattr(v, "value", v) for k, v in account_entity(account, follow_ups=False).items()}
    wire = len(json.dumps(entity).encode())
    azure = 4 + 2 * len(entity["PartitionKey"] + entity["RowKey"])
    for name, value in entity.items():
        if name not in ("PartitionKey", "RowKey"):
            size = 4 + len(value.encode("utf-16-le")) if isinstance(value, str) else 8
            azure += 8 + 2 * len(name) + size
    return wire, azure


def test_the_worst_account_row_at_both_limits_stays_under_80_percent_of_1_mib() -> None:
    """200 subscriptions with 200-character astral names and every step done, 500 charges of the
    largest amount under 64-character ids, all of them in a card charge in flight, the most
    profile there is: the margin the README promises."""
    steps = frozenset({"cancel-60", "retry-3", "retry-7", "retry-14", "reminder-7", "reminder-14", "reminder-21",
                       "disable-warning-25", "disable-30", "deletion-warning-60", "deletion-warning-83", "delete-90"})
    subs = {f"{i:06d}{'x' * 58}": Subscription(f"{i:06d}{'x' * 58}", "\U0001F680" * 200, SubscriptionState.DISABLED,
                                                NOW, NOW, NOW, NOW, steps, True, 10**6)
            for i in range(MAX_SUBSCRIPTIONS)}
    owed = {f"{i:06d}{'c' * 58}": Charge(f"{i:06d}{'c' * 58}", "0" * 64, Money(MAX_MINOR, "USD"),
                                         ChargeStatus.OUTSTANDING, "authentication_required", NOW, MAX_MINOR - 1)
            for i in range(MAX_OPEN_CHARGES)}
    settling = {"USD": PendingCharge("stl-" + "h" * 16, Money(MAX_MINOR, "USD"),
                                     tuple((cid, MAX_MINOR) for cid in owed), NOW)}
    profile = Profile("\U0001F680" * 200, "zh-CN", tuple(f"{n}{'e' * 63}@{'d' * 185}.com" for n in range(5)),
                      PaymentMethod("card", "tok_" + "x" * 96, "mastercard", "4444", 12, 2030))
    worst = Account("a" * 64, profile, subs, owed, {c: MAX_MINOR for c in ("USD", "EUR", "JPY", "KWD")},
                    revision=10**9, settling=settling, settlement_attempts=10**6, next_due_at=NOW,
                    next_retention_at=NOW, retry_blocked=True, link_version=10**6)
    wire, azure = row_sizes(worst)
    assert wire < 0.8 * MIB and azure < 0.8 * MIB, (wire, azure)
    # Without the limits the same row passes 1 MiB at about 1,000 charges: the limit is what holds it.
    more = {f"{i:06d}{'d' * 58}": Charge(f"{i:06d}{'d' * 58}", "0" * 64, Money(MAX_MINOR, "USD"),
                                         ChargeStatus.OUTSTANDING, "authentication_required", NOW, MAX_MINOR - 1)
            for i in range(MAX_OPEN_CHARGES)}
    assert max(row_sizes(Account(worst.account_id, profile, subs, {**owed, **more}, settling=settling))) > MIB
