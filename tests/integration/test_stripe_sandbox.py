"""The Stripe-compatible sandbox (devstack/stripe_sandbox) read through the official `stripe` SDK.

The SDK reading every answer is the standing check that the sandbox speaks Stripe's API: objects,
errors (CardError with decline codes, IdempotencyError, RateLimitError, AuthenticationError),
pagination, search, and webhook signatures verified by `stripe.Webhook.construct_event`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack import azurite
from devstack.stripe_sandbox import RunningStripeSandbox, start_in_thread

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_test_sandbox_secret"
LAG = 0.4  # the search lag the tests run with


class Receiver:
    """A webhook endpoint that keeps what it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.status = 200
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.received.append((body, dict(self.headers.items())))
                    status = receiver.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/webhooks/stripe"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, intent: str | None = None) -> list[tuple[bytes, dict[str, str]]]:
        with self.lock:
            return [(b, h) for b, h in self.received
                    if intent is None or json.loads(b)["data"]["object"]["id"] == intent]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def sandbox(receiver: Receiver) -> Iterator[RunningStripeSandbox]:
    with start_in_thread(webhook_url=receiver.url, webhook_secret=SECRET, search_lag=LAG) as running:
        yield running


@pytest.fixture(autouse=True)
def _clean(sandbox: RunningStripeSandbox, receiver: Receiver) -> Iterator[None]:
    defaults = {"searchLagSeconds": LAG, "rateLimitPerSecond": None, "validateOnAttach": True,
                "chargeLatencySeconds": 0,
                "webhook": {"url": receiver.url, "delaySeconds": 0, "repeat": 0, "retries": 3,
                            "retryBackoffSeconds": 0.2}}
    requests.delete(sandbox.url + "/faults", timeout=5).raise_for_status()
    requests.put(sandbox.url + "/settings", json=defaults, timeout=5).raise_for_status()
    receiver.status = 200
    yield
    requests.delete(sandbox.url + "/faults", timeout=5).raise_for_status()


@pytest.fixture
def client(sandbox: RunningStripeSandbox) -> stripe.StripeClient:
    return stripe.StripeClient(sandbox.api_key, base_addresses={"api": sandbox.url}, max_network_retries=0)


def new_customer(client: stripe.StripeClient, account: str | None = None) -> stripe.Customer:
    return client.v1.customers.create(params={"metadata": {"accountId": account or f"acc-{uuid.uuid4().hex[:10]}"}})


def charge(client: stripe.StripeClient, pm: str, *, amount: int = 1234, cur: str = "usd", customer: str | None = None,
           key: str | None = None, **extra: Any) -> stripe.PaymentIntent:
    params: dict[str, Any] = {"amount": amount, "currency": cur, "payment_method": pm, "confirm": True,
                              "off_session": True, "metadata": {"accountId": "acc-x", **extra.pop("metadata", {})},
                              **extra}
    if customer:
        params["customer"] = customer
    options: dict[str, Any] = {"idempotency_key": key} if key else {}
    return client.v1.payment_intents.create(params=params, options=options)  # type: ignore[arg-type]


def wait_for(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


# -- customers and payment methods ----------------------------------------------------------------


def test_customers_create_retrieve_update_and_search_after_the_lag(client: stripe.StripeClient) -> None:
    account = f"acc-{uuid.uuid4().hex[:10]}"
    cus = new_customer(client, account)
    assert cus.id.startswith("cus_") and cus.metadata["accountId"] == account and cus.object == "customer"
    assert client.v1.customers.retrieve(cus.id).to_dict()["metadata"] == {"accountId": account}
    query = f"metadata['accountId']:'{account}'"
    assert client.v1.customers.search(params={"query": query}).data == []  # not indexed yet
    time.sleep(LAG + 0.1)
    found = client.v1.customers.search(params={"query": query})
    assert [c.id for c in found.data] == [cus.id] and found.has_more is False
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.customers.retrieve("cus_missing")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"


def test_a_magic_payment_method_attaches_as_a_new_one_and_becomes_the_default(client: stripe.StripeClient) -> None:
    cus = new_customer(client)
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": cus.id})
    assert pm.id.startswith("pm_") and pm.id != "pm_card_visa" and pm.customer == cus.id
    assert (pm.card.brand, pm.card.last4) == ("visa", "4242")
    assert 1 <= pm.card.exp_month <= 12 and pm.card.exp_year >= 2026
    updated = client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm.id},
                                                         "expand": ["invoice_settings.default_payment_method"]})
    default = updated.invoice_settings.default_payment_method
    assert isinstance(default, stripe.PaymentMethod) and default.id == pm.id
    assert client.v1.payment_methods.retrieve(pm.id).customer == cus.id
    other = client.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_visa"}})
    with pytest.raises(stripe.InvalidRequestError) as not_attached:
        client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": other.id}})
    assert not_attached.value.param == "invoice_settings[default_payment_method]"


