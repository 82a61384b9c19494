"""Issue 23 on the pure core: pausing dunning, the card-expiry notice, the policy an episode began
under, credit meeting debt in any order, and late hard declines."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.adapters.store.codec import account_of, profile_doc, state_doc
from shared.domain import schedule
from shared.domain.charging import save_payment_method
from shared.domain.decision import Decision
from shared.domain.dunning import advance
from shared.domain.effects import SendEmail
from shared.domain.facts import ChargeFailed, PaymentReceived
from shared.domain.model import Account, PaymentMethod, Profile, SubscriptionState
from shared.domain.money import Money
from shared.domain.pausing import MAX_PAUSES, PauseRefused, set_pause
from shared.domain.payments import Registration, apply_payment_event, register
from shared.domain.policy import DunningPolicy
from shared.services.views import account_view

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICY = DunningPolicy()
CARD = PaymentMethod("card", "tok_visa", "visa", "4242", 12, 2034)
USD = "USD"


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def usd(text: str) -> Money:
    return Money.parse(text, USD)


def registered(card: PaymentMethod | None = CARD, at: datetime = T0) -> Account:
    reg = Registration(Profile("Contoso", "en", ("ap@contoso.example",), card), (("s1", "Web"),))
    return register(Account("acc"), reg, at, POLICY).account


def failed(cid: str = "c1", amount: str = "10.00", reason: str = "insufficient_funds",
           time: datetime | None = None) -> ChargeFailed:
    return ChargeFailed(f"f-{cid}", "acc", "s1", cid, usd(amount), reason, time)  # type: ignore[arg-type]


def past_due(policy: DunningPolicy = POLICY, card: PaymentMethod | None = CARD) -> Account:
    return apply_payment_event(registered(card), failed(), {}, T0, policy).account


def mails(d: Decision) -> list[str]:
    return [e.kind for e in d.effects if isinstance(e, SendEmail)]


def roundtrip(acc: Account) -> Account:
    assert acc.profile is not None
    return account_of(acc.account_id, state_doc(acc), profile_doc(acc.profile))


# -- pausing ------------------------------------------------------------------------------------


def sweep_days(acc: Account, days: list[float], policy: DunningPolicy = POLICY
               ) -> tuple[Account, list[tuple[float, list[str], bool, str | None]]]:
    seen = []
    for n in days:
        d, retry = advance(acc, day(n), policy)
        acc = roundtrip(d.account)
        taken = [t.detail for t in d.timeline if t.kind == "dunning_steps"]
        seen.append((n, mails(d), retry, taken[0] if taken else None))
    return acc, seen


def test_a_pause_from_day_10_to_24_moves_every_later_step_by_14_days() -> None:
    acc, _ = sweep_days(past_due(), [1, 3, 5, 7])
    acc = set_pause(acc, day(24), day(10), POLICY).account
    sub = acc.subscriptions["s1"]
    assert schedule.disable_at(sub, POLICY, acc.pauses) == day(44)
    assert schedule.cancel_at(sub, POLICY, acc.pauses) == day(104)
    view = account_view(acc, POLICY, day(10))
    assert view["dunning"]["pausedUntil"] == "2026-12-25T09:00:00Z"
    assert view["subscriptions"][0]["disableAt"] == day(44).isoformat().replace("+00:00", "Z")
    assert view["subscriptions"][0]["nextReminderAt"] == day(28).isoformat().replace("+00:00", "Z")
    assert acc.next_due_at == day(24)  # the sweep records the end of the pause
    acc, seen = sweep_days(acc, [11, 14, 21, 23.9, 24, 27, 28, 30, 35, 41, 43.9, 44])
    assert [(n, m) for n, m, _, _ in seen if m] == [(28, ["payment_reminder"]), (35, ["payment_reminder"]),
                                                  (41, ["disable_warning"]), (44, ["service_disabled"])]
    assert not any(retry for _, _, retry, _ in seen)
    assert acc.subscriptions["s1"].state is SubscriptionState.DISABLED
    assert acc.subscriptions["s1"].disabled_at == day(44)
    assert acc.paused_until is None and acc.next_due_at == day(104)


def test_a_step_due_when_the_pause_begins_happens_once_at_its_end_and_missed_reminders_are_not_stacked() -> None:
    acc = past_due()
    acc = set_pause(acc, day(20), day(6.5), POLICY).account  # retries 1..5 not swept yet
    d, retry = advance(acc, day(10), POLICY)
    assert d.timeline == () or all(t.kind != "dunning_steps" for t in d.timeline)
    assert not retry and mails(d) == []
    d, retry = advance(d.account, day(20), POLICY)
    assert [t.kind for t in d.timeline if t.kind in ("dunning_resumed", "dunning_steps")] == \
        ["dunning_resumed", "dunning_steps"]
    assert retry and mails(d) == []  # retries 1, 3, 5 fall due together: one retry
    d2, retry2 = advance(d.account, day(20), POLICY)
    assert not retry2 and mails(d2) == []


def test_resume_with_null_ends_the_pause_now_and_dates_move_by_the_time_paused() -> None:
    acc = set_pause(past_due(), day(40), day(10), POLICY).account
    d = set_pause(acc, None, day(15), POLICY)
    acc = d.account
    assert [t.kind for t in d.timeline] == ["dunning_resumed"]
    assert acc.pauses == ((day(10), day(15)),) and acc.paused_until is None
    assert schedule.disable_at(acc.subscriptions["s1"], POLICY, acc.pauses) == day(35)
    assert account_view(acc, POLICY, day(15))["dunning"]["pausedUntil"] is None


def test_a_pause_is_refused_in_the_past_and_beyond_the_maximum() -> None:
    acc = past_due()
    with pytest.raises(PauseRefused):
        set_pause(acc, day(1), day(2), POLICY)
    with pytest.raises(PauseRefused):
        set_pause(acc, day(2), day(2), POLICY)
    with pytest.raises(PauseRefused):
        set_pause(acc, day(2 + 91), day(2), POLICY)
    assert set_pause(acc, day(2 + 90), day(2), POLICY).account.paused_until == day(92)
    short = replace(POLICY, max_pause_days=5)
    with pytest.raises(PauseRefused):
        set_pause(acc, day(8), day(2), short)


def test_a_pause_extended_while_it_runs_stays_within_the_maximum_from_its_start() -> None:
    acc = set_pause(past_due(), day(90), day(0), POLICY).account  # the longest pause: until 2027-03-01T09:00
    with pytest.raises(PauseRefused) as refused:
        set_pause(acc, day(33 + 90), day(33), POLICY)  # would make one paused interval of 123 days
    assert "2027-03-01T09:00:00Z" in str(refused.value)  # the latest time it may be extended to
    with pytest.raises(PauseRefused):
        set_pause(acc, day(90) + timedelta(seconds=1), day(33), POLICY)
    shorter = set_pause(acc, day(60), day(33), POLICY).account
    assert shorter.pauses == ((day(0), day(60)),)
    longer = set_pause(shorter, day(90), day(50), POLICY)  # back to the full 90 days from its start
    assert longer.account.pauses == ((day(0), day(90)),)
    assert [t.detail for t in longer.timeline] == ["pause extended to 2027-03-01T09:00:00Z"]
    # a fresh pause is refused with its own latest time
    with pytest.raises(PauseRefused) as fresh:
        set_pause(past_due(), day(2 + 91), day(2), POLICY)
    assert "2027-03-03T09:00:00Z" in str(fresh.value)


def test_pausing_again_after_a_resume_is_a_new_pause_and_the_timeline_records_each() -> None:
    acc = set_pause(past_due(), day(90), day(0), POLICY).account
    resumed = set_pause(acc, None, day(33), POLICY)
    again = set_pause(resumed.account, day(33 + 90), day(33), POLICY)
    assert again.account.pauses == ((day(0), day(33)), (day(33), day(123)))
    assert [(t.kind, t.detail) for t in (*resumed.timeline, *again.timeline)] == [
        ("dunning_resumed", "dunning resumed by an operator before 2027-03-01T09:00:00Z: paused 33.00 days"),
        ("dunning_paused", "dunning paused until 2027-04-03T09:00:00Z")]
    with pytest.raises(PauseRefused):  # the new pause has the same limit from its own start
        set_pause(again.account, day(33 + 91), day(40), POLICY)


def test_the_number_of_pauses_kept_is_bounded() -> None:
    acc = past_due()
    for i in range(MAX_PAUSES):
        acc = set_pause(acc, day(i + 0.5), day(i), POLICY).account
        acc = set_pause(acc, None, day(i + 0.25), POLICY).account
    assert len(acc.pauses) == MAX_PAUSES
    with pytest.raises(PauseRefused):
        set_pause(acc, day(MAX_PAUSES + 1), day(MAX_PAUSES), POLICY)


def test_pauses_that_cannot_move_a_date_any_more_are_dropped() -> None:
    acc = set_pause(registered(), day(2), day(1), POLICY).account  # nothing owed
    acc = advance(acc, day(3), POLICY)[0].account
    assert acc.pauses == ()


def test_failures_are_still_recorded_and_a_payment_still_reactivates_while_paused() -> None:
    acc = set_pause(registered(), day(30), day(0), POLICY).account
    d = apply_payment_event(acc, failed(), {}, day(1), POLICY)
    assert mails(d) == ["payment_failed"] and d.account.subscriptions["s1"].state is SubscriptionState.PAST_DUE
    # the episode began while paused: its days count from the end of the pause
    assert schedule.disable_at(d.account.subscriptions["s1"], POLICY, d.account.pauses) == day(60)
    paid = apply_payment_event(d.account, PaymentReceived("p", "acc", "pay", usd("10.00"), "wire"), {}, day(2), POLICY)
    assert paid.account.subscriptions["s1"].state is SubscriptionState.ACTIVE


def test_steps_after_canceling_are_not_paused() -> None:
    acc = advance(past_due(), day(91), POLICY)[0].account
    assert acc.subscriptions["s1"].state is SubscriptionState.CANCELED
    acc = set_pause(acc, day(150), day(91), POLICY).account
    deleted = acc.subscriptions["s1"]
    assert schedule.delete_at(deleted, POLICY, acc.pauses) == day(180)
    assert acc.next_retention_at == day(150)  # the first deletion warning, unmoved


def test_a_row_without_the_new_fields_reads_as_before() -> None:
    acc = past_due()
    doc = state_doc(acc)
    for key in ("pauses", "pausedUntil", "cardSavedAt", "cardNoticed", "policies"):
        doc.pop(key, None)
    for sub in doc["subscriptions"]:
        sub.pop("policy", None)
    assert acc.profile is not None
    old = account_of("acc", doc, profile_doc(acc.profile))
    assert old.pauses == () and old.card_saved_at is None and old.subscriptions["s1"].policy is None
    assert schedule.disable_at(old.subscriptions["s1"], POLICY) == day(30)
    paused = set_pause(acc, day(20), day(5), POLICY).account
    assert roundtrip(paused) == paused


@st.composite
def pause_plans(draw: st.DrawFn) -> list[tuple[float, str, float]]:
    """Operations at increasing days: ("pause", at, until), ("resume", at, 0), ("sweep", at, 0)."""
    ops = []
    t = 0.0
    for _ in range(draw(st.integers(1, 25))):
        t += draw(st.sampled_from([0.25, 0.5, 1, 2, 3.5, 7, 13]))
        kind = draw(st.sampled_from(["pause", "resume", "sweep", "sweep", "sweep"]))
        until = t + draw(st.sampled_from([0.5, 1, 3, 7, 14, 30, 90])) if kind == "pause" else 0.0
        ops.append((t, kind, until))
    return ops


@settings(max_examples=300, deadline=None)
@given(pause_plans(), st.sampled_from([POLICY, DunningPolicy(disable_warning_day=0, disable_day=10, cancel_day=12)]))
def test_pausing_and_resuming_at_any_points_never_repeats_a_step_nor_brings_one_earlier(
        ops: list[tuple[float, str, float]], policy: DunningPolicy) -> None:
    acc = past_due(policy)
    plain = {s.name: s.at for s in schedule.steps_for(acc.subscriptions["s1"], policy)}
    taken: dict[str, datetime] = {}
    mail_keys: list[tuple[str, str]] = []
    for n, kind, until in [*ops, (ops[-1][0] + 400, "sweep", 0.0)]:
        now = day(n)
        if kind == "pause":
            try:
                d = set_pause(acc, day(until), now, policy)
            except PauseRefused:  # only beyond the maximum from the start of the pause it extends
                current = schedule.paused_at(acc.pauses, now)
                assert len(acc.pauses) >= MAX_PAUSES or (
                    current is not None and day(until) > current[0] + timedelta(days=policy.max_pause_days))
                continue
        elif kind == "resume":
            d = set_pause(acc, None, now, policy)
        else:
            d, _ = advance(acc, now, policy)
            before = acc.subscriptions["s1"].steps_done
            for name in d.account.subscriptions["s1"].steps_done - before:
                assert name not in taken, f"{name} taken twice"
                assert now >= plain[name], f"{name} at {now}, before its unpaused time {plain[name]}"
                assert schedule.paused_at(acc.pauses, now) is None, f"{name} taken while paused"
                taken[name] = now
        mail_keys += [(e.kind, e.occasion) for e in d.effects if isinstance(e, SendEmail)]
        acc = roundtrip(d.account)
        assert all(b - a <= timedelta(days=policy.max_pause_days) for a, b in acc.pauses), acc.pauses
        # what the index says is never a time the sweep could not act at
        if acc.next_due_at is not None and kind == "sweep":
            assert schedule.paused_at(acc.pauses, acc.next_due_at) is None
    assert len(mail_keys) == len(set(mail_keys)), "an email went twice"
    # in the end (400 days later, unpaused) the whole ladder was walked
    assert acc.subscriptions["s1"].state is SubscriptionState.CANCELED
    assert set(taken) <= set(plain) and f"cancel-{policy.cancel_day}" in taken


# -- the policy an episode began under -----------------------------------------------------------

SHORT = DunningPolicy(disable_warning_day=7, disable_day=10)


def test_an_episode_keeps_its_policy_when_the_settings_change_and_a_new_one_takes_the_new_settings() -> None:
    acc = roundtrip(past_due(POLICY))
    sub = acc.subscriptions["s1"]
    assert sub.policy == POLICY.for_episode() and POLICY.version != SHORT.version
    assert schedule.disable_at(sub, SHORT) == day(30)
    acc, seen = sweep_days(acc, [10, 27, 29.9, 30], SHORT)
    assert [(n, m) for n, m, _, _ in seen if m] == [(10, ["payment_reminder"]), (27, ["disable_warning"]),
                                                  (30, ["service_disabled"])]
    view = account_view(acc, SHORT, day(30))
    assert view["subscriptions"][0]["policyVersion"] == POLICY.version
    assert view["dunning"]["policyVersion"] == SHORT.version
    assert view["dunning"]["policies"][POLICY.version]["DISABLE_DAY"] == 30
    # paid: the episode ends; the next one follows the new settings
    acc = apply_payment_event(acc, PaymentReceived("p", "acc", "pay", usd("10.00"), "wire"), {}, day(31), SHORT).account
    assert acc.subscriptions["s1"].policy is None
    acc = apply_payment_event(acc, failed("c2"), {}, day(40), SHORT).account
    assert acc.subscriptions["s1"].policy == SHORT.for_episode()
    assert schedule.disable_at(acc.subscriptions["s1"], POLICY) == day(50)
    assert "policies" in state_doc(acc) and roundtrip(acc) == acc


def test_the_policy_version_names_the_schedule_values_only() -> None:
    assert POLICY.version == DunningPolicy(max_pause_days=10, card_expiry_notice_days=3).version
    assert POLICY.version != SHORT.version
    assert DunningPolicy.from_values(SHORT.schedule_values()) == SHORT
    env = {"DUNNING_DISABLE_DAY": "10", "DUNNING_DISABLE_WARNING_DAY": "7", "DUNNING_MAX_PAUSE_DAYS": "30",
           "DUNNING_CARD_EXPIRY_NOTICE_DAYS": "14"}
    read = DunningPolicy.from_settings(env)
    assert read.version == SHORT.version and read.max_pause_days == 30 and read.card_expiry_notice_days == 14


# -- the card-expiry notice ----------------------------------------------------------------------

EXPIRING = PaymentMethod("card", "tok_visa", "visa", "4242", 12, 2026)  # good through 2026-12-31


def test_a_card_expiring_this_month_gets_one_notice_the_alert_and_no_retry_after_it_expired() -> None:
    acc = registered(EXPIRING)
    expires = datetime(2027, 1, 1, tzinfo=UTC)
    assert acc.next_due_at == expires - timedelta(days=30) == datetime(2026, 12, 2, tzinfo=UTC)
    assert account_view(acc, POLICY, T0)["alerts"] == []
    d, _ = advance(acc, day(1), POLICY)
    assert mails(d) == ["card_expiring"]
    acc = d.account
    assert acc.next_due_at is None
    assert mails(advance(acc, day(1.5), POLICY)[0]) == []
    codes = {a["code"]: a["severity"] for a in account_view(acc, POLICY, day(1))["alerts"]}
    assert codes == {"card_expiring": "warning"}
    acc = apply_payment_event(acc, failed(), {}, expires + timedelta(days=1), POLICY).account
    d, retry = advance(acc, expires + timedelta(days=2), POLICY)
    assert not retry and "the saved card has expired" in " ".join(t.detail for t in d.timeline)
    codes = {a["code"]: a["severity"] for a in account_view(d.account, POLICY, expires)["alerts"]}
    assert codes["card_expired"] == "error" and "card_expiring" not in codes
    # a new card ends it all, and gets a notice of its own in due time
    new = save_payment_method(d.account, PaymentMethod("card", "tok_mastercard", "mastercard", "4444", 1, 2030),
                              expires + timedelta(days=3), POLICY).account
    codes = {a["code"] for a in account_view(new, POLICY, expires + timedelta(days=3))["alerts"]}
    assert not codes & {"card_expired", "card_expiring"}
    assert advance(new, expires + timedelta(days=4), POLICY)[1]  # the retry of day 3 goes with the new card


def test_the_notice_is_found_through_the_due_index_at_its_time() -> None:
    acc = registered()  # expires at the end of 2034
    assert acc.next_due_at == datetime(2035, 1, 1, tzinfo=UTC) - timedelta(days=30)
    assert mails(advance(acc, acc.next_due_at - timedelta(seconds=1), POLICY)[0]) == []
    assert mails(advance(acc, acc.next_due_at, POLICY)[0]) == ["card_expiring"]


def test_the_same_card_saved_again_is_not_noticed_again_and_a_new_card_is() -> None:
    acc = registered(EXPIRING)
    d, _ = advance(acc, day(1), POLICY)
    assert mails(d) == ["card_expiring"]
    acc = d.account
    # the same card (brand, last4, expiry) saved again, also under another processor reference
    # (Stripe makes a new PaymentMethod id per save)
    for n, card in ((2, EXPIRING), (3, replace(EXPIRING, token="pm_1Qagain"))):
        acc = save_payment_method(acc, card, day(n), POLICY).account
        assert acc.next_due_at is None
        assert mails(advance(acc, day(n + 0.5), POLICY)[0]) == []
        acc = roundtrip(acc)
    # a new card (another expiry, or another card) is noticed in its time
    for n, card in ((5, replace(EXPIRING, exp_year=2027, exp_month=1)),
                    (40, PaymentMethod("card", "tok_mastercard", "mastercard", "4444", 1, 2027))):
        acc = save_payment_method(acc, card, day(n), POLICY).account
        assert acc.next_due_at is not None
        d, _ = advance(acc, max(acc.next_due_at, day(n)), POLICY)
        assert mails(d) == ["card_expiring"], card
        acc = d.account


# -- credit meets debt in any order --------------------------------------------------------------

PAYMENT = PaymentReceived("p1", "acc", "pay1", usd("25.00"), "wire")


def test_a_payment_before_the_failure_it_covers_leaves_nothing_past_due() -> None:
    acc = registered(None)
    d1 = apply_payment_event(acc, PAYMENT, {}, T0, POLICY)
    d2 = apply_payment_event(d1.account, failed("c1", "10.00"), {}, day(1), POLICY)
    assert d2.account.balance() == {} and d2.account.credit == {USD: 1500}
    assert d2.account.subscriptions["s1"].state is SubscriptionState.ACTIVE
    assert mails(d2) == [] and "charge c1 of 10.00 USD paid by account credit" in [t.detail for t in d2.timeline]
    d3 = apply_payment_event(d2.account, failed("c2", "20.00"), {}, day(2), POLICY)
    assert d3.account.balance() == {USD: usd("5.00")} and d3.account.credit == {}
    assert d3.account.subscriptions["s1"].state is SubscriptionState.PAST_DUE


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 5000), min_size=1, max_size=6), st.lists(st.integers(1, 8000), max_size=3),
       st.randoms(use_true_random=False))
def test_credit_and_debt_in_any_order_end_with_the_same_balance(
        failures: list[int], payments: list[int], rnd: object) -> None:
    events: list[ChargeFailed | PaymentReceived] = [
        ChargeFailed(f"f{i}", "acc", "s1", f"c{i}", Money(m, USD), "card_declined") for i, m in enumerate(failures)]
    events += [PaymentReceived(f"p{i}", "acc", f"pay{i}", Money(m, USD), "wire") for i, m in enumerate(payments)]
    shuffled = list(events)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]

    def play(seq: list[ChargeFailed | PaymentReceived]) -> Account:
        acc = registered(None)
        for i, e in enumerate(seq):
            acc = apply_payment_event(acc, e, {}, day(i), POLICY).account
        return acc

    a, b = play(events), play(shuffled)
    net = sum(failures) - sum(payments)
    for acc in (a, b):
        assert acc.balance() == ({USD: Money(net, USD)} if net > 0 else {})
        assert acc.credit == ({USD: -net} if net < 0 else {})
        assert (acc.subscriptions["s1"].state is SubscriptionState.ACTIVE) == (net <= 0)


# -- a late hard decline -------------------------------------------------------------------------


def test_a_hard_decline_dated_before_the_card_was_saved_does_not_stop_its_retries() -> None:
    acc = registered(CARD, at=T0 - timedelta(days=30))
    acc = save_payment_method(acc, PaymentMethod("card", "tok_mastercard", "mastercard", "4444", 1, 2035), T0,
                              POLICY).account
    late = apply_payment_event(acc, failed(reason="card_expired", time=T0 - timedelta(hours=1)), {}, T0, POLICY)
    assert not late.account.retry_blocked
    assert [t.detail for t in late.timeline if t.kind == "hard_decline_of_earlier_card"] == [
        "charge c1 was declined for good (card_expired) at 2026-12-01T08:00:00Z, before the saved card was "
        "saved: that card is still retried"]
    assert advance(late.account, day(1), POLICY)[1]
    current = apply_payment_event(acc, failed(reason="lost_or_stolen", time=T0 + timedelta(hours=1)), {}, T0, POLICY)
    assert current.account.retry_blocked and not advance(current.account, day(1), POLICY)[1]
    undated = apply_payment_event(acc, failed(reason="lost_or_stolen"), {}, T0, POLICY)
    assert undated.account.retry_blocked


# -- times in timeline details -------------------------------------------------------------------

OFFSET_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9:.]+(?:[+-][0-9]{2}:[0-9]{2})?(?![0-9:.Z])")


def test_every_time_in_a_timeline_detail_is_rfc3339_in_utc() -> None:
    acc = registered(CARD, at=T0 - timedelta(days=30))
    acc = save_payment_method(acc, replace(CARD, token="tok_mastercard"), T0, POLICY).account
    decisions = [apply_payment_event(acc, failed(reason="card_expired", time=T0 - timedelta(hours=1)), {}, T0,
                                     POLICY)]
    decisions.append(set_pause(decisions[-1].account, day(20), day(1), POLICY))  # paused
    decisions.append(set_pause(decisions[-1].account, day(30), day(2), POLICY))  # extended
    decisions.append(set_pause(decisions[-1].account, day(25), day(3), POLICY))  # shortened
    decisions.append(set_pause(decisions[-1].account, None, day(4), POLICY))  # resumed by an operator
    decisions.append(set_pause(decisions[-1].account, day(6), day(5), POLICY))
    decisions.append(advance(decisions[-1].account, day(7), POLICY)[0])  # the pause ran out
    details = [t.detail for d in decisions for t in d.timeline]
    assert sum("Z" in d for d in details) >= 7
    assert [d for d in details if OFFSET_TIME.search(d)] == []
    with pytest.raises(PauseRefused) as refused:
        set_pause(acc, day(0.5), day(1), POLICY)
    assert not OFFSET_TIME.search(str(refused.value)) and "2026-12-02T09:00:00Z" in str(refused.value)


# -- the local stack's command line --------------------------------------------------------------


def test_the_stack_help_describes_it_in_a_whole_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    from devstack.stack import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert ("The local stack of contract §5: Azurite, the local ACS email endpoint, the sandbox gateway and "
            "the Functions app on the project's own host, each in a process of its own.") in text
