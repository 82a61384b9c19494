"""Settlement against real Table Storage and the sandbox gateway over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import requests

from devstack.sandbox_gateway import start_in_thread
from shared.adapters.gateway.http import HttpPaymentGateway
from shared.adapters.store.leases import AccountLeases, LeaseBusy
from shared.bootstrap import Services
from shared.domain.decision import Decision
from shared.domain.effects import TimelineEntry
from shared.domain.facts import ChargeFailed
from shared.domain.model import PaymentMethod, Profile, SubscriptionState
from shared.domain.money import Money
from shared.domain.payments import Registration
from shared.faults import CrashInjected, Faults
from shared.services.settle_account import save_card, settle_account
from shared.services.unit_of_work import apply_event, commit_decision, register_account

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sandbox(storage_connection_string: str) -> Iterator[str]:
    with start_in_thread(storage_connection_string) as sb:
        yield sb.url


def charges(sandbox: str, account_id: str) -> list[dict[str, object]]:
    return list(requests.get(f"{sandbox}/charges", params={"accountId": account_id}, timeout=10).json())


def prepared(make_services: Callable[..., Services], sandbox: str, account_id: str,
             faults: Faults | None = None) -> Services:
    """Three subscriptions: two past due (USD and JPY), one disabled (USD)."""
    svc = make_services(faults=faults, gateway=HttpPaymentGateway(sandbox, "sandbox-local-key"))
    svc.test_clock.set(NOW)  # type: ignore[union-attr]
    register_account(svc.uow, account_id, Registration(
        Profile("Contoso", "en", ("ap@contoso.example",)), (("s1", "Web"), ("s2", "DB"), ("s3", "Cache"))))
    for cid, sub, amount, cur in [("c1", "s1", "10.00", "USD"), ("c2", "s1", "2.50", "USD"),
                                  ("c3", "s2", "1200", "JPY"), ("c4", "s3", "7.25", "USD")]:
        apply_event(svc.uow, ChargeFailed(f"e-{cid}", account_id, sub, cid, Money.parse(amount, cur),
                                                "card_expired"), "billing.charge.failed")

    def disable_s3(snap_account: object) -> Decision:
        acc = svc.uow.accounts.load(account_id).account
        s3 = replace(acc.subscriptions["s3"], state=SubscriptionState.DISABLED, disabled_at=NOW)
        return Decision(replace(acc.with_subscription(s3), revision=acc.revision + 1),
                        timeline=(TimelineEntry(NOW, "operator_edit", "disabled for the test"),))

    commit_decision(svc.uow, account_id, disable_s3)
    return svc


def with_card(svc: Services, account_id: str, token: str = "tok_visa") -> None:
    card = svc.gateway.save_card(token)  # type: ignore[union-attr]
    save_card(svc.uow, account_id, PaymentMethod("card", token, card.brand, card.last4, card.exp_month,
                                                       card.exp_year))


def test_card_update_settles_everything_with_one_charge_per_currency(
        make_services: Callable[..., Services], sandbox: str) -> None:
    svc = prepared(make_services, sandbox, "acc-settle")
    with_card(svc, "acc-settle")
    result = settle_account(svc.uow, svc.gateway, "acc-settle")  # type: ignore[arg-type]
    assert sorted(p["chargeId"] for p in result.paid) == ["c1", "c2", "c3", "c4"]
    assert result.totals() == {"JPY": "1200", "USD": "19.75"}
    assert sorted(result.reactivated) == ["s1", "s2", "s3"]
    account = svc.uow.accounts.load("acc-settle").account
    assert {s.state for s in account.subscriptions.values()} == {SubscriptionState.ACTIVE}
    assert account.balance() == {} and account.settling == {}
    made = charges(sandbox, "acc-settle")
    assert sorted((c["currency"], c["amount"], c["status"]) for c in made) == [
        ("JPY", "1200", "succeeded"), ("USD", "19.75", "succeeded")]
    again = settle_account(svc.uow, svc.gateway, "acc-settle")  # type: ignore[arg-type]
    assert again.paid == [] and len(charges(sandbox, "acc-settle")) == 2


def test_a_decline_changes_nothing_but_the_saved_card(make_services: Callable[..., Services], sandbox: str) -> None:
    svc = prepared(make_services, sandbox, "acc-decline")
    with_card(svc, "acc-decline", "tok_chargeDeclinedInsufficientFunds")
    before = svc.uow.accounts.load("acc-decline").account
    result = settle_account(svc.uow, svc.gateway, "acc-decline")  # type: ignore[arg-type]
    assert result.paid == [] and {code for _, code in result.declines} == {"insufficient_funds"}
    after = svc.uow.accounts.load("acc-decline").account
    assert after.balance() == before.balance() and after.settling == {}
    assert {k: s.state for k, s in after.subscriptions.items()} == {k: s.state for k, s in before.subscriptions.items()}
    assert after.profile.payment_method.last4 == "9995"  # type: ignore[union-attr]


class CrashAfterCharge(Faults):
    def __init__(self) -> None:
        self.armed = True

    def after_gateway_charge(self) -> None:
        if self.armed:
            self.armed = False
            raise CrashInjected("after the gateway charged, before our commit")


def test_a_crash_after_the_gateway_charged_is_recovered_without_a_second_charge(
        make_services: Callable[..., Services], sandbox: str) -> None:
    svc = prepared(make_services, sandbox, "acc-crash", faults=CrashAfterCharge())
    with_card(svc, "acc-crash")
    with pytest.raises(CrashInjected):
        settle_account(svc.uow, svc.gateway, "acc-crash")  # type: ignore[arg-type]
    assert len(charges(sandbox, "acc-crash")) == 1  # money moved, our record is still pending
    assert svc.uow.accounts.load("acc-crash").account.settling
    result = settle_account(svc.uow, svc.gateway, "acc-crash")  # type: ignore[arg-type]
    assert sorted(p["chargeId"] for p in result.paid) == ["c1", "c2", "c3", "c4"]
    made = charges(sandbox, "acc-crash")
    assert sorted(c["currency"] for c in made) == ["JPY", "USD"]  # one each: the first was recovered, not repeated
    assert svc.uow.accounts.load("acc-crash").account.balance() == {}


def test_twenty_concurrent_settlements_charge_once_per_currency(
        make_services: Callable[..., Services], sandbox: str) -> None:
    svc = prepared(make_services, sandbox, "acc-race")
    with_card(svc, "acc-race")
    results: list[object] = []

    def settle() -> None:
        own = make_services(gateway=HttpPaymentGateway(sandbox, "sandbox-local-key"))
        try:
            results.append(settle_account(own.uow, own.gateway, "acc-race"))  # type: ignore[arg-type]
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=settle) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not [r for r in results if isinstance(r, BaseException)]
    assert sorted(c["currency"] for c in charges(sandbox, "acc-race")) == ["JPY", "USD"]
    paid = sorted(p["chargeId"] for r in results for p in r.paid)  # type: ignore[attr-defined]
    assert paid == ["c1", "c2", "c3", "c4"]  # each charge paid by exactly one of the twenty
    assert svc.uow.accounts.load("acc-race").account.balance() == {}


def test_a_renewed_lease_outlives_its_first_term_and_one_taken_over_cannot_be_renewed(
        make_services: Callable[..., Services]) -> None:
    """Settlement renews its lease before each gateway call: a slow gateway never lets a twin in."""
    table = make_services().uow.accounts.table  # type: ignore[attr-defined]
    mine, twin = AccountLeases(table, ttl=timedelta(seconds=1)), AccountLeases(table, ttl=timedelta(seconds=1))
    with mine.hold("acc-lease") as holder:
        time.sleep(0.7)
        assert mine.renew("acc-lease", holder)
        time.sleep(0.7)  # past the first term, within the renewed one
        with pytest.raises(LeaseBusy), twin.hold("acc-lease", wait=0.1):
            pass
        time.sleep(1.2)  # not renewed: it expires, and the twin takes it over
        with twin.hold("acc-lease", wait=1.0):
            assert not mine.renew("acc-lease", holder)
    with twin.hold("acc-lease", wait=0.5):  # both released
        pass
