"""Accounts with extreme but valid content, written through the real store on Azurite and read
back unchanged: amounts from one minor unit to the largest in zero-, two- and three-decimal
currencies, 100 subscriptions, 5 contacts of 254 characters using every symbol an address may
hold, display names in CJK, right-to-left scripts and emoji, 2,000 outstanding charges."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters.store.account_store import Snapshot
from shared.bootstrap import Services
from shared.domain.decision import Decision
from shared.domain.effects import TimelineEntry
from shared.domain.model import (
    Account,
    Charge,
    ChargeNote,
    ChargeStatus,
    PaymentMethod,
    Profile,
    Subscription,
    SubscriptionState,
)
from shared.domain.money import MAX_MINOR, Money
from shared.inbound.account_body import AccountBody
from shared.services.views import account_view

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CURRENCIES = ["JPY", "VND", "USD", "EUR", "KWD", "BHD"]  # zero, two and three decimals
# Amounts where integer types and formats break: 2^31, 2^53, Decimal's 28 digits are all inside.
EDGES = [1, 9, 10, 99, 100, 2**31 - 1, 2**31, 2**32, 2**53 - 1, 2**53 + 1, 10**15 - 1, MAX_MINOR - 1, MAX_MINOR]
SYMBOLS = "!#$%&'*+-/=?^_`{|}~."  # every symbol an address's local part may hold in our pattern
SCRIPTS = st.sampled_from([
    "株式会社コントソ 北京分公司", "شركة كونتوسو المحدودة", "חברת קונטוסו בע״מ", "Contoso 🚀🧾💸 👩🏽‍💻",
    "Công ty Cổ phần", "Ｃｏｎｔｏｓｏ（全角）", "𠜎𠜱𠝹𠱓 (astral CJK)", "مرحبا mixed עברית 123",
])


def _address(local_seed: str, n: int) -> str:
    """A valid 254-character address (the most SMTP carries) whose local part holds every allowed symbol."""
    local = (f"{n}{SYMBOLS}{local_seed}" + "x" * 64)[:64]
    return f"{local}@{'d' * 63}.{'e' * 63}.{'f' * 57}.com"


@st.composite
def extreme_accounts(draw: st.DrawFn) -> tuple[Account, tuple[ChargeNote, ...]]:
    rng = random.Random(draw(st.integers(min_value=0, max_value=2**32)))
    picked = draw(st.lists(st.integers(min_value=1, max_value=MAX_MINOR), min_size=1, max_size=20))
    amounts = [*EDGES, *picked]
    name = draw(SCRIPTS) + draw(st.text(max_size=40).filter(str.isprintable))
    contacts = tuple(_address(draw(st.text(alphabet="abcXYZ019", max_size=10)), n) for n in range(5))
    states = [SubscriptionState.ACTIVE, SubscriptionState.PAST_DUE, SubscriptionState.DISABLED]
    subs = {f"sub-{i:03d}": Subscription(
        f"sub-{i:03d}", (draw(SCRIPTS) * 20)[:200], rng.choice(states),
        NOW - timedelta(days=rng.randint(0, 80), microseconds=rng.randint(0, 10**6)),
        steps_done=frozenset({"failure_email", "reminder:7"}), episode=rng.randint(0, 9)) for i in range(100)}
    charges = {}
    for i in range(2000):
        cid = f"ch-{i:04d}.{rng.choice('abcXYZ_-')}"
        minor = amounts[i % len(amounts)] if i < 2 * len(amounts) else rng.randint(1, MAX_MINOR)
        charges[cid] = Charge(cid, f"sub-{rng.randrange(100):03d}", Money(minor, rng.choice(CURRENCIES)),
                              ChargeStatus.OUTSTANDING, rng.choice(["card_declined", "insufficient_funds"]),
                              NOW - timedelta(seconds=rng.randint(0, 10**7)), applied=rng.randint(0, minor - 1))
    credit = {cur: draw(st.sampled_from([0, 1, MAX_MINOR, MAX_MINOR * 2000])) for cur in ("USD", "JPY", "KWD")}
    profile = Profile(name, draw(st.sampled_from(["en", "zh-CN"])), contacts,
                      PaymentMethod("card", "tok_visa", "visa", "4242", 12, 2030))
    notes = tuple(ChargeNote(f"paid-{n}", ChargeStatus.PAID, "sub-000", Money(m, rng.choice(CURRENCIES)),
                             NOW, f"payment pay-{n}", bool(n % 2)) for n, m in enumerate(EDGES[-6:] + picked[:3]))
    account = Account(f"acc-{uuid.uuid4().hex[:16]}", profile, subs, charges, credit, revision=7)
    return account, notes


@pytest.fixture
def svc(make_services: Callable[..., Services]) -> Services:
    return make_services()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow, HealthCheck.data_too_large])
@given(extreme_accounts())
def test_extreme_accounts_read_back_unchanged(svc: Services, drawn: tuple[Account, tuple[ChargeNote, ...]]) -> None:
    account, notes = drawn
    assert account.profile is not None and {len(c) for c in account.profile.billing_contacts} == {254}
    body = {"displayName": account.profile.display_name if account.profile else "",
            "billingContacts": list(account.profile.billing_contacts if account.profile else ())}
    AccountBody.model_validate(body)  # the content is what the API accepts, at its limits
    entry = TimelineEntry(NOW, "charge_failed", f"charge of {Money(MAX_MINOR, 'KWD')} failed: "
                          + (account.profile.display_name if account.profile else ""), "sub-000")
    svc.uow.accounts.commit(Snapshot(Account(account.account_id), None), Decision(account, notes, timeline=(entry,)),
                     now=NOW)
    loaded = svc.uow.accounts.load(account.account_id).account
    assert loaded == account
    assert account_view(loaded, svc.settings.policy) == account_view(account, svc.settings.policy)
    stored = {n.charge_id: n for n in svc.uow.accounts.charge_notes(account.account_id)}
    assert stored == {n.charge_id: n for n in notes}
    assert svc.uow.accounts.timeline(account.account_id)[0]["detail"] == entry.detail
