"""FakeGateway: the token table, idempotency, soft/hard declines, faults."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from shared.gateway import (
    HARD_DECLINE_CODES,
    SOFT_DECLINE_CODES,
    CardDetails,
    CardRejected,
    ChargeResult,
    GatewayRequestError,
    GatewayUnavailable,
    IdempotencyConflict,
    PaymentGateway,
    decline_kind,
)
from shared.gateway.fake import SANDBOX_CARDS, FakeGateway
from shared.money import MAX_MINOR, Money

USD_10 = Money.parse("10.00", "USD")


def _charge(gw: FakeGateway, key: str, token: str = "tok_visa", amount: Money = USD_10) -> ChargeResult:
    return gw.charge(idempotency_key=key, amount=amount, token=token, account_id="acc-1", description="d")


def test_fake_is_a_payment_gateway() -> None:
    assert isinstance(FakeGateway(), PaymentGateway)


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
def test_save_card_knows_every_sandbox_token(token: str, card: CardDetails) -> None:
    assert FakeGateway().save_card(token) == card


@pytest.mark.parametrize("token", ["tok_unknown", "", "4242424242424242", "TOK_VISA"])
def test_save_card_rejects_unknown_tokens(token: str) -> None:
    with pytest.raises(CardRejected) as exc:
        FakeGateway().save_card(token)
    assert exc.value.code == "invalid_token"
    assert token not in str(exc.value) or not token


def test_successful_charge() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    gw = FakeGateway(clock=lambda: now)
    result = _charge(gw, "k1", "tok_mastercard")
    assert result.status == "succeeded" and result.succeeded
    assert result.decline_code is None and not result.soft_decline
    assert result.amount == USD_10 and result.idempotency_key == "k1"
    assert result.gateway_charge_id and result.gateway_charge_id.startswith("ch_")
    assert result.created_at == now
    assert gw.charges == [result]


@pytest.mark.parametrize(
    ("token", "code", "soft"),
    [
        ("tok_chargeDeclined", "card_declined", True),
        ("tok_chargeDeclinedInsufficientFunds", "insufficient_funds", True),
        ("tok_chargeDeclinedProcessingError", "processing_error", True),
        ("tok_chargeDeclinedExpiredCard", "expired_card", False),
    ],
)
def test_declines_are_results_with_their_code(token: str, code: str, soft: bool) -> None:
    gw = FakeGateway()
    result = _charge(gw, "k", token)
    assert result.status == "declined" and not result.succeeded
    assert result.decline_code == code
    assert result.soft_decline is soft
    assert gw.charges == [result]  # a decline is recorded too


def test_repeated_key_returns_the_first_result_and_charges_once() -> None:
    gw = FakeGateway()
    first = _charge(gw, "same")
    again = _charge(gw, "same", token="tok_chargeDeclined")
    assert again == first
    assert len(gw.charges) == 1
    assert gw.find_charge("same") == first


def test_repeated_key_with_another_amount_is_a_conflict_and_charges_nothing() -> None:
    gw = FakeGateway()
    _charge(gw, "same")
    with pytest.raises(IdempotencyConflict):
        _charge(gw, "same", amount=Money.parse("10.01", "USD"))
    with pytest.raises(IdempotencyConflict):
        _charge(gw, "same", amount=Money.parse("10.00", "EUR"))
    assert len(gw.charges) == 1


def test_concurrent_charges_with_one_key_charge_once() -> None:
    gw = FakeGateway()
    results: list[ChargeResult] = []
    barrier = threading.Barrier(20)

    def worker() -> None:
        barrier.wait()
        results.append(_charge(gw, "race"))

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(gw.charges) == 1
    assert len({r.gateway_charge_id for r in results}) == 1


def test_find_charge_unknown_key() -> None:
    assert FakeGateway().find_charge("nope") is None


def test_charges_for_account() -> None:
    gw = FakeGateway()
    a = _charge(gw, "a")
    b = gw.charge(idempotency_key="b", amount=USD_10, token="tok_visa", account_id="acc-2", description="")
    assert gw.charges_for("acc-1") == [a]
    assert gw.charges_for("acc-2") == [b]


@pytest.mark.parametrize("minor", [0, -100, MAX_MINOR + 1])
def test_refuses_amounts_out_of_range(minor: int) -> None:
    gw = FakeGateway()
    with pytest.raises(GatewayRequestError) as exc:
        _charge(gw, "k", amount=Money(minor, "USD"))
    assert exc.value.code == "invalid_amount"
    assert gw.charges == []


def test_refuses_empty_key_and_unknown_token_without_charging() -> None:
    gw = FakeGateway()
    with pytest.raises(GatewayRequestError):
        _charge(gw, "")
    with pytest.raises(CardRejected):
        _charge(gw, "k", token="tok_nope")
    assert gw.charges == []
    assert gw.find_charge("k") is None


def test_fail_next_raises_unavailable_then_recovers() -> None:
    gw = FakeGateway()
    gw.fail_next(2)
    for _ in range(2):
        with pytest.raises(GatewayUnavailable):
            _charge(gw, "k")
    assert gw.charges == []
    assert _charge(gw, "k").succeeded


def test_lost_response_after_charge_is_found_by_key() -> None:
    gw = FakeGateway()
    gw.lose_next_response(1)
    with pytest.raises(GatewayUnavailable):
        _charge(gw, "k")
    found = gw.find_charge("k")
    assert found is not None and found.succeeded
    assert _charge(gw, "k") == found  # a retry with the same key replays
    assert len(gw.charges) == 1


def test_soft_hard_mapping() -> None:
    for code in (
        "generic_decline",
        "card_declined",
        "insufficient_funds",
        "processing_error",
        "authentication_required",
    ):
        assert decline_kind(code) == "soft"
    for code in ("expired_card", "lost_card", "stolen_card", "incorrect_number"):
        assert decline_kind(code) == "hard"
    assert decline_kind("something_new") == "hard"
    assert decline_kind(None) == "hard"
    assert not SOFT_DECLINE_CODES & HARD_DECLINE_CODES


def test_soft_decline_is_false_for_a_success() -> None:
    ok = ChargeResult("k", "ch_1", "succeeded", USD_10, None, datetime.now(UTC))
    assert not ok.soft_decline


def test_every_declining_sandbox_card_has_a_classified_code() -> None:
    for sandbox in SANDBOX_CARDS.values():
        if sandbox.decline_code:
            assert sandbox.decline_code in SOFT_DECLINE_CODES | HARD_DECLINE_CODES
