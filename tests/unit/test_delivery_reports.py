"""Issue 13 points 4 and 8 on the pure core: a delivery report is about an address, matched as
mail systems match it, the newest attempt wins, and odd report content is ignored with a reason."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.adapters.store.contact_index import contact_key
from shared.domain.effects import IndexContact
from shared.domain.mail import REPORT_CLOCK_SKEW, delivery_reported
from shared.domain.mailbox import mailbox, same_mailbox
from shared.domain.model import Account, Profile
from shared.domain.payments import Registration, register
from shared.domain.policy import DunningPolicy
from shared.domain.retention import erase_profile
from shared.services.delivery_reports import ReportIgnored, read_report

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICY = DunningPolicy()
ODD = "o'brien/ops#1?x\\\"q\"@Contoso.EXAMPLE"


def account(*contacts: str) -> Account:
    return register(Account("acc-1"), Registration(Profile("Contoso", "en", contacts), (("s1", "Web"),)), NOW,
                    POLICY).account


def report(acc: Account, recipient: str, status: str, minutes: int) -> Account:
    # Reports arrive after the attempts they describe: the clock reads an hour past NOW.
    return delivery_reported(acc, recipient, status, NOW + timedelta(minutes=minutes), "550", NOW + timedelta(hours=1),
                             POLICY).account


def unreachable(acc: Account) -> dict[str, datetime]:
    assert acc.profile is not None
    return dict(acc.profile.unreachable)


def test_domains_compare_without_case_and_local_parts_exactly() -> None:
    assert mailbox("Ap@Contoso.EXAMPLE") == "Ap@contoso.example"
    assert same_mailbox("ap@contoso.example", "ap@CONTOSO.example")
    assert not same_mailbox("ap@contoso.example", "AP@contoso.example")


@pytest.mark.parametrize("status", ["Bounced", "Suppressed", "Failed", "Quarantined"])
def test_a_failure_report_marks_the_address_as_the_account_spells_it(status: str) -> None:
    acc = report(account("ap@contoso.example", ODD), ODD.replace("Contoso.EXAMPLE", "contoso.example"), status, 1)
    assert unreachable(acc) == {ODD: NOW + timedelta(minutes=1)}


def test_a_later_delivery_clears_it_and_an_older_report_arriving_late_changes_nothing() -> None:
    acc = report(account("ap@contoso.example"), "ap@contoso.example", "Bounced", 1)
    acc = report(acc, "ap@contoso.example", "Delivered", 5)
    assert unreachable(acc) == {}
    assert unreachable(report(acc, "ap@contoso.example", "Bounced", 3)) == {}  # older than the delivery
    acc = report(acc, "ap@contoso.example", "Bounced", 7)
    assert unreachable(report(acc, "ap@contoso.example", "Delivered", 6)) == {"ap@contoso.example":
                                                                             NOW + timedelta(minutes=7)}


def test_a_repeated_bounce_keeps_the_first_time_and_spam_filtering_is_no_address_problem() -> None:
    acc = report(account("ap@contoso.example"), "ap@contoso.example", "Bounced", 1)
    assert unreachable(report(acc, "ap@contoso.example", "Bounced", 9)) == {"ap@contoso.example":
                                                                          NOW + timedelta(minutes=1)}
    assert unreachable(report(account("ap@contoso.example"), "ap@contoso.example", "FilteredSpam", 1)) == {}
    assert unreachable(report(account("ap@contoso.example"), "AP@contoso.example", "Bounced", 1)) == {}


FAR = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
# A report time relative to its arrival: minutes before it (ACS reports a little late), within
# the allowed skew after it, far past it (a broken clock), or the largest time there is.
REPORT_TIMES = st.one_of(st.integers(-180, 0).map(lambda m: timedelta(minutes=m)),
                         st.integers(0, 300).map(lambda s: timedelta(seconds=s)),
                         st.integers(6, 10**6).map(lambda m: timedelta(minutes=m)),
                         st.just(None))
ARRIVALS = st.lists(st.tuples(st.integers(0, 60), st.sampled_from(["Bounced", "Delivered", "Suppressed"]),
                              REPORT_TIMES), max_size=12)


def _arrive(acc: Account, now: datetime, status: str, offset: timedelta | None) -> Account:
    at = FAR if offset is None else now + offset
    return delivery_reported(acc, "ap@contoso.example", status, at, "550", now, POLICY).account


@given(ARRIVALS, st.sampled_from(["Bounced", "Delivered"]), st.integers(6, 600))
def test_a_report_dated_at_its_arrival_wins_over_any_earlier_ones_however_far_ahead_they_are_dated(
        arrivals: list[tuple[int, str, timedelta | None]], last_status: str, wait: int) -> None:
    # A report dated year 9999 won over every later real report: the contact stayed unreachable forever.
    acc, now = account("ap@contoso.example"), NOW
    for gap, status, offset in arrivals:
        now += timedelta(minutes=gap)
        acc = _arrive(acc, now, status, offset)
        assert acc.profile is not None
        assert all(t <= now + REPORT_CLOCK_SKEW for t in acc.profile.reported.values())
    now += timedelta(minutes=wait)  # later than every earlier report can count as made
    acc = _arrive(acc, now, last_status, timedelta(0))
    assert set(unreachable(acc)) == ({"ap@contoso.example"} if last_status == "Bounced" else set())
    assert all(since <= now for since in unreachable(acc).values())  # since the first bounce still standing


@given(st.permutations([("Bounced", 1), ("Delivered", 2), ("Bounced", 3), ("Delivered", 4)]), st.booleans())
def test_reports_within_the_skew_keep_their_order_in_any_arrival_order(
        order: list[tuple[str, int]], far_first: bool) -> None:
    # Times up to REPORT_CLOCK_SKEW ahead of the clock are honoured as they are: the newest wins.
    acc = account("ap@contoso.example")
    if far_first:  # a bogus far-future bounce before them is taken as its arrival, NOW
        acc = delivery_reported(acc, "ap@contoso.example", "Bounced", FAR, "550", NOW, POLICY).account
    for status, minute in order:
        acc = delivery_reported(acc, "ap@contoso.example", status, NOW + timedelta(minutes=minute), "550", NOW,
                                POLICY).account
    assert unreachable(acc) == {}


def test_a_far_future_time_kept_before_the_rule_no_longer_blocks_later_reports() -> None:
    acc = account("ap@contoso.example")
    assert acc.profile is not None
    stuck = replace(acc, profile=replace(acc.profile, unreachable={"ap@contoso.example": FAR},
                                         reported={"ap@contoso.example": FAR}))
    cleared = delivery_reported(stuck, "ap@contoso.example", "Delivered", NOW - timedelta(minutes=2), "", NOW, POLICY)
    assert unreachable(cleared.account) == {}
    assert cleared.account.profile is not None and cleared.account.profile.reported == {
        "ap@contoso.example": NOW - timedelta(minutes=2)}


def test_registration_contact_changes_and_erasure_keep_the_address_index() -> None:
    first = register(Account("acc-1"), Registration(Profile("C", "en", ("a@X.example", "b@x.example")), ()), NOW,
                     POLICY)
    assert [(e.address, e.listed) for e in first.effects if isinstance(e, IndexContact)] == [
        ("a@x.example", True), ("b@x.example", True)]
    changed = register(first.account, Registration(Profile("C", "en", ("b@x.example", "c@x.example")), ()), NOW,
                       POLICY)
    assert [(e.address, e.listed) for e in changed.effects if isinstance(e, IndexContact)] == [
        ("a@x.example", False), ("c@x.example", True)]
    renamed = register(changed.account, Registration(Profile("D", "en", ("b@x.example", "c@x.example")), ()), NOW,
                       POLICY)
    assert not [e for e in renamed.effects if isinstance(e, IndexContact)]
    erased = erase_profile(changed.account, NOW, POLICY)
    assert [(e.address, e.listed) for e in erased.effects if isinstance(e, IndexContact)] == [
        ("b@x.example", False), ("c@x.example", False)]


@given(st.text(min_size=1, max_size=254), st.text(min_size=1, max_size=254))
def test_address_keys_are_valid_table_keys_and_never_collide(address: str, other: str) -> None:
    key = contact_key(address)
    assert not any(c in key for c in "/\\#?'\"") and not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in key)
    assert (contact_key(other) == key) == (other == address)
    assert contact_key(address + "/") != contact_key(address + "%2F")


def test_reports_are_read_with_seven_fractional_digits_and_odd_content_is_ignored_with_a_reason() -> None:
    data = {"recipient": "ap@contoso.example", "status": "Bounced", "messageId": "a/b?c#d",
            "deliveryAttemptTimeStamp": "2026-12-01T09:05:00.1234567Z",
            "deliveryStatusDetails": {"statusMessage": "550 5.1.1"}}
    got = read_report(data, None)
    assert got.at == datetime(2026, 12, 1, 9, 5, 0, 123456, tzinfo=UTC) and got.message_id == "a/b?c#d"
    assert read_report({**data, "deliveryAttemptTimeStamp": None, "deliveryAttemptTimestamp":
                        "2026-12-01T09:06:00Z"}, None).at == datetime(2026, 12, 1, 9, 6, tzinfo=UTC)
    for bad, field in ((None, "data"), ({**data, "recipient": 5}, "recipient"), ({**data, "status": ""}, "status"),
                       ({**data, "recipient": "/" * 300 + "@contoso.example"}, "recipient"),
                       ({**data, "deliveryAttemptTimeStamp": "yesterday"}, "deliveryAttemptTimeStamp")):
        with pytest.raises(ReportIgnored, match=field):
            read_report(bad, None)
