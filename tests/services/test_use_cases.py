"""Registration, settlement, the sweeps' steps, email sending, delivery reports and erasure, each
through its service function on the twins."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from devstack.sandbox_gateway.cards import FakeGateway
from shared.adapters.mailer.protocol import MailRejected
from shared.domain.facts import ChargeFailed, ChargeSucceeded
from shared.domain.limits import MAX_SUBSCRIPTIONS
from shared.domain.model import SubscriptionState
from shared.domain.money import Money
from shared.services.data_erasure import erase_customer_data, erase_when_mailed
from shared.services.delivery_reports import DeliveryReport, apply_report
from shared.services.email import give_up_email, send_email
from shared.services.settle_account import NoCardOnFile, settle_account, update_card_and_settle
from shared.services.sweep_work import SweepPage, SweepWork, dead_letter_work, expand, fan_out, run_work
from shared.services.unit_of_work import Refused, UnitOfWork, apply_event
from shared.services.views import account_view
from shared.settings import Settings
from tests.fakes.mailer import FakeMailer
from tests.fakes.queues import InMemoryQueues
from tests.services.conftest import ACC, CONTACTS, NOW, handed_off, lifecycle_types, pending_emails, register


class ForgottenOperations:
    """The twin of `MailIndex.forget`: which operation ids erasure dropped."""

    def __init__(self) -> None:
        self.forgotten: list[str] = []

    def forget(self, operation_ids: list[str]) -> None:
        self.forgotten += operation_ids


def fail(uow: UnitOfWork, cid: str = "c1", amount: str = "10.00") -> None:
    apply_event(uow, ChargeFailed(f"evt-{cid}", ACC, "s1", cid, Money.parse(amount, "USD"), "card_declined"),
                "billing.charge.failed")


# -- registration ---------------------------------------------------------------------------------


def test_registration_stores_the_account_and_indexes_its_contacts(uow: UnitOfWork) -> None:
    register(uow)
    account = uow.accounts.load(ACC).account
    assert account.profile is not None and account.profile.billing_contacts == CONTACTS
    assert [uow.contacts.accounts(c) for c in CONTACTS] == [[ACC], [ACC]]
    assert uow.accounts.pending_outbox(ACC) == []  # the index rows were carried out


def test_a_contact_change_is_mailed_and_moves_the_index(uow: UnitOfWork) -> None:
    register(uow)
    register(uow, contacts=("new@contoso.example",))
    assert uow.contacts.accounts("new@contoso.example") == [ACC] and uow.contacts.accounts(CONTACTS[0]) == []
    assert len(handed_off(uow)) == len(pending_emails(uow)) >= 1


def test_registration_past_200_subscriptions_is_refused(uow: UnitOfWork) -> None:
    with pytest.raises(Refused):
        register(uow, subscriptions=[(f"s{i}", "x") for i in range(MAX_SUBSCRIPTIONS + 1)])
    assert not uow.accounts.exists(ACC)


# -- settlement ----------------------------------------------------------------------------------


def test_a_new_card_settles_everything_owed_at_once(uow: UnitOfWork) -> None:
    gateway = FakeGateway(clock=lambda: NOW)
    register(uow)
    fail(uow, "c1")
    fail(uow, "c2", "5.00")
    update = update_card_and_settle(uow, gateway, ACC, "tok_visa")
    assert update.status == "settled" and sorted(p["chargeId"] for p in update.settlement.paid) == ["c1", "c2"]
    account = uow.accounts.load(ACC).account
    assert account.outstanding == {} and account.subscriptions["s1"].state is SubscriptionState.ACTIVE
    assert account.profile is not None and account.profile.payment_method is not None
    assert [c.amount for c in gateway.charges_for(ACC)] == [Money.parse("15.00", "USD")]
    assert lifecycle_types(uow) == ["subscription.past_due", "subscription.reactivated"]
    assert settle_account(uow, gateway, ACC).paid == []  # nothing left: nothing charged again
    assert len(gateway.charges_for(ACC)) == 1


def test_a_declined_card_stays_saved_and_nothing_is_paid(uow: UnitOfWork) -> None:
    gateway = FakeGateway(clock=lambda: NOW)
    register(uow)
    fail(uow)
    update = update_card_and_settle(uow, gateway, ACC, "tok_chargeDeclined")
    assert update.settlement.declines and update.settlement.paid == []
    assert "c1" in uow.accounts.load(ACC).account.outstanding


def test_settlement_without_a_card_on_file_is_refused(uow: UnitOfWork) -> None:
    register(uow)
    fail(uow)
    with pytest.raises(NoCardOnFile):
        settle_account(uow, FakeGateway(clock=lambda: NOW), ACC)


# -- the sweeps ---------------------------------------------------------------------------------


def drain(uow: UnitOfWork, gateway: FakeGateway | None = None) -> list[str]:
    queues = uow.queues
    assert isinstance(queues, InMemoryQueues)
    for text in queues.take("sweep-pages"):
        expand(uow, SweepPage.from_message(text))
    return [run_work(uow, gateway, ForgottenOperations(), SweepWork.from_message(t)).outcome  # type: ignore[arg-type]
            for t in queues.take("sweep-work")]


def test_the_dunning_sweep_fans_out_expands_and_steps_each_due_account(uow: UnitOfWork) -> None:
    register(uow)
    fail(uow)
    due = uow.accounts.load(ACC).account.next_due_at
    assert due is not None
    uow.clock.advance_to(due)  # type: ignore[attr-defined]
    report = fan_out(uow, "dunning")
    assert report.queued == 1 and report.finished
    assert fan_out(uow, "dunning").queued == 0  # claimed: the next run does not queue it again
    assert drain(uow) == ["stepped"]
    assert [e["kind"] for e in uow.accounts.timeline(ACC)][-2:] == ["dunning_steps", "retry_skipped"]  # no card
    after = uow.accounts.load(ACC).account.next_due_at
    assert after is not None and after > due
    assert [e.at for e in uow.indexes.due(after)] == [after]  # the entry done, the next one written


def test_a_sweep_step_for_a_paid_account_is_stale(uow: UnitOfWork) -> None:
    register(uow)
    fail(uow)
    apply_event(uow, ChargeSucceeded("evt-s", ACC, "s1", "c1", Money.parse("10.00", "USD")), "billing.charge.succeeded")
    uow.clock.advance_to(NOW + timedelta(days=3))  # type: ignore[attr-defined]
    fan_out(uow, "dunning")
    assert set(drain(uow)) <= {"stale"}


def test_the_dunning_sweep_retries_the_saved_card(uow: UnitOfWork) -> None:
    gateway = FakeGateway(clock=lambda: NOW)
    register(uow)
    update_card_and_settle(uow, gateway, ACC, "tok_visa")
    fail(uow)  # a soft decline: the sweep retries with the saved card
    due = uow.accounts.load(ACC).account.next_due_at
    assert due is not None
    uow.clock.advance_to(due + timedelta(days=1))  # type: ignore[attr-defined]
    fan_out(uow, "dunning")
    outcomes = drain(uow, gateway)
    assert "retried" in outcomes and uow.accounts.load(ACC).account.outstanding == {}


def test_a_settlement_stopped_at_its_charge_limit_is_finished_by_the_next_sweep(uow: UnitOfWork) -> None:
    """More owed than one request charges (MAX_ROUNDS charges at the processor's largest), after
    the retry days: the card update answers `settled: false` with the rest unfinished, and the
    next dunning sweep charges the rest to the saved card (contract §2), once."""
    gateway = FakeGateway(clock=lambda: NOW, max_charge_minor=100)  # 1.00 per charge: 30.00 per request
    register(uow)
    fail(uow, amount="45.00")
    for day in (1, 3, 5, 7):  # the retry days pass without a card (each sweep takes its steps)
        uow.clock.advance_to(NOW + timedelta(days=day))  # type: ignore[attr-defined]
        fan_out(uow, "dunning")
        drain(uow, gateway)
    uow.clock.advance_to(NOW + timedelta(days=8))  # type: ignore[attr-defined]
    first = update_card_and_settle(uow, gateway, ACC, "tok_visa")
    assert first.settlement.unfinished == ["USD"] and first.settlement.charged["USD"] == Money.parse("30.00", "USD")
    account = uow.accounts.load(ACC).account
    assert account.outstanding["c1"].remaining == Money.parse("15.00", "USD")
    assert account.next_due_at == uow.clock.now()  # the next sweep has work for it
    uow.clock.advance_to(NOW + timedelta(days=8, hours=1))  # type: ignore[attr-defined]
    fan_out(uow, "dunning")
    assert drain(uow, gateway) == ["retried"]
    account = uow.accounts.load(ACC).account
    assert account.outstanding == {} and account.settle_again_at is None
    assert sum(c.amount.minor for c in gateway.charges_for(ACC)) == 4500
    uow.clock.advance_to(NOW + timedelta(days=9))  # type: ignore[attr-defined]
    fan_out(uow, "dunning")
    assert set(drain(uow, gateway)) <= {"stale", "stepped"} and len(gateway.charges_for(ACC)) == 45


def test_reconciliation_re_enables_a_disabled_subscription_owing_nothing_and_drops_stale_hints(
        uow: UnitOfWork) -> None:
    register(uow)
    uow.indexes.set_disabled(ACC, True)  # a hint with nothing disabled behind it
    fan_out(uow, "reconciliation")
    assert drain(uow) == ["stale"] and uow.indexes.disabled() == []


def test_a_failed_work_message_is_dead_lettered_and_quarantined(uow: UnitOfWork) -> None:
    register(uow)
    fail(uow)
    [entry] = uow.indexes.due(NOW + timedelta(days=30))
    work = SweepWork("dunning", entry)
    dead_letter_work(uow, work, work.to_message().encode(), "boom", "m-1")
    dead_letter_work(uow, work, work.to_message().encode(), "boom again", "m-1")
    [item] = uow.dead_letters.page(10, None).items
    assert item["source"] == "sweep-work" and item["reason"] == "boom again" and item["text"] == work.to_message()
    [claimed] = uow.indexes.due(NOW + timedelta(days=30))
    assert claimed.queued_until == NOW + timedelta(days=1)


def test_the_retention_sweep_erases_a_terminated_account_once_its_mail_is_out(uow: UnitOfWork,
                                                                            settings: Settings) -> None:
    register(uow)
    fail(uow)
    mailer = FakeMailer()
    for _ in range(40):  # walk the whole ladder: disable, cancel, deletion warnings, deletion
        nxt = [t for t in (uow.accounts.load(ACC).account.next_due_at, uow.accounts.load(ACC).account.next_retention_at)
               if t is not None]
        if not nxt:
            break
        uow.clock.advance_to(min(nxt))  # type: ignore[attr-defined]
        fan_out(uow, "dunning")
        fan_out(uow, "retention")
        drain(uow)
        for key in pending_emails(uow):
            send_email(uow, mailer, settings, ACC, key)
    account = uow.accounts.load(ACC).account
    assert account.profile is None  # erased
    assert not any(c in repr(uow.accounts.timeline(ACC)) for c in CONTACTS)
    assert [n.charge_id for n in uow.accounts.charge_notes(ACC)] == ["c1"]  # the financial record stays


# -- email sending -------------------------------------------------------------------------------


def test_an_email_is_sent_once_and_closed(uow: UnitOfWork, settings: Settings) -> None:
    register(uow)
    fail(uow)
    mailer = FakeMailer()
    keys = pending_emails(uow)
    assert [send_email(uow, mailer, settings, ACC, k) for k in keys] == ["sent", "sent"]
    assert sorted(e.recipient for e in mailer.sent.values()) == sorted(CONTACTS)
    assert [send_email(uow, mailer, settings, ACC, k) for k in keys] == ["gone", "gone"]
    assert [e["kind"] for e in uow.accounts.timeline(ACC)].count("email_sent") == 2
    assert uow.accounts.mail_record(ACC, keys[0])["outcome"] == "sent"  # type: ignore[index]


def test_a_passing_failure_puts_the_email_back_for_a_back_off(uow: UnitOfWork, settings: Settings) -> None:
    """A 5xx naming no wait fails no invocation (the host's dequeue count would give the email up
    after five quick tries): the email is handed off again, visible after its back-off."""
    register(uow)
    fail(uow)
    mailer = FakeMailer()
    mailer.fail_next = 1
    [first, _] = pending_emails(uow)
    queues = uow.queues
    assert isinstance(queues, InMemoryQueues)
    queues.take("email-outbox")  # the dispatcher's hand-offs
    assert send_email(uow, mailer, settings, ACC, first) == "retrying"
    assert queues.take("email-outbox") == []  # not visible at once ...
    [again] = [m for m in queues.sent if m.role == "email-outbox"]
    assert json.loads(again.text)["key"] == first and again.visible_at > uow.clock.now()
    assert send_email(uow, mailer, settings, ACC, first) == "sent"  # ... and sent when it shows
    assert len(mailer.sent) == 1


def test_a_notice_overtaken_by_the_payment_is_skipped(uow: UnitOfWork, settings: Settings) -> None:
    register(uow)
    fail(uow)
    keys = pending_emails(uow)
    apply_event(uow, ChargeSucceeded("evt-s", ACC, "s1", "c1", Money.parse("10.00", "USD")), "billing.charge.succeeded")
    mailer = FakeMailer()
    assert [send_email(uow, mailer, settings, ACC, k) for k in keys] == ["skipped", "skipped"]
    assert mailer.sent == {}


class Refusing(FakeMailer):
    def __init__(self, bad_address: bool) -> None:
        super().__init__()
        self.bad_address = bad_address

    def send(self, email: object, operation_id: str) -> str:
        raise MailRejected("refused", bad_address=self.bad_address)


def unreachable(uow: UnitOfWork) -> list[dict[str, str]]:
    view = account_view(uow.accounts.load(ACC).account, uow.policy)
    return [a for a in view["alerts"] if a["code"] == "contact_unreachable"]


def test_only_a_refusal_naming_the_address_shows_the_contact_unreachable(uow: UnitOfWork, settings: Settings) -> None:
    register(uow)
    fail(uow)
    [first, second] = pending_emails(uow)
    assert send_email(uow, Refusing(bad_address=False), settings, ACC, first) == "failed"
    assert unreachable(uow) == []
    assert send_email(uow, Refusing(bad_address=True), settings, ACC, second) == "failed"
    assert len(unreachable(uow)) == 1
    assert pending_emails(uow) == []


def test_giving_up_closes_an_email_once(uow: UnitOfWork) -> None:
    register(uow)
    fail(uow)
    [first, _] = pending_emails(uow)
    assert give_up_email(uow, ACC, first, "kept failing")
    assert not give_up_email(uow, ACC, first, "kept failing")
    assert uow.accounts.mail_record(ACC, first)["outcome"] == "failed"  # type: ignore[index]


# -- delivery reports ----------------------------------------------------------------------------


def test_a_bounce_marks_the_contact_unreachable_and_a_later_delivery_clears_it(uow: UnitOfWork) -> None:
    register(uow)
    bounced = NOW + timedelta(minutes=5)
    uow.clock.advance_to(bounced)  # type: ignore[attr-defined]
    assert apply_report(uow, DeliveryReport(CONTACTS[0], "Bounced", bounced, "m-1", "mailbox full")) == [ACC]
    assert len(unreachable(uow)) == 1 and CONTACTS[0] in unreachable(uow)[0]["message"]
    apply_report(uow, DeliveryReport(CONTACTS[0], "Delivered", NOW, "m-0", ""))  # older, arriving late
    assert len(unreachable(uow)) == 1
    later = NOW + timedelta(days=1)
    uow.clock.advance_to(later)  # type: ignore[attr-defined]
    apply_report(uow, DeliveryReport(CONTACTS[0], "Delivered", later, "m-2", ""))
    assert unreachable(uow) == []
    assert apply_report(uow, DeliveryReport("someone@elsewhere.example", "Bounced", later, "x", "")) == []


# -- erasure -------------------------------------------------------------------------------------


def test_erasure_waits_for_the_accounts_last_emails(uow: UnitOfWork, settings: Settings) -> None:
    register(uow)
    fail(uow)
    index = ForgottenOperations()
    assert not erase_when_mailed(uow, index, ACC)  # type: ignore[arg-type]
    assert [e.account_id for e in uow.indexes.due(NOW + timedelta(hours=1), "retention")] == [ACC]
    mailer = FakeMailer()
    for key in pending_emails(uow):
        send_email(uow, mailer, settings, ACC, key)
    assert erase_when_mailed(uow, index, ACC)  # type: ignore[arg-type]
    assert sorted(index.forgotten) == sorted(mailer.sent)
    assert uow.accounts.load(ACC).account.profile is None
    text = json.dumps([uow.accounts.timeline(ACC), [uow.accounts.mail_record(ACC, k) for k in mailer.sent]])
    assert not any(c in text for c in CONTACTS)
    erase_customer_data(uow, index, ACC)  # again: nothing left, nothing done  # type: ignore[arg-type]
