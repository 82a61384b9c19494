"""FakeGateway: the token table, idempotency, soft/hard declines, and every kind of answer."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from devstack.sandbox_gateway.cards import SANDBOX_CARDS, FakeGateway, GatewayFault
from shared.adapters.gateway.protocol import CardDetails, CardRejected, ChargeResult, GatewayUnavailable, PaymentGateway
from shared.domain.charge_answers import ChargeAnswer, Charged, Declined, Refused, Unanswered
from shared.domain.declines import HARD_DECLINE_CODES, SOFT_DECLINE_CODES, decline_kind
from shared.domain.money import MAX_MINOR, Money

USD_10 = Money.parse("10.00", "USD")


def _charge(gw: FakeGateway, key: str, token: str = "tok_visa", amount: Money = USD_10) -> ChargeAnswer:
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
    answer = _charge(gw, "k1", "tok_mastercard")
    assert isinstance(answer, Charged) and answer.amount == USD_10
    [result] = gw.charges
    assert result.status == "succeeded" and result.decline_code is None and not result.soft_decline
    assert result.idempotency_key == "k1" and result.created_at == now
    assert result.gateway_charge_id == answer.gateway_charge_id and answer.gateway_charge_id.startswith("ch_")


@pytest.mark.parametrize(
    ("token", "code", "soft"),
    [
        ("tok_chargeDeclined", "card_declined", True),
        ("tok_chargeDeclinedInsufficientFunds", "insufficient_funds", True),
        ("tok_chargeDeclinedProcessingError", "processing_error", True),
        ("tok_chargeDeclinedExpiredCard", "expired_card", False),
    ],
)
def test_declines_are_answers_with_their_code(token: str, code: str, soft: bool) -> None:
    gw = FakeGateway()
    answer = _charge(gw, "k", token)
    assert answer == Declined(code, gw.charges[0].gateway_charge_id)
    assert (answer.kind == "soft") is soft and gw.charges[0].soft_decline is soft  # a decline is recorded too


@pytest.mark.parametrize("code", sorted(SOFT_DECLINE_CODES | HARD_DECLINE_CODES))
def test_an_injected_decline_of_every_code_is_recorded_and_classified(code: str) -> None:
    gw = FakeGateway()
    gw.inject(GatewayFault("decline", code))
    answer = _charge(gw, "k")
    assert isinstance(answer, Declined) and answer.decline_code == code
    assert answer.kind == ("soft" if code in SOFT_DECLINE_CODES else "hard")
    assert gw.find_charge("k") == gw.charges[0] and gw.charges[0].status == "declined"


def test_repeated_key_returns_the_first_answer_and_charges_once() -> None:
    gw = FakeGateway()
    first = _charge(gw, "same")
    again = _charge(gw, "same", token="tok_chargeDeclined")
    assert again == first
    assert len(gw.charges) == 1
    assert gw.find_charge("same") == gw.charges[0]


def test_repeated_key_with_another_amount_is_unanswered_and_charges_nothing() -> None:
    gw = FakeGateway()
    _charge(gw, "same")
    for amount in (Money.parse("10.01", "USD"), Money.parse("10.00", "EUR")):
        answer = _charge(gw, "same", amount=amount)
        assert isinstance(answer, Unanswered) and answer.code == "idempotency_conflict"
    assert len(gw.charges) == 1


def test_concurrent_charges_with_one_key_charge_once() -> None:
    gw = FakeGateway()
    answers: list[ChargeAnswer] = []
    barrier = threading.Barrier(20)

    def worker() -> None:
        barrier.wait()
        answers.append(_charge(gw, "race"))

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(gw.charges) == 1
    assert len(set(answers)) == 1


def test_find_charge_unknown_key() -> None:
    assert FakeGateway().find_charge("nope") is None


def test_charges_for_account() -> None:
    gw = FakeGateway()
    _charge(gw, "a")
    gw.charge(idempotency_key="b", amount=USD_10, token="tok_visa", account_id="acc-2", description="")
    assert [c.idempotency_key for c in gw.charges_for("acc-1")] == ["a"]
    assert [c.idempotency_key for c in gw.charges_for("acc-2")] == ["b"]


@pytest.mark.parametrize("minor", [0, -100, MAX_MINOR + 1])
def test_refuses_amounts_out_of_range(minor: int) -> None:
    gw = FakeGateway()
    answer = _charge(gw, "k", amount=Money(minor, "USD"))
    assert isinstance(answer, Refused) and answer.code == "invalid_amount" and answer.status == 400
    assert gw.charges == [] and gw.find_charge("k") is None


def test_max_charge_is_the_adapters_limit_and_the_one_it_refuses_above() -> None:
    gw = FakeGateway(max_charge_minor=5_000)
    assert gw.max_charge("USD") == 5_000
    assert isinstance(_charge(gw, "ok", amount=Money(5_000, "USD")), Charged)
    assert isinstance(_charge(gw, "over", amount=Money(5_001, "USD")), Refused)


def test_refuses_empty_key_and_unknown_token_without_charging() -> None:
    gw = FakeGateway()
    assert isinstance(_charge(gw, ""), Refused)
    answer = _charge(gw, "k", token="tok_nope")
    assert isinstance(answer, Refused) and answer.code == "invalid_token"
    assert gw.charges == []
    assert gw.find_charge("k") is None


@pytest.mark.parametrize(("status", "code"), [(400, "invalid_request"), (404, "not_found"),
                                              (409, "conflict"), (422, "unprocessable")])
def test_an_injected_refusal_charges_nothing(status: int, code: str) -> None:
    gw = FakeGateway()
    gw.inject(GatewayFault("refuse", code, status))
    assert _charge(gw, "k") == Refused(code, "refused by an injected fault", status)
    assert gw.charges == [] and gw.find_charge("k") is None


@pytest.mark.parametrize("kind", ["unavailable", "rate_limited"])
def test_unavailable_and_rate_limited_are_unanswered_and_charge_nothing(kind: str) -> None:
    gw = FakeGateway()
    gw.inject(GatewayFault(kind))  # type: ignore[arg-type]
    assert isinstance(_charge(gw, "k"), Unanswered)
    assert gw.charges == [] and gw.find_charge("k") is None
    assert isinstance(_charge(gw, "k"), Charged)


@pytest.mark.parametrize("kind", ["lost_after_charge", "malformed_after_charge"])
def test_charged_then_unanswered_is_found_by_key(kind: str) -> None:
    gw = FakeGateway()
    gw.inject(GatewayFault(kind))  # type: ignore[arg-type]
    assert isinstance(_charge(gw, "k"), Unanswered)
    found = gw.find_charge("k")
    assert found is not None and found.succeeded
    assert isinstance(_charge(gw, "k"), Charged)  # a retry with the same key replays
    assert len(gw.charges) == 1


def test_fail_next_is_unanswered_for_charges_and_raises_elsewhere() -> None:
    gw = FakeGateway()
    gw.fail_next(3)
    assert isinstance(_charge(gw, "k"), Unanswered)
    with pytest.raises(GatewayUnavailable):
        gw.find_charge("k")
    with pytest.raises(GatewayUnavailable):
        gw.save_card("tok_visa")
    assert gw.charges == []
    assert isinstance(_charge(gw, "k"), Charged)


def test_failing_lookups_raise_then_recover() -> None:
    gw = FakeGateway()
    _charge(gw, "k")
    gw.fail_lookups(1)
    with pytest.raises(GatewayUnavailable):
        gw.find_charge("k")
    assert gw.find_charge("k") == gw.charges[0]


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
