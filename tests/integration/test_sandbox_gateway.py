"""HttpPaymentGateway against the sandbox gateway over real HTTP, on the session's real Azurite."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack import azurite
from devstack.sandbox_gateway import RunningSandbox, redact, start_in_thread
from shared.adapters.gateway.http import HttpPaymentGateway
from shared.adapters.gateway.protocol import (
    CardDetails,
    CardRejected,
    ChargeResult,
    GatewayUnavailable,
    PaymentGateway,
    answer_of,
)
from shared.domain.charge_answers import ChargeAnswer, Charged, Declined, Refused, Unanswered
from shared.domain.declines import HARD_DECLINE_CODES, SOFT_DECLINE_CODES
from shared.domain.money import Money

ROOT = Path(__file__).resolve().parents[2]
USD = Money.parse("12.34", "USD")


@pytest.fixture(scope="module")
def sandbox(storage_connection_string: str) -> Iterator[RunningSandbox]:
    with start_in_thread(storage_connection_string) as running:
        yield running


@pytest.fixture(autouse=True)
def _no_faults(sandbox: RunningSandbox) -> Iterator[None]:
    requests.delete(sandbox.url + "/faults", timeout=5).raise_for_status()
    yield
    requests.delete(sandbox.url + "/faults", timeout=5).raise_for_status()


@pytest.fixture
def gateway(sandbox: RunningSandbox) -> Iterator[HttpPaymentGateway]:
    gw = HttpPaymentGateway(sandbox.url, sandbox.api_key, timeout=5, backoff=0.05)
    yield gw
    gw.close()


@pytest.fixture
def account() -> str:
    return f"acc-{uuid.uuid4().hex[:12]}"


def new_key() -> str:
    return f"charge/{uuid.uuid4()}"


def charges_of(sandbox: RunningSandbox | str, account_id: str) -> list[dict[str, Any]]:
    url = sandbox if isinstance(sandbox, str) else sandbox.url
    response = requests.get(url + "/charges", params={"accountId": account_id}, timeout=5)
    response.raise_for_status()
    data: list[dict[str, Any]] = response.json()
    return data


def stats(sandbox: RunningSandbox) -> dict[str, Any]:
    data: dict[str, Any] = requests.get(sandbox.url + "/stats", timeout=5).json()
    return data


def raw_charge(
    sandbox: RunningSandbox, key: str | None, body: dict[str, Any], api_key: str | None = None
) -> requests.Response:
    headers = {"Authorization": f"Bearer {api_key or sandbox.api_key}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return requests.post(sandbox.url + "/v1/charges", json=body, headers=headers, timeout=10)


def body(
    account_id: str, amount: Any = "12.34", currency: Any = "USD", token: str = "tok_visa"
) -> dict[str, Any]:
    return {
        "amount": amount,
        "currency": currency,
        "token": token,
        "accountId": account_id,
        "description": "t",
    }


def charge(
    gw: PaymentGateway, key: str, account_id: str, token: str = "tok_visa", amount: Money = USD
) -> ChargeAnswer:
    return gw.charge(
        idempotency_key=key, amount=amount, token=token, account_id=account_id, description="test"
    )


def recorded(gw: PaymentGateway, key: str) -> ChargeResult:
    found = gw.find_charge(key)
    assert found is not None
    return found


def fault(sandbox: RunningSandbox, **body: Any) -> None:
    requests.post(sandbox.url + "/faults", json=body, timeout=5).raise_for_status()


# -- cards ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "card"),
    [
        ("tok_visa", CardDetails("visa", "4242", 12, 2030)),
        ("tok_mastercard", CardDetails("mastercard", "4444", 11, 2029)),
        ("tok_chargeDeclined", CardDetails("visa", "0002", 12, 2030)),
        ("tok_chargeDeclinedInsufficientFunds", CardDetails("visa", "9995", 12, 2030)),
        ("tok_chargeDeclinedProcessingError", CardDetails("visa", "0119", 12, 2030)),
        ("tok_chargeDeclinedExpiredCard", CardDetails("visa", "0069", 12, 2030)),
    ],
)
def test_save_each_token(gateway: HttpPaymentGateway, token: str, card: CardDetails) -> None:
    assert gateway.save_card(token) == card


def test_save_unknown_token_is_rejected(gateway: HttpPaymentGateway, sandbox: RunningSandbox) -> None:
    with pytest.raises(CardRejected) as exc:
        gateway.save_card("tok_doesNotExist")
    assert exc.value.code == "invalid_token"
    raw = requests.post(
        sandbox.url + "/v1/cards",
        json={"token": "tok_doesNotExist"},
        headers={"Authorization": f"Bearer {sandbox.api_key}"},
        timeout=5,
    )
    assert raw.status_code == 400
    assert raw.json()["error"]["code"] == "invalid_token"


# -- charges -------------------------------------------------------------------------------------


def test_http_gateway_is_a_payment_gateway(gateway: HttpPaymentGateway) -> None:
    assert isinstance(gateway, PaymentGateway)


def test_charge_succeeds_and_is_listed(
    gateway: HttpPaymentGateway, sandbox: RunningSandbox, account: str
) -> None:
    key = new_key()
    answer = charge(gateway, key, account, "tok_mastercard")
    assert isinstance(answer, Charged) and answer.amount == USD
    result = recorded(gateway, key)
    assert result.status == "succeeded" and result.decline_code is None and not result.soft_decline
    assert result.amount == USD and result.idempotency_key == key
    assert answer.gateway_charge_id == result.gateway_charge_id and answer.gateway_charge_id.startswith("ch_")
    assert result.created_at.tzinfo is not None
    [listed] = charges_of(sandbox, account)
    assert listed["idempotencyKey"] == key and listed["id"] == result.gateway_charge_id
    assert (listed["amount"], listed["currency"], listed["status"]) == ("12.34", "USD", "succeeded")
    assert listed["accountId"] == account and listed["createdAt"] and listed["declineCode"] is None


@pytest.mark.parametrize(
    ("token", "code", "soft"),
    [
        ("tok_chargeDeclined", "card_declined", True),
        ("tok_chargeDeclinedInsufficientFunds", "insufficient_funds", True),
        ("tok_chargeDeclinedProcessingError", "processing_error", True),
        ("tok_chargeDeclinedExpiredCard", "expired_card", False),
    ],
)
def test_declines(
    gateway: HttpPaymentGateway, sandbox: RunningSandbox, account: str, token: str, code: str, soft: bool
) -> None:
    key = new_key()
    answer = charge(gateway, key, account, token)
    assert isinstance(answer, Declined) and answer.decline_code == code and (answer.kind == "soft") is soft
    assert answer.gateway_charge_id and recorded(gateway, key).soft_decline is soft
    [listed] = charges_of(sandbox, account)  # declines are stored too
    assert listed["status"] == "declined" and listed["declineCode"] == code
    replay = raw_charge(sandbox, key, body(account, token=token))
    assert replay.status_code == 402
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["declineCode"] == code


def test_repeated_key_charges_once(
    gateway: HttpPaymentGateway, sandbox: RunningSandbox, account: str
) -> None:
    key = new_key()
    first = charge(gateway, key, account)
    again = charge(gateway, key, account)
    other_token = charge(gateway, key, account, "tok_chargeDeclined")  # the first result stands
    assert again == first and other_token == first
    raw = raw_charge(sandbox, key, body(account))
    assert raw.status_code == 200 and raw.headers["Idempotent-Replayed"] == "true"
    assert raw.json()["id"] == first.gateway_charge_id
    assert len(charges_of(sandbox, account)) == 1


def test_repeated_key_with_another_amount_is_a_conflict(
    gateway: HttpPaymentGateway, sandbox: RunningSandbox, account: str
) -> None:
    key = new_key()
    first = charge(gateway, key, account)
    conflict = charge(gateway, key, account, amount=Money.parse("99.00", "USD"))
    assert isinstance(conflict, Unanswered) and conflict.code == "idempotency_conflict"  # read it back
    raw = raw_charge(sandbox, key, body(account, "12.34", "EUR"))
    assert raw.status_code == 409 and raw.json()["error"]["code"] == "idempotency_conflict"
    assert charge(gateway, key, account, amount=Money(1234, "USD")) == first  # same amount
    assert len(charges_of(sandbox, account)) == 1


def test_twenty_concurrent_requests_with_one_key_charge_once(sandbox: RunningSandbox, account: str) -> None:
    key = new_key()
    barrier = threading.Barrier(20)
    responses: list[requests.Response] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            responses.append(raw_charge(sandbox, key, body(account)))
        except BaseException as exc:
            errors.append(exc)

    before = stats(sandbox)["chargesCreated"]
    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [r.status_code for r in responses] == [200] * 20
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(1 for r in responses if r.headers.get("Idempotent-Replayed") != "true") == 1
    assert len(charges_of(sandbox, account)) == 1
    assert stats(sandbox)["chargesCreated"] - before == 1


def test_concurrent_clients_with_one_key_charge_once(sandbox: RunningSandbox, account: str) -> None:
    key = new_key()
    barrier = threading.Barrier(20)
    results: list[ChargeAnswer] = []

    def worker() -> None:
        gw = HttpPaymentGateway(sandbox.url, sandbox.api_key, timeout=10)
        barrier.wait()
        results.append(charge(gw, key, account))
        gw.close()

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20 and len(set(results)) == 1
    assert len(charges_of(sandbox, account)) == 1


def test_two_sandboxes_on_one_storage_charge_a_key_once(
    sandbox: RunningSandbox, storage_connection_string: str, account: str
) -> None:
    """Storage arbitrates idempotency, not a lock in one process: two servers race one key."""
    key = new_key()
    with start_in_thread(storage_connection_string) as other:
        barrier = threading.Barrier(20)
        responses: list[requests.Response] = []

        def worker(target: RunningSandbox) -> None:
            barrier.wait()
            responses.append(raw_charge(target, key, body(account)))

        threads = [threading.Thread(target=worker, args=(s,)) for s in [sandbox, other] * 10]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(responses) == 20 and len({r.json()["id"] for r in responses}) == 1
    assert sum(1 for r in responses if r.headers.get("Idempotent-Replayed") != "true") == 1
    assert len(charges_of(sandbox, account)) == 1


def test_find_charge_unknown_key(gateway: HttpPaymentGateway) -> None:
    assert gateway.find_charge(new_key()) is None


@pytest.mark.parametrize("key", ["a/b\\c#d?e%f", "spaces and ünïcödé", "x" * 255])
def test_keys_with_any_characters_round_trip(gateway: HttpPaymentGateway, account: str, key: str) -> None:
    key = key[:-8] + uuid.uuid4().hex[:8]
    answer = charge(gateway, key, account)
    assert answer == answer_of(recorded(gateway, key))


def test_charges_listed_oldest_first(
    gateway: HttpPaymentGateway, sandbox: RunningSandbox, account: str
) -> None:
    keys = [new_key() for _ in range(3)]
    for key in keys:
        charge(gateway, key, account)
    assert [c["idempotencyKey"] for c in charges_of(sandbox, account)] == keys
    everything = requests.get(sandbox.url + "/charges", timeout=5).json()
    created = [c["createdAt"] for c in everything]
    assert created == sorted(created)
    assert set(keys) <= {c["idempotencyKey"] for c in everything}


# -- faults and recovery ---------------------------------------------------------------------------


def test_lost_answer_then_find_charge_recovers(sandbox: RunningSandbox, account: str) -> None:
    """The gateway charges, the answer never arrives: find_charge tells us what happened."""
    gw = HttpPaymentGateway(sandbox.url, sandbox.api_key, timeout=0.5, max_attempts=2, backoff=0.05)
    requests.post(
        sandbox.url + "/faults", json={"mode": "timeout_after_charge", "count": 2, "seconds": 3}, timeout=5
    ).raise_for_status()
    key = new_key()
    assert isinstance(charge(gw, key, account), Unanswered)
    found = gw.find_charge(key)
    assert found is not None and found.status == "succeeded" and found.amount == USD
    assert charge(gw, key, account) == answer_of(found)  # a retry with the same key replays, charges nothing
    assert len(charges_of(sandbox, account)) == 1
    gw.close()


def test_lost_answer_is_retried_with_the_same_key(sandbox: RunningSandbox, account: str) -> None:
    gw = HttpPaymentGateway(sandbox.url, sandbox.api_key, timeout=0.5, backoff=0.05)
    requests.post(
        sandbox.url + "/faults", json={"mode": "timeout_after_charge", "count": 1, "seconds": 2}, timeout=5
    ).raise_for_status()
    assert isinstance(charge(gw, new_key(), account), Charged)
    assert len(charges_of(sandbox, account)) == 1
    gw.close()


def test_503s_are_retried(gateway: HttpPaymentGateway, sandbox: RunningSandbox, account: str) -> None:
    requests.post(
        sandbox.url + "/faults", json={"mode": "fail_next", "count": 2, "status": 503}, timeout=5
    ).raise_for_status()
    before = stats(sandbox)
    answer = charge(gateway, new_key(), account)
    after = stats(sandbox)
    assert isinstance(answer, Charged)
    assert after["byRoute"]["POST /v1/charges"] - before["byRoute"].get("POST /v1/charges", 0) == 3
    assert after["faultsInjected"] - before["faultsInjected"] == 2
    assert len(charges_of(sandbox, account)) == 1


def test_persistent_503_surfaces_as_unavailable_and_charges_nothing(
    sandbox: RunningSandbox, account: str
) -> None:
    gw = HttpPaymentGateway(sandbox.url, sandbox.api_key, max_attempts=3, backoff=0.01)
    requests.post(
        sandbox.url + "/faults", json={"mode": "fail_next", "count": 5}, timeout=5
    ).raise_for_status()
    key = new_key()
    answer = charge(gw, key, account)
    assert isinstance(answer, Unanswered) and answer.code == "http_503"
    assert charges_of(sandbox, account) == []
    requests.delete(sandbox.url + "/faults", timeout=5)
    assert gw.find_charge(key) is None
    gw.close()


@pytest.mark.parametrize("code", sorted(SOFT_DECLINE_CODES | HARD_DECLINE_CODES))
def test_every_decline_code_is_a_declined_answer_of_its_kind(
    gateway: HttpPaymentGateway, sandbox: RunningSandbox, account: str, code: str
) -> None:
    fault(sandbox, mode="decline_next", declineCode=code)
    answer = charge(gateway, new_key(), account)
    assert isinstance(answer, Declined) and answer.decline_code == code
    assert answer.kind == ("soft" if code in SOFT_DECLINE_CODES else "hard")


@pytest.mark.parametrize(("status", "code"), [(400, "invalid_request"), (404, "not_found"),
                                              (409, "conflict"), (422, "unprocessable_entity")])
def test_refusals_are_refused_answers_and_charge_nothing(
    gateway: HttpPaymentGateway, sandbox: RunningSandbox, account: str, status: int, code: str
) -> None:
    fault(sandbox, mode="fail_next", status=status, code=code)
    key = new_key()
    answer = charge(gateway, key, account)
    assert isinstance(answer, Refused) and (answer.status, answer.code) == (status, code)
    assert charges_of(sandbox, account) == [] and gateway.find_charge(key) is None


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 501, 599])
def test_rate_limits_and_server_errors_that_persist_are_unanswered(
    sandbox: RunningSandbox, account: str, status: int
) -> None:
    gw = HttpPaymentGateway(sandbox.url, sandbox.api_key, max_attempts=2, backoff=0.01)
    fault(sandbox, mode="fail_next", status=status, count=2)
    key = new_key()
    answer = charge(gw, key, account)
    assert isinstance(answer, Unanswered) and answer.code == f"http_{status}"
    requests.delete(sandbox.url + "/faults", timeout=5).raise_for_status()
    assert gw.find_charge(key) is None  # read back: it never reached the charge
    gw.close()


def test_a_402_that_is_not_a_charge_is_unanswered_never_a_decline(
    gateway: HttpPaymentGateway, sandbox: RunningSandbox, account: str
) -> None:
    """A 402 whose body is an error, not the declined charge: nothing says what the card did."""
    fault(sandbox, mode="fail_next", status=402, code="card_error", route="POST /v1/charges")
    key = new_key()
    answer = charge(gateway, key, account)
    assert isinstance(answer, Unanswered) and answer.code == "malformed_answer"
    assert gateway.find_charge(key) is None


@pytest.mark.parametrize("after_charge", [True, False])
def test_a_malformed_answer_is_unanswered_and_read_back_tells(
    gateway: HttpPaymentGateway, sandbox: RunningSandbox, account: str, after_charge: bool
) -> None:
    fault(sandbox, mode="malformed_next", afterCharge=after_charge)
    key = new_key()
    answer = charge(gateway, key, account)
    assert isinstance(answer, Unanswered) and answer.code == "malformed_answer"
    found = gateway.find_charge(key)
    assert (found is not None and found.succeeded) if after_charge else found is None


def test_unreachable_gateway_is_unavailable() -> None:
    gw = HttpPaymentGateway(
        f"http://127.0.0.1:{azurite.free_port()}", "k", timeout=1, max_attempts=2, backoff=0.01
    )
    with pytest.raises(GatewayUnavailable):
        gw.save_card("tok_visa")


# -- validation and auth --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        ("1.5", "JPY"),
        (1.5, "USD"),
        (12, "USD"),
        ("-1.00", "USD"),
        ("0", "USD"),
        ("0.00", "USD"),
        ("12.345", "USD"),
        ("1e3", "USD"),
        ("abc", "USD"),
        ("", "USD"),
        (None, "USD"),
        ("12.34", "XYZ"),
        ("12.34", None),
        ("10000000000000000.00", "USD"),  # past money.MAX_MINOR
    ],
)
def test_bad_amounts_are_400(sandbox: RunningSandbox, account: str, amount: Any, currency: Any) -> None:
    key = new_key()
    response = raw_charge(sandbox, key, body(account, amount, currency))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] in ("invalid_amount", "invalid_currency")
    assert charges_of(sandbox, account) == []


@pytest.mark.parametrize("minor", [0, -500])
def test_client_surfaces_bad_amounts(gateway: HttpPaymentGateway, account: str, minor: int) -> None:
    answer = charge(gateway, new_key(), account, amount=Money(minor, "USD"))
    assert isinstance(answer, Refused) and answer.code == "invalid_amount" and answer.status == 400


def test_the_adapter_knows_the_sandbox_limit_and_the_sandbox_refuses_above_it(
    gateway: HttpPaymentGateway, account: str
) -> None:
    limit = gateway.max_charge("USD")
    assert isinstance(charge(gateway, new_key(), account, amount=Money(limit, "USD")), Charged)
    answer = charge(gateway, new_key(), account, amount=Money(limit + 1, "USD"))
    assert isinstance(answer, Refused) and answer.code == "invalid_amount"


def test_whole_yen_are_fine(gateway: HttpPaymentGateway, account: str) -> None:
    answer = charge(gateway, new_key(), account, amount=Money.parse("1500", "JPY"))
    assert isinstance(answer, Charged) and answer.amount == Money(1500, "JPY")


def test_missing_idempotency_key_is_400(sandbox: RunningSandbox, account: str) -> None:
    response = raw_charge(sandbox, None, body(account))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_idempotency_key"
    assert raw_charge(sandbox, "", body(account)).status_code == 400
    assert raw_charge(sandbox, "k" * 256, body(account)).status_code == 400
    assert charges_of(sandbox, account) == []


def test_unknown_token_at_charge_is_rejected(
    gateway: HttpPaymentGateway, sandbox: RunningSandbox, account: str
) -> None:
    key = new_key()
    answer = charge(gateway, key, account, "tok_nope")
    assert isinstance(answer, Refused) and answer.code == "invalid_token"
    assert raw_charge(sandbox, key, body(account, token="tok_nope")).status_code == 400
    assert charges_of(sandbox, account) == []


def test_invalid_json_and_missing_account_are_400(sandbox: RunningSandbox) -> None:
    headers = {"Authorization": f"Bearer {sandbox.api_key}", "Idempotency-Key": new_key()}
    response = requests.post(sandbox.url + "/v1/charges", data=b"{not json", headers=headers, timeout=5)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    no_account = {"amount": "1.00", "currency": "USD", "token": "tok_visa"}
    response = requests.post(sandbox.url + "/v1/charges", json=no_account, headers=headers, timeout=5)
    assert response.status_code == 400


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-key", "Basic sandbox-local-key", "sandbox-local-key", "Bearer "]
)
def test_bad_auth_is_401(sandbox: RunningSandbox, account: str, authorization: str | None) -> None:
    headers = {"Idempotency-Key": new_key()}
    if authorization is not None:
        headers["Authorization"] = authorization
    for method, path, payload in [
        ("POST", "/v1/cards", {"token": "tok_visa"}),
        ("POST", "/v1/charges", body(account)),
        ("GET", "/v1/charges/whatever", None),
    ]:
        response = requests.request(method, sandbox.url + path, json=payload, headers=headers, timeout=5)
        assert response.status_code == 401, (method, path)
        assert response.json()["error"]["code"] == "unauthorized"
    assert charges_of(sandbox, account) == []


def test_client_with_wrong_key_is_refused_and_cannot_save_cards(sandbox: RunningSandbox, account: str) -> None:
    gw = HttpPaymentGateway(sandbox.url, "wrong-key", backoff=0.01)
    with pytest.raises(GatewayUnavailable) as exc:
        gw.save_card("tok_visa")
    assert exc.value.code == "unauthorized"
    answer = charge(gw, new_key(), account)
    assert isinstance(answer, Refused) and answer.status == 401


# -- secrecy ------------------------------------------------------------------------------------


def test_tokens_are_never_logged(
    gateway: HttpPaymentGateway, account: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway.save_card("tok_visa")
    charge(gateway, new_key(), account, "tok_chargeDeclinedExpiredCard")
    with pytest.raises(CardRejected):
        gateway.save_card("tok_secretUnknown")
    assert "devstack.sandbox_gateway" in {r.name for r in caplog.records}
    assert "tok_" not in caplog.text


def test_redaction() -> None:
    assert redact("card 4242 4242 4242 4242 and 4000-0000-0000-0002, tok_visa") == (
        "card [redacted] and [redacted], tok_[redacted]"
    )
    assert redact("GET /v1/charges/abc-123 -> 200") == "GET /v1/charges/abc-123 -> 200"
    # Every form the product's detector knows (issue 15), not only spaces and dashes
    assert redact("GET /v1/charges/4111.1111.1111.1111 -> 404") == "GET /v1/charges/****.****.****.1111 -> 404"
    assert redact("4111\u00a01111\u00a01111\u00a01111") == "****\u00a0****\u00a0****\u00a01111"


@pytest.mark.parametrize("path", ["4111.1111.1111.1111", "4111%201111%201111%201111", "4111%2F1111%2F1111%2F1111"])
def test_a_card_number_in_a_request_path_is_not_logged(
        sandbox: RunningSandbox, caplog: pytest.LogCaptureFixture, path: str) -> None:
    caplog.set_level(logging.INFO, logger="devstack.sandbox_gateway")
    r = requests.get(f"{sandbox.url}/v1/charges/{path}", headers={"Authorization": f"Bearer {sandbox.api_key}"},
                     timeout=5)
    assert r.status_code == 404
    logged = [rec.getMessage() for rec in caplog.records if rec.name == "devstack.sandbox_gateway"]
    assert any("/v1/charges/" in line for line in logged), logged
    assert not any("4111" in line for line in logged), logged


# -- durability across a restart of the sandbox process ------------------------------------------------


def _start_process(connection_string: str, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AzureWebJobsStorage": connection_string, "PAYMENT_GATEWAY_API_KEY": "proc-key"}
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devstack.sandbox_gateway", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                return proc
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the sandbox process did not start:\n" + log_path.read_text())
        time.sleep(0.1)


def _stop_process(proc: subprocess.Popen[bytes]) -> int:
    proc.terminate()
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def test_charges_survive_a_restart(storage_connection_string: str, account: str, tmp_path: Path) -> None:
    log_path = tmp_path / "sandbox.log"
    port = azurite.free_port()
    url = f"http://127.0.0.1:{port}"
    key = new_key()
    proc = _start_process(storage_connection_string, port, log_path)
    try:
        gw = HttpPaymentGateway(url, "proc-key", timeout=5)
        charge(gw, key, account)
        charge(gw, key + "-d", account, "tok_chargeDeclinedInsufficientFunds")
        first, declined = recorded(gw, key), recorded(gw, key + "-d")
        gw.close()
    finally:
        assert _stop_process(proc) == 0

    port = azurite.free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start_process(storage_connection_string, port, log_path)
    try:
        gw = HttpPaymentGateway(url, "proc-key", timeout=5)
        assert gw.find_charge(key) == first
        assert gw.find_charge(key + "-d") == declined
        assert charge(gw, key, account) == answer_of(first)  # replayed from storage, not charged again
        assert [c["idempotencyKey"] for c in charges_of(url, account)] == [key, key + "-d"]
        assert requests.get(url + "/stats", timeout=5).json()["chargesCreated"] == 0
        assert requests.post(url + "/v1/cards", json={"token": "tok_visa"}, timeout=5).status_code == 401
        gw.close()
    finally:
        assert _stop_process(proc) == 0
    log_text = log_path.read_text()
    assert "listening on" in log_text and "POST /v1/charges -> 200" in log_text
    assert "tok_" not in log_text