@pytest.mark.parametrize(("token", "brand", "last4"), [("tok_visa", "visa", "4242"),
                                                       ("tok_mastercard", "mastercard", "4444"),
                                                       ("tok_chargeDeclined", "visa", "0002")])
def test_a_token_becomes_a_payment_method(client: stripe.StripeClient, token: str, brand: str, last4: str) -> None:
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {"token": token}})
    assert (pm.type, pm.card.brand, pm.card.last4, pm.customer) == ("card", brand, last4, None)
    assert client.v1.payment_methods.retrieve(pm.id).card.last4 == last4


def test_unknown_tokens_and_payment_methods_and_raw_numbers_are_refused(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as token:
        client.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_nonsense"}})
    assert token.value.code == "resource_missing" and token.value.param == "card[token]"
    with pytest.raises(stripe.InvalidRequestError) as pm:
        client.v1.payment_methods.retrieve("pm_nonsense")
    assert pm.value.http_status == 404
    with pytest.raises(stripe.InvalidRequestError) as raw:
        client.v1.payment_methods.create(params={"type": "card", "card": {"number": "4242424242424242"}})  # type: ignore[typeddict-item]
    assert "unsafe" in str(raw.value)
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.customers.create(params={"metadata": {"a": "b"}, "colour": "red"})  # type: ignore[typeddict-unknown-key]
    assert unknown.value.code == "parameter_unknown" and unknown.value.param == "colour"


def test_attaching_a_declining_card_declines_as_stripe_checks_it(sandbox: RunningStripeSandbox,
                                                                  client: stripe.StripeClient) -> None:
    cus = new_customer(client)
    with pytest.raises(stripe.CardError) as declined:
        client.v1.payment_methods.attach("pm_card_chargeDeclinedExpiredCard", params={"customer": cus.id})
    assert declined.value.code == "expired_card"
    # 4000000000000341: attaching succeeds, charging fails
    pm = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": cus.id})
    with pytest.raises(stripe.CardError):
        charge(client, pm.id, customer=cus.id)
    requests.put(sandbox.url + "/settings", json={"validateOnAttach": False}, timeout=5).raise_for_status()
    assert client.v1.payment_methods.attach("pm_card_chargeDeclined", params={"customer": cus.id}).customer == cus.id


# -- charges ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("pm", "brand"), [("pm_card_visa", "visa"), ("pm_card_mastercard", "mastercard")])
def test_an_off_session_charge_succeeds(client: stripe.StripeClient, pm: str, brand: str) -> None:
    cus = new_customer(client)
    attached = client.v1.payment_methods.attach(pm, params={"customer": cus.id})
    pi = charge(client, attached.id, customer=cus.id, metadata={"idempotencyKey": "k"})
    assert (pi.status, pi.amount, pi.amount_received, pi.currency) == ("succeeded", 1234, 1234, "usd")
    assert pi.customer == cus.id and pi.payment_method == attached.id and pi.metadata["idempotencyKey"] == "k"
    assert pi.latest_charge and pi.last_payment_error is None
    got = client.v1.payment_intents.retrieve(pi.id, params={"expand": ["payment_method"]})
    assert isinstance(got.payment_method, stripe.PaymentMethod) and got.payment_method.card.brand == brand


@pytest.mark.parametrize(("pm", "code", "decline_code"), [
    ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
    ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
    ("tok_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
    ("pm_card_chargeDeclinedLostCard", "card_declined", "lost_card"),
])
def test_a_decline_is_a_402_card_error_with_the_intent_embedded(client: stripe.StripeClient, pm: str, code: str,
                                                               decline_code: str) -> None:
    if pm.startswith("tok_"):
        pm = client.v1.payment_methods.create(params={"type": "card", "card": {"token": pm}}).id
    with pytest.raises(stripe.CardError) as declined:
        charge(client, pm)
    err = declined.value
    assert err.http_status == 402 and err.code == code
    assert err.error is not None and err.error.type == "card_error" and err.error.decline_code == decline_code
    intent = err.error.payment_intent
    assert intent is not None and intent.status == "requires_payment_method"
    assert intent.last_payment_error is not None and intent.last_payment_error.decline_code == decline_code
    assert client.v1.payment_intents.retrieve(intent.id).status == "requires_payment_method"


def test_authentication_off_session_fails_then_the_customer_completes_3ds(client: stripe.StripeClient,
                                                                           sandbox: RunningStripeSandbox) -> None:
    with pytest.raises(stripe.CardError) as needs_auth:
        charge(client, "pm_card_authenticationRequired")
    err = needs_auth.value
    assert err.code == "authentication_required" and err.error is not None
    assert err.error.decline_code == "authentication_required"
    intent = err.error.payment_intent
    assert intent is not None and intent.status == "requires_payment_method"
    confirmed = client.v1.payment_intents.confirm(intent.id, params={
        "payment_method": "pm_card_authenticationRequired", "return_url": "http://billing.test/confirm?x=1"})
    assert confirmed.status == "requires_action" and confirmed.next_action is not None
    assert confirmed.next_action.type == "redirect_to_url"
    url = confirmed.next_action.redirect_to_url.url
    assert url is not None and url.startswith(sandbox.url)
    page = requests.get(url, timeout=5)
    assert page.status_code == 200 and ">Complete<" in page.text and ">Fail<" in page.text
    done = requests.post(f"{sandbox.url}/3ds/{intent.id}/complete", allow_redirects=False, timeout=5)
    assert done.status_code == 303
    back = urlsplit(done.headers["Location"])
    assert back.netloc == "billing.test" and parse_qs(back.query) == {
        "x": ["1"], "payment_intent": [intent.id], "redirect_status": ["succeeded"],
        "payment_intent_client_secret": [confirmed.client_secret]}
    assert client.v1.payment_intents.retrieve(intent.id).status == "succeeded"


def test_failing_3ds_redirects_failed_and_leaves_the_intent_for_another_card(client: stripe.StripeClient,
                                                                            sandbox: RunningStripeSandbox) -> None:
    pi = client.v1.payment_intents.create(params={
        "amount": 5000, "currency": "eur", "payment_method": "pm_card_authenticationRequired", "confirm": True,
        "return_url": "http://billing.test/back"})
    assert pi.status == "requires_action"
    failed = requests.post(f"{sandbox.url}/3ds/{pi.id}/fail", allow_redirects=False, timeout=5)
    assert parse_qs(urlsplit(failed.headers["Location"]).query)["redirect_status"] == ["failed"]
    after = client.v1.payment_intents.retrieve(pi.id)
    assert after.status == "requires_payment_method" and after.last_payment_error is not None
    assert after.last_payment_error.code == "payment_intent_authentication_failure"
    assert client.v1.payment_intents.confirm(pi.id, params={"payment_method": "pm_card_visa"}).status == "succeeded"


# -- idempotency ------------------------------------------------------------------------------------


def test_the_same_key_replays_the_first_answer_and_other_parameters_conflict(
        client: stripe.StripeClient, sandbox: RunningStripeSandbox) -> None:
    key = f"settle/{uuid.uuid4()}"
    first = charge(client, "pm_card_visa", key=key)
    again = charge(client, "pm_card_visa", key=key)
    assert again.id == first.id
    raw = requests.post(sandbox.url + "/v1/payment_intents", timeout=5,
                        headers={"Authorization": "Bearer sk_test_other", "Idempotency-Key": key},
                        data={"amount": "1234", "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true",
                              "off_session": "true", "metadata[accountId]": "acc-x"})
    assert raw.status_code == 200 and raw.headers["Idempotent-Replayed"] == "true" and raw.json()["id"] == first.id
    with pytest.raises(stripe.IdempotencyError):
        charge(client, "pm_card_visa", key=key, amount=999)
    declined_key = f"settle/{uuid.uuid4()}"
    with pytest.raises(stripe.CardError) as once:
        charge(client, "pm_card_chargeDeclined", key=declined_key)
    with pytest.raises(stripe.CardError) as twice:
        charge(client, "pm_card_chargeDeclined", key=declined_key)
    assert once.value.error is not None and twice.value.error is not None
    assert once.value.error.payment_intent.id == twice.value.error.payment_intent.id  # type: ignore[union-attr]
    assert twice.value.headers is not None and twice.value.headers.get("Idempotent-Replayed") == "true"


def test_keys_are_kept_24_hours_of_the_sandbox_clock(client: stripe.StripeClient,
                                                     sandbox: RunningStripeSandbox) -> None:
    key = f"settle/{uuid.uuid4()}"
    first = charge(client, "pm_card_visa", key=key)
    try:
        requests.post(sandbox.url + "/clock", json={"advanceSeconds": 23 * 3600}, timeout=5).raise_for_status()
        assert charge(client, "pm_card_visa", key=key).id == first.id
        requests.post(sandbox.url + "/clock", json={"advanceSeconds": 3600}, timeout=5).raise_for_status()
        later = charge(client, "pm_card_visa", key=key)
        assert later.id != first.id  # the window is over: a new charge, as with Stripe
    finally:
        requests.delete(sandbox.url + "/clock", timeout=5).raise_for_status()


# -- lists and search -------------------------------------------------------------------------------


def test_list_pages_newest_first_with_starting_after(client: stripe.StripeClient) -> None:
    cus = new_customer(client)
    made = [charge(client, "pm_card_visa", customer=cus.id, amount=100 + n).id for n in range(5)]
    page = client.v1.payment_intents.list(params={"customer": cus.id, "limit": 2})
    assert [p.id for p in page.data] == made[::-1][:2] and page.has_more is True
    nxt = client.v1.payment_intents.list(params={"customer": cus.id, "limit": 2, "starting_after": page.data[-1].id})
    assert [p.id for p in nxt.data] == made[::-1][2:4]
    assert [p.id for p in page.auto_paging_iter()] == made[::-1]
    before = client.v1.payment_intents.list(params={"customer": cus.id, "limit": 2, "ending_before": made[1]})
    assert [p.id for p in before.data] == made[::-1][1:3]


def test_search_is_eventually_consistent(client: stripe.StripeClient, sandbox: RunningStripeSandbox) -> None:
    requests.put(sandbox.url + "/settings", json={"searchLagSeconds": 1.0}, timeout=5).raise_for_status()
    key = f"settle/{uuid.uuid4()}"
    made = charge(client, "pm_card_visa", metadata={"idempotencyKey": key})
    query = f"metadata['idempotencyKey']:'{key}'"
    assert client.v1.payment_intents.search(params={"query": query}).data == []
    wait_for(lambda: len(client.v1.payment_intents.search(params={"query": query}).data) == 1, timeout=5)
    found = client.v1.payment_intents.search(params={"query": f"{query} AND status:'succeeded'"})
    assert [p.id for p in found.data] == [made.id] and found.data[0].status == "succeeded"
    # Paging, on intents of its own: a worker may run this test before any other of the module.
    account = f"acc-{uuid.uuid4().hex[:10]}"
    for _ in range(2):
        charge(client, "pm_card_visa", metadata={"accountId": account})
    by_account = f"metadata['accountId']:'{account}'"
    wait_for(lambda: len(client.v1.payment_intents.search(params={"query": by_account}).data) == 2, timeout=5)
    pages = client.v1.payment_intents.search(params={"query": by_account, "limit": 1})
    assert pages.has_more is True and pages.next_page
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.search(params={"query": "colour:'red'"})


# -- currency rules ---------------------------------------------------------------------------------

_MIN = {"usd": 50, "jpy": 50, "gbp": 30, "eur": 50, "kwd": 10, "bhd": 10, "krw": 1, "huf": 17500}
_MAX = {"inr": 999_999_999}


def _expected(amount: int, cur: str) -> str | None:
    if cur in ("kwd", "bhd") and amount % 10:
        return "invalid_charge_amount"
    if amount < _MIN.get(cur, 1):
        return "amount_too_small"
    if amount > _MAX.get(cur, 99_999_999):
        return "amount_too_large"
    return None


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amount=st.one_of(st.integers(1, 200), st.integers(99_999_990, 100_000_010), st.integers(1, 10**12)),
       cur=st.sampled_from(["usd", "jpy", "gbp", "eur", "kwd", "bhd", "krw", "huf"]))
def test_amounts_follow_stripes_currency_rules(client: stripe.StripeClient, amount: int, cur: str) -> None:
    want = _expected(amount, cur)
    try:
        pi = client.v1.payment_intents.create(params={"amount": amount, "currency": cur})
    except stripe.InvalidRequestError as err:
        assert (err.code, err.param, err.http_status) == (want, "amount", 400)
    else:
        assert want is None and (pi.amount, pi.currency, pi.status) == (amount, cur, "requires_payment_method")


def test_zero_decimal_amounts_are_whole_units(client: stripe.StripeClient, sandbox: RunningStripeSandbox) -> None:
    account = f"acc-{uuid.uuid4().hex[:8]}"
    charge(client, "pm_card_visa", amount=5000, cur="jpy", metadata={"accountId": account})
    charge(client, "pm_card_visa", amount=5120, cur="kwd", metadata={"accountId": account})
    rows = requests.get(sandbox.url + "/charges", params={"accountId": account}, timeout=5).json()
    assert [(r["amount"], r["currency"], r["status"]) for r in rows] == [("5000", "JPY", "succeeded"),
                                                                           ("5.120", "KWD", "succeeded")]


# -- webhooks ---------------------------------------------------------------------------------------


def test_webhooks_are_signed_so_the_sdk_verifies_them(client: stripe.StripeClient, receiver: Receiver) -> None:
    ok = charge(client, "pm_card_visa")
    with pytest.raises(stripe.CardError) as declined:
        charge(client, "pm_card_chargeDeclined")
    failed = declined.value.error.payment_intent.id  # type: ignore[union-attr]
    wait_for(lambda: bool(receiver.events(ok.id)) and bool(receiver.events(failed)))
    for intent, kind in [(ok.id, "payment_intent.succeeded"), (failed, "payment_intent.payment_failed")]:
        (body, headers), = receiver.events(intent)
        event = stripe.Webhook.construct_event(body.decode(), headers["Stripe-Signature"], SECRET)
        assert event.type == kind and event.data.object["id"] == intent
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(body.decode(), headers["Stripe-Signature"], "whsec_forged")


def test_webhooks_can_be_delayed_repeated_and_are_retried(client: stripe.StripeClient, receiver: Receiver,
                                                          sandbox: RunningStripeSandbox) -> None:
    requests.put(sandbox.url + "/settings", json={"webhook": {"delaySeconds": 0.5, "repeat": 1}},
                 timeout=5).raise_for_status()
    pi = charge(client, "pm_card_visa")
    time.sleep(0.2)
    assert receiver.events(pi.id) == []
    wait_for(lambda: len(receiver.events(pi.id)) == 2)
    assert len({json.loads(b)["id"] for b, _ in receiver.events(pi.id)}) == 1  # one event, delivered twice
    requests.put(sandbox.url + "/settings", json={"webhook": {"delaySeconds": 0, "repeat": 0}},
                 timeout=5).raise_for_status()
    receiver.status = 500
    retried = charge(client, "pm_card_visa")
    wait_for(lambda: len(receiver.events(retried.id)) >= 2)
    receiver.status = 200
    wait_for(lambda: any(d["status"] == 200 and d["eventId"] == json.loads(receiver.events(retried.id)[0][0])["id"]
                         for d in requests.get(sandbox.url + "/webhooks/deliveries", timeout=5).json()))


# -- faults, rate limits, keys ----------------------------------------------------------------------


def fault(sandbox: RunningStripeSandbox, **body: Any) -> None:
    requests.post(sandbox.url + "/faults", json=body, timeout=5).raise_for_status()


def test_a_429_looks_like_stripes_and_the_sdk_retries_it(client: stripe.StripeClient,
                                                         sandbox: RunningStripeSandbox) -> None:
    fault(sandbox, mode="fail_next", status=429, count=1)
    with pytest.raises(stripe.RateLimitError) as limited:
        client.v1.customers.create()
    assert limited.value.http_status == 429 and limited.value.error is not None
    assert limited.value.error.code == "rate_limit"
    assert limited.value.headers is not None and limited.value.headers.get("Stripe-Should-Retry") == "true"
    retrying = stripe.StripeClient(sandbox.api_key, base_addresses={"api": sandbox.url}, max_network_retries=2)
    fault(sandbox, mode="fail_next", status=429, count=1, route="POST /v1/payment_intents")
    assert charge(retrying, "pm_card_visa").status == "succeeded"
    requests.put(sandbox.url + "/settings", json={"rateLimitPerSecond": 3}, timeout=5).raise_for_status()
    with pytest.raises(stripe.RateLimitError):
        for _ in range(10):
            client.v1.customers.retrieve(new_customer(client).id)


def test_fault_knobs_of_the_sandbox_gateway(client: stripe.StripeClient, sandbox: RunningStripeSandbox) -> None:
    fault(sandbox, mode="fail_next", status=503, count=1)
    with pytest.raises(stripe.APIError) as unavailable:
        client.v1.customers.create()
    assert unavailable.value.http_status == 503
    fault(sandbox, mode="decline_next", count=1, declineCode="do_not_honor")
    with pytest.raises(stripe.CardError) as declined:
        charge(client, "pm_card_visa")
    assert declined.value.code == "card_declined" and declined.value.error.decline_code == "do_not_honor"  # type: ignore[union-attr]
    key = f"settle/{uuid.uuid4()}"
    fault(sandbox, mode="malformed_next", count=1, afterCharge=True)
    with pytest.raises(stripe.APIError):
        charge(client, "pm_card_visa", key=key)
    assert charge(client, "pm_card_visa", key=key).status == "succeeded"  # it was charged: replayed
    assert requests.get(sandbox.url + "/faults", timeout=5).json()["malformedNext"]["count"] == 0


def test_a_timeout_after_the_charge_keeps_the_charge(sandbox: RunningStripeSandbox) -> None:
    impatient = stripe.StripeClient(sandbox.api_key, base_addresses={"api": sandbox.url}, max_network_retries=0,
                                    http_client=stripe.RequestsClient(timeout=0.5))
    fault(sandbox, mode="timeout_after_charge", count=1, seconds=2)
    key = f"settle/{uuid.uuid4()}"
    account = f"acc-{uuid.uuid4().hex[:8]}"
    with pytest.raises(stripe.APIConnectionError):
        charge(impatient, "pm_card_visa", key=key, metadata={"accountId": account, "idempotencyKey": key})
    rows = requests.get(sandbox.url + "/charges", params={"accountId": account}, timeout=5).json()
    assert [(r["idempotencyKey"], r["status"]) for r in rows] == [(key, "succeeded")]
    again = charge(impatient, "pm_card_visa", key=key, metadata={"accountId": account, "idempotencyKey": key})
    assert again.id == rows[0]["id"]


def test_only_test_mode_secret_keys_are_accepted(sandbox: RunningStripeSandbox) -> None:
    live = stripe.StripeClient("sk_live_abcdefghijklmnop", base_addresses={"api": sandbox.url})
    with pytest.raises(stripe.AuthenticationError) as refused:
        live.v1.customers.create()
    assert refused.value.http_status == 401 and "sk_live_abcdefghijklmnop" not in str(refused.value)
    body = requests.get(sandbox.url + "/v1/customers/x", timeout=5).json()
    assert body["error"]["type"] == "invalid_request_error"
    versioned = stripe.StripeClient("sk_test_any", base_addresses={"api": sandbox.url},
                                    stripe_version="2024-06-20")
    assert versioned.v1.customers.create().object == "customer"


def test_the_command_line_runs_it(receiver: Receiver) -> None:
    port = azurite.free_port()
    proc = subprocess.Popen([sys.executable, "-m", "devstack.stripe_sandbox", "--port", str(port),
                             "--webhook-url", receiver.url, "--webhook-secret", SECRET], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(url), timeout=20)
        cli = stripe.StripeClient("sk_test_cli", base_addresses={"api": url})
        pi = charge(cli, "pm_card_visa")
        wait_for(lambda: bool(receiver.events(pi.id)))
        (body, headers), = receiver.events(pi.id)
        assert stripe.Webhook.construct_event(body.decode(), headers["Stripe-Signature"], SECRET).type == \
            "payment_intent.succeeded"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _healthy(url: str) -> bool:
    try:
        return requests.get(url + "/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False
