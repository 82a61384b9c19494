"""The soak's generator and independent model (bench/soak): a seed replays a run, money is read and
written exactly, and contract §3's ladder lands on the right step and dates."""

from __future__ import annotations

import json
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from bench.soak.check import check, minor
from bench.soak.model import Ladder, expect
from bench.soak.plan import DECIMALS, at_day, generate, money_text
from bench.soak.run import Observed, checkpoints


def _texts(seed: int) -> list[str]:
    plan = generate(seed, 40, 400, malformed=4)
    return [m.text for k in sorted(plan.messages) for m in plan.messages[k]]


def test_a_seed_replays_the_same_messages_and_another_seed_does_not() -> None:
    assert _texts(3) == _texts(3)
    assert _texts(3) != _texts(4)


def test_the_plan_has_its_duplicates_malformed_messages_and_every_cohort() -> None:
    plan = generate(5, 40, 400, malformed=4)
    messages = [m for k in plan.messages for m in plan.messages[k]]
    dups = [m for m in messages if m.duplicate]
    assert 0.15 <= len(dups) / len(messages) <= 0.25
    assert sum(m.event_id is None for m in messages) == 4
    originals = [m.event_id for m in messages if m.event_id and not m.duplicate]
    assert len(originals) == len(set(originals))
    for m in messages:
        if m.event_id:
            assert json.loads(m.text)["id"] == m.event_id
    assert {a.cohort for a in plan.accounts} == set(plan.messages)


@given(st.integers(0, 10**15), st.sampled_from(sorted(DECIMALS)))
def test_amounts_are_written_and_read_exactly(value: int, currency: str) -> None:
    text = money_text(value, currency)
    assert minor(text, currency) == value
    assert ("." in text) == (DECIMALS[currency] > 0)


def test_the_ladder_lands_on_each_step_of_contract_section_3() -> None:
    since = at_day(0)
    states = {day: Ladder(since, at_day(day)).state for day in (0, 29, 30, 89, 90, 179, 180)}
    assert states == {0: "past_due", 29: "past_due", 30: "disabled", 89: "disabled", 90: "canceled",
                      179: "canceled", 180: "deleted"}
    assert Ladder(since, at_day(10)).dates() == {"pastDueSince": since, "disableAt": since + timedelta(days=30),
                                                 "cancelAt": since + timedelta(days=90),
                                                 "deleteAt": since + timedelta(days=180)}
    assert Ladder(since, at_day(100)).dates() == {"pastDueSince": since, "deleteAt": since + timedelta(days=180)}
    assert Ladder(since, at_day(190)).emails() == {
        "payment_reminder": 3, "disable_warning": 1, "service_disabled": 1, "service_canceled": 1,
        "deletion_warning": 3, "data_deleted": 1}
    assert Ladder(since, at_day(20)).emails()["payment_reminder"] == 2


def test_the_clock_visits_every_step_of_every_cohort() -> None:
    days = set(checkpoints())
    for start in (0, 90, 150, 180):
        assert {start + d for d in (0, 1, 3, 5, 7, 14, 21, 27, 30)} & set(range(191)) <= days


def test_the_checker_reports_a_key_charged_twice_an_unknown_account_and_a_lost_dead_letter() -> None:
    plan = generate(6, 4, 40, malformed=1)
    charge = {"idempotencyKey": "k1", "amount": "1.00", "currency": "USD", "status": "succeeded",
              "accountId": plan.accounts[0].account_id}
    stranger = {"headers": {"X-Billing-Account": "nobody", "X-Billing-Email-Kind": "payment_failed"},
                "to": [{"address": "x@example.com"}]}
    report = check(plan, Observed({}, [charge, charge], [stranger], [], [], 0))
    text = "\n".join(report.differences)
    assert "idempotency key k1 charged 2 times" in text
    assert "emails for an account the soak never made: nobody" in text
    assert "a malformed message was not dead-lettered" in text
    assert all(f"{a.account_id}: GET answered None" in text for a in plan.accounts)


def test_a_card_payer_is_settled_and_an_invoice_payer_walks_the_ladder() -> None:
    plan = generate(7, 60, 600)
    for account in plan.accounts:
        exp = expect(account)
        if account.payer == "card_ok":
            assert not any(exp.owing.values()) and exp.card_settles
        if account.payer == "invoice" and not account.races_card and not account.payments:
            assert {s for s, o in exp.owing.items() if o} == exp.had_owed
