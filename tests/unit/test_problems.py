"""HTTP bodies refused by the one JSON reader: the problem names the field once."""

from __future__ import annotations

import json

import azure.functions as func
import pytest

from functions.problems import invalid, read_json
from shared.registration import InvalidRequest


def _refused(body: bytes) -> InvalidRequest:
    req = func.HttpRequest("PUT", "http://localhost/api/accounts/a", body=body)
    with pytest.raises(InvalidRequest) as caught:
        read_json(req)
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
