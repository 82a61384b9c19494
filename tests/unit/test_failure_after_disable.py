"""Issue 13 point 9 on the pure core and the renderer: a new failure on a subscription that the
sweep already disabled (or that is canceled) is told in a failure email that says so, and an email
that cannot be written is never shown as an address problem."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.dunning import advance
from shared.domain.effects import SendEmail
from shared.domain.facts import ChargeFailed
from shared.domain.mail import email_failed
from shared.domain.model import Account, Locale, Profile, SubscriptionState
from shared.domain.money import Money
from shared.domain.payments import Registration, apply_payment_event, register
from shared.domain.policy import DunningPolicy
from shared.domain.retention import set_legal_hold
from shared.notifications.compose import compose
from shared.notifications.formatting import format_date
from shared.settings import Settings

START = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
POLICY = DunningPolicy()
SETTINGS = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true",
                              "BILLING_LINK_SIGNING_KEY": "unit-test-key"})
ALREADY_DISABLED = {"en": "This service is already disabled", "zh-CN": "此服务已被禁用"}
CANCELED_ON = {"en": "it will be canceled on", "zh-CN": "将于"}


def failure(charge: str, at: datetime, acc: Account) -> tuple[Account, list[SendEmail]]:
    event = ChargeFailed(f"e-{charge}", "acc-1", "s1", charge, Money.parse("10.00", "USD"), "card_declined")
    d = apply_payment_event(acc, event, {}, at, POLICY)
    return d.account, [e for e in d.effects if isinstance(e, SendEmail) and e.kind == "payment_failed"]


def disabled_account(locale: Locale) -> Account:
    acc = register(Account("acc-1"), Registration(Profile("Contoso", locale, ("ap@contoso.example",)),
                                                  (("s1", "Web"),)), START, POLICY).account
    acc, _ = failure("c1", START, acc)
    decision, _ = advance(acc, START + timedelta(days=POLICY.disable_day, hours=1), POLICY)
    assert decision.account.subscriptions["s1"].state is SubscriptionState.DISABLED
    return decision.account


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_a_new_failure_on_a_disabled_subscription_mails_that_it_is_already_disabled(locale: Locale) -> None:
    now = START + timedelta(days=40)
    acc, [email] = failure("c2", now, disabled_account(locale))
    assert acc.subscriptions["s1"].state is SubscriptionState.DISABLED
    assert email.facts["state"] == "disabled"
    rendered = compose(acc, email, SETTINGS, POLICY, now)
    cancel_on = format_date(START + timedelta(days=POLICY.cancel_day), locale)
    for body in (rendered.text, rendered.html):
        assert ALREADY_DISABLED[locale] in body and cancel_on in body and CANCELED_ON[locale] in body
        assert "to avoid your services being disabled" not in body


def test_a_new_failure_on_a_canceled_subscription_says_a_payment_no_longer_reactivates_it() -> None:
    acc = disabled_account("en")
    acc = advance(acc, START + timedelta(days=POLICY.cancel_day, hours=1), POLICY)[0].account
    assert acc.subscriptions["s1"].state is SubscriptionState.CANCELED
    now = START + timedelta(days=POLICY.cancel_day + 2)
    acc, [email] = failure("c3", now, acc)
    rendered = compose(acc, email, SETTINGS, POLICY, now)
    assert "already canceled: a payment no longer reactivates it" in rendered.text


def test_only_a_refusal_of_the_address_marks_the_contact_unreachable() -> None:
    acc = disabled_account("en")
    now = START + timedelta(days=40)
    ours = email_failed(acc, "k1", "payment_failed", "ap@contoso.example", "the email could not be written", now,
                        POLICY)
    assert ours.account.profile is not None and dict(ours.account.profile.unreachable) == {}
    assert [t.kind for t in ours.timeline] == ["email_failed"]
    theirs = email_failed(acc, "k2", "payment_failed", "ap@contoso.example", "recipient refused", now, POLICY,
                          bad_address=True)
    assert theirs.account.profile is not None and dict(theirs.account.profile.unreachable) == {
        "ap@contoso.example": now}


@pytest.mark.parametrize(("locale", "kept"), [("en", "Their data is kept for now"), ("zh-CN", "其数据暂时保留")])
def test_a_cancellation_under_a_legal_hold_is_mailed_without_a_deletion_date(locale: Locale, kept: str) -> None:
    """The same kind of fault: an email the renderer could not write (no deletion date under a
    legal hold) was given up; it goes out, announcing no date."""
    acc = disabled_account(locale)
    acc = set_legal_hold(acc, "s1", True, START + timedelta(days=35), POLICY).account
    decision, _ = advance(acc, START + timedelta(days=POLICY.cancel_day, hours=1), POLICY)
    [email] = [e for e in decision.effects if isinstance(e, SendEmail) and e.kind == "service_canceled"]
    rendered = compose(decision.account, email, SETTINGS, POLICY,
                       START + timedelta(days=POLICY.cancel_day, hours=1))
    assert kept in rendered.text and kept in rendered.html
    assert "{date}" not in rendered.subject and "Contoso" in rendered.subject
