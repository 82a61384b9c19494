"""Retention on real Table Storage: warnings, deletion, then erasure that keeps the money."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from shared.bootstrap import Services
from shared.domain.facts import ChargeFailed
from shared.domain.model import PaymentMethod, Profile, SubscriptionState
from shared.domain.money import Money
from shared.domain.payments import Registration
from shared.services.email import give_up_email, send_email
from shared.services.unit_of_work import apply_event, register_account
from tests.fakes.mailer import FakeMailer
from tests.integration.queues import queue as queue_of
from tests.integration.sweeping import sweep

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CONTACT = "ap@contoso.example"


def send_pending_mail(s: Services, account_id: str) -> int:
    rows = [r for r in s.uow.accounts.pending_outbox(account_id) if r.kind == "email"]
    for r in rows:
        send_email(s.uow, s.mailer, s.settings, account_id, r.key)  # type: ignore[arg-type]
    return len(rows)


def at(s: Services, when: datetime) -> None:
    s.test_clock.set(when)  # type: ignore[union-attr]


def test_a_canceled_account_is_warned_deleted_and_erased_keeping_its_financial_records(
        make_services: Callable[..., Services]) -> None:
    mailer = FakeMailer()
    s = make_services(mailer=mailer)
    at(s, T0)
    register_account(s.uow, "acc-gone", Registration(
        Profile("Contoso", "en", (CONTACT,), PaymentMethod("card", "tok_x", "visa", "0069", 1, 2027)),
        (("s1", "Web shop"),)))
    apply_event(s.uow, ChargeFailed("e1", "acc-gone", "s1", "c1", Money.parse("10.00", "USD"), "card_expired"),
                "billing.charge.failed")
    at(s, T0 + timedelta(days=90))
    sweep(s, "dunning")
    canceled_at = T0 + timedelta(days=90)
    assert s.uow.accounts.load("acc-gone").account.subscriptions["s1"].state is SubscriptionState.CANCELED
    send_pending_mail(s, "acc-gone")

    at(s, canceled_at + timedelta(days=60))
    assert sweep(s, "retention").accounts == 1
    send_pending_mail(s, "acc-gone")
    assert any("30" in m.text for m in mailer.sent.values() if "deleted" in m.subject.lower())

    at(s, canceled_at + timedelta(days=90))
    report = sweep(s, "retention")
    # The confirmation has not gone out yet: the contact is still needed.
    assert report.outcomes["erasure_waits"] == 1 and "erased" not in report.outcomes
    account = s.uow.accounts.load("acc-gone").account
    assert account.subscriptions["s1"].state is SubscriptionState.DELETED and account.profile is not None
    queue = queue_of(s, "subscription-lifecycle")
    assert "subscription.data_deleted" in [json.loads(m.content)["type"] for m in queue.peek_messages(32)]
    assert send_pending_mail(s, "acc-gone") == 1

    at(s, canceled_at + timedelta(days=90, hours=2))
    report = sweep(s, "retention")
    assert report.outcomes["erased"] == 1
    account = s.uow.accounts.load("acc-gone").account
    assert account.profile is None
    assert account.balance() == {"USD": Money.parse("10.00", "USD")}
    assert [(n.charge_id, str(n.status)) for n in s.uow.accounts.charge_notes("acc-gone")] == [("c1", "outstanding")]
    timeline = json.dumps(s.uow.accounts.timeline("acc-gone"))
    assert CONTACT not in timeline and "0069" not in timeline and "Web shop" not in timeline
    assert "customer_data_deleted" in timeline and "charge_failed" in timeline
    operation_ids = [k for k in mailer.sent]
    assert operation_ids
    assert all(s.uow.accounts.mail_record("acc-gone", o)["recipient"] == "[deleted]"  # type: ignore[index]
               for o in operation_ids)
    again = sweep(s, "retention")
    assert again.queued == 0


def waiting_for_its_confirmation(s: Services, account_id: str) -> datetime:
    """Register, cancel at day 90 and run the retention sweep on the deletion day, whose
    confirmation email is still out: the instant of that sweep (the clock stays there)."""
    at(s, T0)
    register_account(s.uow, account_id, Registration(Profile("Contoso", "en", (CONTACT,), None),
                                                           (("s1", "Web shop"),)))
    apply_event(s.uow, ChargeFailed("e1", account_id, "s1", "c1", Money.parse("10.00", "USD"), "card_expired"),
                "billing.charge.failed")
    at(s, T0 + timedelta(days=90))
    sweep(s, "dunning")
    send_pending_mail(s, account_id)
    deletion_day = T0 + timedelta(days=180)
    at(s, deletion_day)
    # The deletion's step, then its erasure entry: both find the confirmation still out.
    outcomes = [o for _ in range(3) for o in sweep(s, "retention").outcomes.elements()]
    assert outcomes == ["erasure_waits", "erasure_waits"]
    return deletion_day


def test_erasure_follows_the_confirmation_email_at_once_not_an_hour_later(
        make_services: Callable[..., Services]) -> None:
    """The next sweep after the confirmation is sent erases, at the same instant: a sweep that
    found the email still out does not hold the erasure back for an hour."""
    s = make_services(mailer=FakeMailer())
    waiting_for_its_confirmation(s, "acc-mailed")
    assert send_pending_mail(s, "acc-mailed") == 1
    assert sweep(s, "retention").outcomes["erased"] == 1
    assert s.uow.accounts.load("acc-mailed").account.profile is None


def test_erasure_follows_a_confirmation_that_could_not_be_sent(make_services: Callable[..., Services]) -> None:
    """An email given up is closed too: the erasure does not wait for it any longer."""
    s = make_services(mailer=FakeMailer())
    now = waiting_for_its_confirmation(s, "acc-unsent")
    [row] = [r for r in s.uow.accounts.pending_outbox("acc-unsent") if r.kind == "email"]
    give_up_email(s.uow, "acc-unsent", row.key, "the retries ran out")
    assert s.uow.accounts.load("acc-unsent").account.profile is not None and s.uow.clock.now() == now
    assert sweep(s, "retention").outcomes["erased"] == 1
    assert s.uow.accounts.load("acc-unsent").account.profile is None
