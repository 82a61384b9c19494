"""HTTP bodies refused by the one JSON reader: the problem names the field once. Problems may
quote what the caller sent (a route parameter, a field name): a card number among it is masked
in every problem the API answers (issue 15: never echoed back)."""

from __future__ import annotations

import json

import azure.functions as func
import pytest

from functions.problems import invalid, not_found, read_body
from shared.inbound.account_body import FieldProblem, InvalidRequest


def _refused(body: bytes) -> InvalidRequest:
    req = func.HttpRequest("PUT", "http://localhost/api/accounts/a", body=body)
    with pytest.raises(InvalidRequest) as caught:
        read_body(req)
    return caught.value


@pytest.mark.parametrize(("body", "field"), [
    (b'{"token": "tok_a", "token": "tok_b"}', "token"),
    (b'{"paymentMethod": {"type": "card", "token": "tok_a", "token": "tok_b"}}', "paymentMethod.token"),
    (b'{"subscriptions": [{"id": "s1", "name": "a", "name": "b"}]}', "subscriptions.0.name"),
])
def test_a_key_given_twice_is_named_once(body: bytes, field: str) -> None:
    refused = _refused(body)
    assert [(p.field, p.message.split(";")[0]) for p in refused.problems] == [
        (field, f"the key {field.rsplit('.', 1)[-1]!r} appears more than once")]
    answer = json.loads(invalid(refused).get_body())
    assert answer["detail"].startswith(f"{field}: the key ")
    assert answer["errors"] == [{"field": field, "message": refused.problems[0].message}]


def test_a_refusal_of_the_whole_body_names_the_body() -> None:
    refused = _refused(b"[" * 100 + b"]" * 100)
    assert [p.field for p in refused.problems] == ["body"]
    assert refused.problems[0].message.startswith("JSON nested 100 levels deep")


def test_a_card_number_quoted_by_a_problem_is_masked() -> None:
    body = json.loads(not_found("no dead letter 4111111111111111").get_body())
    assert body["detail"] == "no dead letter ************1111"
    answer = invalid(InvalidRequest([FieldProblem("4111 1111 1111 1111", "Extra inputs are not permitted")]))
    body = json.loads(answer.get_body())
    assert body["errors"] == [{"field": "**** **** **** 1111", "message": "Extra inputs are not permitted"}]
    assert "4111" not in answer.get_body().decode()


def test_a_key_given_twice_that_is_a_card_number_is_named_masked() -> None:
    answer = invalid(_refused(b'{"4111111111111111": 1, "4111111111111111": 2}')).get_body().decode()
    assert "************1111" in answer and "4111" not in answer


def test_a_problem_without_card_numbers_is_kept_as_written() -> None:
    body = json.loads(not_found("no account acc-0123456789ab").get_body())
    assert body["detail"] == "no account acc-0123456789ab"
