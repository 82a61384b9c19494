"""Issue 24 point 2 on Azurite: erasure leaves no address or card the account ever held in its
timeline or mail records, whatever the case they were written in, even when it crashed halfway."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from shared.bootstrap import Services
from shared.domain.facts import ChargeFailed
from shared.domain.model import PaymentMethod, Profile
from shared.domain.money import Money
from shared.domain.payments import Registration
from shared.faults import CrashInjected, Faults
from shared.services.data_erasure import erase_customer_data
from shared.services.delivery_reports import DeliveryReport, apply_report
from shared.services.email import give_up_email
from shared.services.settle_account import save_card
from shared.services.unit_of_work import apply_event, register_account
from tests.fakes.mailer import FakeMailer
from tests.integration.test_retention import send_pending_mail

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
OLD, NEW = "Old.Payer+ap@Contoso.example", "new-ap@contoso.example"
REPORTS = 120  # each its own timeline row: the redaction takes two transactions


class CrashAfterFirstBatch(Faults):
    """The process dies once, between the redaction's first and second transaction, when armed."""

    def __init__(self) -> None:
        self.armed = False

    def between_transactions(self) -> None:
        if self.armed:
            self.armed = False
            raise CrashInjected("between the redaction's transactions")


def with_a_past(s: Services, account_id: str) -> None:
    """Registered with OLD, a mastercard saved, a failed charge mailed to OLD, bounces quoting OLD
    in capitals, an email to OLD given up with OLD in its reason, then NEW and a visa."""
    s.test_clock.set(NOW)  # type: ignore[union-attr]
    register_account(s.uow, account_id, Registration(Profile("Contoso", "en", (OLD,)), (("s1", "Web shop"),)))
    save_card(s.uow, account_id, PaymentMethod("card", "tok_mastercard", "mastercard", "4444", 11, 2029))
    apply_event(s.uow, ChargeFailed("e1", account_id, "s1", "c1", Money.parse("10.00", "USD"), "card_expired"),
                "billing.charge.failed")
    send_pending_mail(s, account_id)
    for n in range(REPORTS):
        status, at = ("Bounced", "Delivered")[n % 2], NOW - timedelta(minutes=REPORTS - n)
        apply_report(s.uow, DeliveryReport(
            OLD.replace("Contoso", "CONTOSO"), status, at, "", f"550 5.1.1 <{OLD.upper()}>: mailbox unavailable"))
    register_account(s.uow, account_id, Registration(Profile("Contoso", "en", (NEW,)), (("s1", "Web shop"),)))
    rows = [r for r in s.uow.accounts.pending_outbox(account_id) if r.kind == "email"]
    give_up_email(s.uow, account_id, rows[0].key, f"550 mailbox {str(rows[0].payload['recipient']).upper()} "
                  "unknown", bad_address=True)
    send_pending_mail(s, account_id)
    save_card(s.uow, account_id, PaymentMethod("card", "tok_visa", "visa", "0069", 12, 2030))


def kept(s: Services, account_id: str) -> str:
    """The account's timeline and mail records as one text, lower-cased."""
    table = s.uow.accounts.table  # type: ignore[attr-defined]  # the Table Storage adapter's own client
    mail = [r for r in table.query_entities("PartitionKey eq @pk and RowKey ge 'mail|' and RowKey lt 'mail}'",
                                            parameters={"pk": account_id})]
    return json.dumps([s.uow.accounts.timeline(account_id), mail], ensure_ascii=False, default=str).lower()


PERSONAL = (OLD.lower(), NEW, "4444", "0069", "mastercard ending", "visa ending")


def test_erasure_resumed_after_a_crash_leaves_no_former_address_or_card(make_services: Callable[..., Services]) -> None:
    faults = CrashAfterFirstBatch()
    s = make_services(mailer=FakeMailer(), faults=faults)
    with_a_past(s, "acc-past")
    before = kept(s, "acc-past")
    assert all(p in before for p in PERSONAL) and before.count(OLD.lower()) > REPORTS
    entries = len(s.uow.accounts.timeline("acc-past"))

    faults.armed = True
    with pytest.raises(CrashInjected):
        erase_customer_data(s.uow, s.mail_index, "acc-past")
    assert OLD.lower() in kept(s, "acc-past"), "the crash left rows to rewrite"
    assert s.uow.accounts.load("acc-past").account.profile is not None

    erase_customer_data(s.uow, s.mail_index, "acc-past")
    after = kept(s, "acc-past")
    assert [p for p in PERSONAL if p in after] == []
    assert s.uow.accounts.load("acc-past").account.profile is None
    timeline = s.uow.accounts.timeline("acc-past")
    assert len(timeline) == entries + 1 and timeline[-1]["kind"] == "customer_data_deleted"
    assert [(n.charge_id, str(n.status)) for n in s.uow.accounts.charge_notes("acc-past")] == [("c1", "outstanding")]
    assert any("10.00 USD" in e["detail"] and "card_expired" in e["detail"] for e in timeline)
