"""The Stripe adapter (shared/adapters/gateway/stripe.py) against the Stripe-compatible sandbox,
through the official SDK: every answer as one of the four outcomes, reading a charge back after a
lost answer inside and after Stripe's 24-hour key window, the currency rules and the per-charge
maximum the settlement splits under."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.stripe_sandbox import RunningStripeSandbox, start_in_thread
from shared.adapters.gateway.protocol import CardDeclined, CardRejected, CustomerGateway
from shared.adapters.gateway.stripe import StripeCard, StripeGateway
from shared.adapters.gateway.stripe_amounts import from_stripe, max_charge, to_stripe
from shared.domain.charge_answers import Charged, Declined, Refused, Unanswered
from shared.domain.declines import decline_kind
from shared.domain.money import Money

LAG = 0.3


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningStripeSandbox]:
    with start_in_thread(search_lag=LAG) as running:
        yield running


@pytest.fixture(autouse=True)
def _clean(sandbox: RunningStripeSandbox) -> Iterator[None]:
    requests.delete(sandbox.url + "/faults", timeout=5).raise_for_status()
    requests.put(sandbox.url + "/settings", json={"searchLagSeconds": LAG, "rateLimitPerSecond": None},
                 timeout=5).raise_for_status()
    yield
    requests.delete(sandbox.url + "/faults", timeout=5).raise_for_status()


def gateway(sandbox: RunningStripeSandbox, **kw: Any) -> StripeGateway:
    return StripeGateway(sandbox.api_key, api_base=sandbox.url, **{"max_network_retries": 0, **kw})


def fault(sandbox: RunningStripeSandbox, **body: Any) -> None:
    requests.post(sandbox.url + "/faults", json=body, timeout=5).raise_for_status()


def intents(sandbox: RunningStripeSandbox, account: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = requests.get(sandbox.url + "/payment_intents", params={"accountId": account},
                                              timeout=5).json()
    return rows


def saved(gw: StripeGateway, pm: str = "pm_card_visa") -> tuple[str, str]:
    account = f"acc-{uuid.uuid4().hex[:10]}"
    card = gw.save_customer_card(pm, account)
    assert card.token is not None
    return account, card.token


def charge(gw: StripeGateway, account: str, token: str, amount: str = "12.34", currency: str = "USD",
           key: str | None = None) -> Any:
    return gw.charge(idempotency_key=key or f"stl-{uuid.uuid4().hex}", amount=Money.parse(amount, currency),
                     token=token, account_id=account, description=f"past-due balance of {account}")


# -- cards --------------------------------------------------------------------------------------


def test_saving_a_card_attaches_it_to_the_accounts_one_customer_as_its_default(
        sandbox: RunningStripeSandbox) -> None:
    gw = gateway(sandbox)
    assert isinstance(gw, CustomerGateway)
    account, token = saved(gw)
    card = StripeCard.parse(token)
    assert card.customer and card.customer.startswith("cus_") and card.payment_method.startswith("pm_")
    again = StripeCard.parse(gw.save_customer_card("tok_mastercard", account).token or "")
    fresh = StripeCard.parse(gateway(sandbox).save_customer_card("pm_card_amex", account).token or "")
    assert again.customer == fresh.customer == card.customer  # one Customer, even before Search sees it
    customers = [c for c in requests.get(sandbox.url + "/customers", timeout=5).json()
                 if c["metadata"].get("accountId") == account]
    assert len(customers) == 1
    assert customers[0]["invoice_settings"]["default_payment_method"] == fresh.payment_method
    details = gw.save_customer_card("tok_visa", account)
    assert (details.brand, details.last4) == ("visa", "4242") and 1 <= details.exp_month <= 12


def test_a_card_the_bank_declines_when_attached_is_not_saved(sandbox: RunningStripeSandbox) -> None:
    gw = gateway(sandbox)
    with pytest.raises(CardDeclined) as declined:
        gw.save_customer_card("pm_card_chargeDeclinedInsufficientFunds", f"acc-{uuid.uuid4().hex[:8]}")
    assert declined.value.code == "insufficient_funds"
    with pytest.raises(CardRejected):
        gw.save_customer_card("tok_doesNotExist", "acc-x")
    with pytest.raises(CardRejected):
        gw.save_card("card_123")


# -- the four outcomes --------------------------------------------------------------------------


def test_a_charge_is_an_off_session_payment_intent_with_the_key_in_its_metadata(
        sandbox: RunningStripeSandbox) -> None:
    gw = gateway(sandbox)
    account, token = saved(gw)
    key = f"stl-{uuid.uuid4().hex}"
    answer = charge(gw, account, token, key=key)
    assert isinstance(answer, Charged) and answer.amount == Money.parse("12.34", "USD")
    [pi] = intents(sandbox, account)
    assert pi["id"] == answer.gateway_charge_id and pi["status"] == "succeeded" and pi["amount"] == 1234
    assert pi["metadata"] == {"accountId": account, "idempotencyKey": key}
    assert pi["customer"] == StripeCard.parse(token).customer
    charges = requests.get(sandbox.url + "/charges", params={"accountId": account}, timeout=5).json()
    assert [c["idempotencyKey"] for c in charges] == [key]


@pytest.mark.parametrize(("how", "code", "kind"), [
    ("pm_card_chargeCustomerFail", "generic_decline", "soft"),
    ("insufficient_funds", "insufficient_funds", "soft"),
    ("do_not_honor", "do_not_honor", "soft"),
    ("expired_card", "expired_card", "hard"),
    ("lost_card", "lost_card", "hard"),
    ("stolen_card", "stolen_card", "hard"),
    ("pickup_card", "pickup_card", "hard"),
])
def test_declines_carry_stripes_decline_code_soft_or_hard(sandbox: RunningStripeSandbox, how: str, code: str,
                                                          kind: str) -> None:
    gw = gateway(sandbox)
    if how.startswith("pm_"):
        account, token = saved(gw, how)
    else:
        account, token = saved(gw)
        fault(sandbox, mode="decline_next", declineCode=how)
    answer = charge(gw, account, token)
    assert isinstance(answer, Declined) and answer.decline_code == code and answer.kind == kind
    assert answer.gateway_charge_id and answer.gateway_charge_id.startswith("pi_")


def test_a_card_that_needs_authentication_is_declined_off_session(sandbox: RunningStripeSandbox) -> None:
    gw = gateway(sandbox)
    account, token = saved(gw, "pm_card_authenticationRequired")
    answer = charge(gw, account, token)
    assert isinstance(answer, Declined) and answer.decline_code == "authentication_required"
    found = gw.authenticated_charge(answer.gateway_charge_id or "", account)
    assert found is not None and found.status == "declined"
    assert gw.authenticated_charge(answer.gateway_charge_id or "", "acc-someone-else") is None
    started = gw.begin_authentication(answer.gateway_charge_id or "", account, "http://127.0.0.1:1/back")
    assert started.redirect_url and "/3ds/" in started.redirect_url
    done = requests.post(f"{sandbox.url}/3ds/{answer.gateway_charge_id}/complete", allow_redirects=False, timeout=5)
    assert done.status_code == 303 and done.headers["Location"].startswith("http://127.0.0.1:1/back?")
    found = gw.authenticated_charge(answer.gateway_charge_id or "", account)
    assert found is not None and found.succeeded and found.amount == Money.parse("12.34", "USD")


@pytest.mark.parametrize(("status", "code"), [(400, "parameter_invalid_integer"), (404, "resource_missing")])
def test_invalid_requests_are_refused(sandbox: RunningStripeSandbox, status: int, code: str) -> None:
    gw = gateway(sandbox)
    account, token = saved(gw)
    fault(sandbox, mode="fail_next", status=status, code=code, route="POST /v1/payment_intents")
    answer = charge(gw, account, token)
    assert isinstance(answer, Refused) and answer.code == code and answer.status == status


def test_a_bad_key_is_refused_and_amounts_outside_stripes_rules_never_leave(sandbox: RunningStripeSandbox) -> None:
    gw = gateway(sandbox)
    account, token = saved(gw)
    bad = StripeGateway("sk_live_not_for_the_sandbox", api_base=sandbox.url, max_network_retries=0)
    answer = charge(bad, account, token)
    assert isinstance(answer, Refused) and answer.status == 401
    small = charge(gw, account, token, amount="0.49")
    assert isinstance(small, Refused) and small.code == "amount_too_small"
    assert charge(gw, account, token, amount="0.50").__class__ is Charged


@pytest.mark.parametrize(("status", "code"), [(429, "rate_limit"), (500, "api_error"), (503, "http_503")])
def test_rate_limits_and_api_errors_are_unanswered_after_the_sdks_retries(
        sandbox: RunningStripeSandbox, status: int, code: str) -> None:
    account, token = saved(gateway(sandbox))
    fault(sandbox, mode="fail_next", status=status, count=3, route="POST /v1/payment_intents",
          **({"code": code} if status != 503 else {}))
    answer = charge(gateway(sandbox, max_network_retries=2), account, token)
    assert isinstance(answer, Unanswered)
    assert intents(sandbox, account) == []
    fault(sandbox, mode="fail_next", status=status, count=2, route="POST /v1/payment_intents")
    retried = charge(gateway(sandbox, max_network_retries=2), account, token)  # the SDK retries, same key
    assert isinstance(retried, Charged) and len(intents(sandbox, account)) == 1


def test_no_connection_is_unanswered() -> None:
    gw = StripeGateway("sk_test_x", api_base="http://127.0.0.1:9", max_network_retries=0)
    answer = gw.charge(idempotency_key="k", amount=Money.parse("1.00", "USD"), token="cus_x/pm_y",
                       account_id="acc", description="d")
    assert isinstance(answer, Unanswered) and answer.code == "network_error"


# -- reading back ----------------------------------------------------------------------------------


def test_a_lost_answer_is_read_back_inside_and_after_the_24_hour_key_window(sandbox: RunningStripeSandbox) -> None:
    requests.put(sandbox.url + "/settings", json={"searchLagSeconds": 60}, timeout=5).raise_for_status()
    gw = gateway(sandbox, timeout=0.5)
    account, token = saved(gw)
    key = f"stl-{uuid.uuid4().hex}"
    fault(sandbox, mode="timeout_after_charge", seconds=2)
    lost = charge(gw, account, token, key=key)
    assert isinstance(lost, Unanswered)
    found = gw.find_customer_charge(key, account, token)  # at once: Search would not see it for a minute
    assert found is not None and found.succeeded and found.idempotency_key == key
    assert gw.find_charge(key) is None  # Search alone lags: why the settlement lists the customer's intents
    assert gw.find_customer_charge(f"stl-{uuid.uuid4().hex}", account, token) is None
    replay = charge(gateway(sandbox), account, token, key=key)  # the same request inside the window: replayed
    assert isinstance(replay, Charged) and replay.gateway_charge_id == found.gateway_charge_id
    requests.post(sandbox.url + "/clock", json={"advanceSeconds": 25 * 3600}, timeout=5).raise_for_status()
    try:
        later = gateway(sandbox).find_customer_charge(key, account, token)  # a fresh process, after the window
        assert later is not None and later.gateway_charge_id == found.gateway_charge_id and later.succeeded
        assert len(intents(sandbox, account)) == 1
        legacy = gateway(sandbox).find_customer_charge(key, account, None)  # the customer found by Search
        assert legacy is not None and legacy.gateway_charge_id == found.gateway_charge_id
    finally:
        requests.delete(sandbox.url + "/clock", timeout=5).raise_for_status()


def test_a_declined_charge_reads_back_as_declined(sandbox: RunningStripeSandbox) -> None:
    gw = gateway(sandbox)
    account, token = saved(gw, "pm_card_chargeCustomerFail")
    key = f"stl-{uuid.uuid4().hex}"
    charge(gw, account, token, key=key)
    found = gw.find_customer_charge(key, account, token)
    assert found is not None and found.status == "declined" and found.decline_code == "generic_decline"


# -- amounts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "currency", "units"), [
    ("12.34", "USD", 1234), ("1000", "JPY", 1000), ("5.120", "KWD", 5120), ("5.124", "KWD", 5130),
    ("500", "ISK", 50000), ("1000", "KRW", 1000), ("0.50", "EUR", 50),
])
def test_stripes_currency_rules(sandbox: RunningStripeSandbox, amount: str, currency: str, units: int) -> None:
    money = Money.parse(amount, currency)
    assert to_stripe(money) == units
    gw = gateway(sandbox)
    account, token = saved(gw)
    answer = charge(gw, account, token, amount=amount, currency=currency)
    assert isinstance(answer, Charged), answer
    assert answer.amount == from_stripe(units, currency)  # what Stripe took, rounded up where it must be
    [pi] = intents(sandbox, account)
    assert pi["amount"] == units and pi["currency"] == currency.lower()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(currency=st.sampled_from(["USD", "JPY", "KWD", "BHD", "ISK", "EUR", "INR", "IDR", "VND", "CLP", "GBP"]),
       minor=st.integers(min_value=1, max_value=10**14))
def test_what_is_sent_is_never_less_than_owed_and_the_maximum_always_fits(currency: str, minor: int) -> None:
    money = Money(minor, currency)
    try:
        units = to_stripe(money)
    except ValueError:
        assert minor > max_charge(currency) or minor < 10**6  # too small or too large, never in between
        return
    back = from_stripe(units, currency)
    assert back.minor >= minor and minor <= max_charge(currency)
    assert to_stripe(Money(max_charge(currency), currency)) <= (99_999_999 if currency not in ("INR", "IDR")
                                                               else 999_999_999_999)


def test_the_maximum_feeds_the_split_and_one_unit_more_is_refused(sandbox: RunningStripeSandbox) -> None:
    gw = gateway(sandbox)
    assert gw.max_charge("USD") == 99_999_999 and gw.max_charge("JPY") == 99_999_999
    assert gw.max_charge("KWD") == 99_999_990 and gw.max_charge("ISK") == 999_999
    account, token = saved(gw)
    for currency in ("USD", "KWD", "ISK"):
        top = Money(gw.max_charge(currency), currency)
        assert isinstance(gw.charge(idempotency_key=f"stl-{uuid.uuid4().hex}", amount=top, token=token,
                                    account_id=account, description="d"), Charged)
        over = gw.charge(idempotency_key=f"stl-{uuid.uuid4().hex}", amount=Money(top.minor + 1, currency),
                         token=token, account_id=account, description="d")
        assert isinstance(over, Refused) and over.code == "amount_too_large"
    assert decline_kind("authentication_required") == "soft"
