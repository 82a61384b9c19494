"""Issue 13 points 4 and 8 on the pure core: a delivery report is about an address, matched as
mail systems match it, the newest attempt wins, and odd report content is ignored with a reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.delivery_reports import ReportIgnored, read_report
from shared.lifecycle.decide import Registration, register
from shared.lifecycle.effects import IndexContact
from shared.lifecycle.mail import delivery_reported
from shared.lifecycle.mailbox import mailbox, same_mailbox
from shared.lifecycle.model import Account, Profile
from shared.lifecycle.retention import erase_profile
from shared.policy import DunningPolicy
from shared.store.contact_index import contact_key

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICY = DunningPolicy()
ODD = "o'brien/ops#1?x\\\"q\"@Contoso.EXAMPLE"


def account(*contacts: str) -> Account:
    return register(Account("acc-1"), Registration(Profile("Contoso", "en", contacts), (("s1", "Web"),)), NOW,
                    POLICY).account


def report(acc: Account, recipient: str, status: str, minutes: int) -> Account:
    return delivery_reported(acc, recipient, status, NOW + timedelta(minutes=minutes), "550", NOW, POLICY).account


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
