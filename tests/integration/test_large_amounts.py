"""Amounts past 2^31 minor units, and every integer the product writes, on real Table Storage."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.data.tables import TableClient

from shared.bootstrap import Services
from shared.domain.facts import ChargeFailed, ChargeSucceeded, PaymentReceived
from shared.domain.mail import close_email
from shared.domain.model import ChargeStatus, Profile, SubscriptionState
from shared.domain.money import MAX_MINOR, Money
from shared.domain.payments import Registration
from shared.services.unit_of_work import apply_event, register_account
from shared.services.views import account_view

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
BILLION_DONG = Money.parse("2500000000", "VND")


@pytest.fixture
def svc(make_services: Callable[..., Services]) -> Services:
    s = make_services()
    assert s.test_clock is not None
    s.test_clock.set(NOW)
    register_account(s.uow, "acc-vn", Registration(Profile("Công ty", "en", ("ap@congty.example",)),
                                                         (("s1", "Web"), ("s2", "Db"))))
    return s


def _bare_ints(table: TableClient) -> list[tuple[str, str, str, Any]]:
    """Properties the SDK read back as a bare int: written as Edm.Int32, so one day too small."""
    return [(e["PartitionKey"], e["RowKey"], name, value) for e in table.list_entities()
            for name, value in e.items() if isinstance(value, int) and not isinstance(value, bool)]


def test_a_charge_of_two_and_a_half_billion_dong_is_booked_and_paid_exactly(svc: Services) -> None:
    apply_event(svc.uow, ChargeFailed("e1", "acc-vn", "s1", "c1", BILLION_DONG, "card_declined"),
                "billing.charge.failed")
    view = account_view(svc.uow.accounts.load("acc-vn").account, svc.settings.policy)
    assert view["balance"] == {"VND": "2500000000"}
    assert view["subscriptions"][0]["state"] == "past_due"

    apply_event(svc.uow, PaymentReceived("e2", "acc-vn", "wire-1", BILLION_DONG, "wire", ("c1",)),
                "billing.payment.received")
    account = svc.uow.accounts.load("acc-vn").account
    assert not account.outstanding and account.subscriptions["s1"].state is SubscriptionState.ACTIVE
    notes = {n.charge_id: n for n in svc.uow.accounts.charge_notes("acc-vn")}
    assert notes["c1"].status is ChargeStatus.PAID and notes["c1"].amount == BILLION_DONG


def test_the_largest_amount_and_sums_of_it_survive_storage(svc: Services) -> None:
    largest = Money(MAX_MINOR, "USD")
    for n in range(3):
        apply_event(svc.uow, ChargeFailed(f"f{n}", "acc-vn", "s2", f"c{n}", largest, "card_declined"),
                    "billing.charge.failed")
    apply_event(svc.uow, ChargeSucceeded("ok0", "acc-vn", "s2", "c0", largest), "billing.charge.succeeded")
    for n in range(3):  # three payments of the largest amount, one charge left to pay: the rest is credit
        apply_event(svc.uow, PaymentReceived(f"p{n}", "acc-vn", f"pay-{n}", largest, "wire"),
                    "billing.payment.received")
    account = svc.uow.accounts.load("acc-vn").account
    assert not account.outstanding
    assert account.credit == {"USD": MAX_MINOR}
    assert account_view(account, svc.settings.policy)["credit"] == {"USD": "9999999999999999.99"}
    notes = {n.charge_id: n.amount for n in svc.uow.accounts.charge_notes("acc-vn")}
    assert notes == {f"c{n}": largest for n in range(3)}


def test_no_integer_is_written_as_int32(svc: Services) -> None:
    """The whole kind: after a decision, charge records, the event marker, outbox rows, a closed
    email and a dead letter, every integer property in every table comes back as Edm.Int64."""
    apply_event(svc.uow, ChargeFailed("e1", "acc-vn", "s1", "c1", BILLION_DONG, "card_declined"),
                "billing.charge.failed")
    apply_event(svc.uow, ChargeSucceeded("e2", "acc-vn", "s1", "c1", BILLION_DONG), "billing.charge.succeeded")
    store = svc.uow.accounts
    email = next(r for r in store.pending_outbox("acc-vn") if r.kind == "email")
    opened = store.open_email("acc-vn", email.key)
    assert opened.email is not None
    closed = close_email(opened.account, opened.email, "sent", NOW, operation_id=email.key)
    assert store.close_email("acc-vn", closed.record, closed.entry, opened.account.revision, NOW)
    svc.uow.dead_letters.add(source="payment-events", reason="test", body="x" * 70_000, received_at=NOW,
                        message_id="m1")
    tables = [store.table, svc.uow.dead_letters.table, svc.uow.indexes.table]
    assert [bad for t in tables for bad in _bare_ints(t)] == []
