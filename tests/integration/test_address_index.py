"""Issue 13 point 4 on Azurite: the address index is kept by registration, contact changes and
erasure, its keys hold any address, and a report reaches every account that lists the address,
whatever message it names."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from shared.bootstrap import Services
from shared.domain.model import Profile
from shared.domain.payments import Registration
from shared.services.data_erasure import erase_customer_data
from shared.services.delivery_reports import DeliveryReport, apply_report
from shared.services.unit_of_work import register_account
from shared.services.views import account_view

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ODD = "o'brien/ops#1?x\\\"q\"\u00e9@Contoso.example"  # every character Table keys forbid, quotes, non-ASCII


def registered(svc: Services, account_id: str, *contacts: str) -> None:
    register_account(svc.uow, account_id, Registration(Profile("Contoso", "en", contacts), (("s1", "Web"),)))


def alerted(svc: Services, account_id: str) -> list[str]:
    view = account_view(svc.uow.accounts.load(account_id).account, svc.settings.policy)
    return [a["message"] for a in view["alerts"] if a["code"] == "contact_unreachable"]


def bounce(svc: Services, recipient: str, status: str, minutes: int, message_id: str = "never/recorded?#") -> list[str]:
    return apply_report(svc.uow,
                        DeliveryReport(recipient, status, NOW + timedelta(minutes=minutes), message_id, "550"))


def test_a_report_for_an_unrecorded_message_reaches_every_account_listing_the_address(
        make_services: Callable[..., Services]) -> None:
    svc = make_services()
    svc.test_clock.set(NOW)  # type: ignore[union-attr]
    registered(svc, "acc-a", ODD, "cfo@contoso.example")
    registered(svc, "acc-b", ODD.replace("Contoso.example", "CONTOSO.EXAMPLE"))
    registered(svc, "acc-c", "cfo@contoso.example")
    assert bounce(svc, ODD.split("@")[0] + "@contoso.example", "Bounced", 1) == ["acc-a", "acc-b"]
    assert len(alerted(svc, "acc-a")) == 1 and "o'brien/ops#1" in alerted(svc, "acc-a")[0]
    assert len(alerted(svc, "acc-b")) == 1 and alerted(svc, "acc-c") == []
    bounce(svc, ODD, "Delivered", 5)
    assert alerted(svc, "acc-a") == [] and alerted(svc, "acc-b") == []


def test_contact_changes_and_erasure_keep_the_index(make_services: Callable[..., Services]) -> None:
    svc = make_services()
    svc.test_clock.set(NOW)  # type: ignore[union-attr]
    registered(svc, "acc-a", "old@contoso.example")
    registered(svc, "acc-b", "old@contoso.example")
    assert svc.uow.contacts.accounts("old@contoso.example") == ["acc-a", "acc-b"]
    registered(svc, "acc-a", "new@contoso.example")
    assert svc.uow.contacts.accounts("old@contoso.example") == ["acc-b"]
    assert bounce(svc, "old@contoso.example", "Bounced", 1) == ["acc-b"]
    assert alerted(svc, "acc-a") == []
    erase_customer_data(svc.uow, svc.mail_index, "acc-b")
    assert svc.uow.contacts.accounts("old@contoso.example") == []
    assert svc.uow.contacts.accounts("new@contoso.example") == ["acc-a"]


def test_an_older_index_update_delivered_late_does_not_undo_a_newer_one(make_services: Callable[..., Services]) -> None:
    svc = make_services()
    svc.uow.contacts.update(ODD, "acc-a", True, revision=3)
    svc.uow.contacts.update(ODD, "acc-a", False, revision=2)  # an older outbox row, carried out late
    assert svc.uow.contacts.accounts(ODD) == ["acc-a"]
    svc.uow.contacts.update(ODD, "acc-a", False, revision=4)
    svc.uow.contacts.update(ODD, "acc-a", False, revision=4)  # redelivered: idempotent
    assert svc.uow.contacts.accounts(ODD) == []
