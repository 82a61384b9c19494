"""The `email-outbox` hand-off: what the outbox queues and the sender reads, and what it refuses."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.adapters.store.account_store import OutboxRow
from shared.services.dispatch import EmailHandoff, MalformedHandoff, email_handoff, read_email_handoff

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
KEY = "0b6d3c2e-8f7a-5d41-9c3b-2a1e4f6d8b90"


@given(ids, st.uuids())
def test_a_handoff_reads_back_as_queued(account_id: str, key: uuid.UUID) -> None:
    row = OutboxRow(account_id, str(key), "email", {})
    assert read_email_handoff(email_handoff(row).encode()) == EmailHandoff(account_id, str(key))


@pytest.mark.parametrize(("text", "reason"), [
    ("not json", "not JSON"),
    ("", "not JSON"),
    ("\ufeff" + '{"accountId": "a", "key": "' + KEY + '"}', "not JSON"),
    ('{"accountId": "a", "key": "' + KEY + '"', "not JSON"),
    ("[1, 2]", "a JSON list"),
    ('"acc-1"', "a JSON str"),
    ("null", "a JSON NoneType"),
    ("{}", "accountId is missing"),
    ('{"accountId": "a"}', "key is missing"),
    ('{"key": "' + KEY + '"}', "accountId is missing"),
    ('{"accountId": 7, "key": "' + KEY + '"}', "accountId 7 is"),
    ('{"accountId": "a/b", "key": "' + KEY + '"}', "accountId 'a/b'"),
    ('{"accountId": "acct-1\\n", "key": "' + KEY + '"}', "is not an account id"),
    ('{"accountId": "\\u0661\\u0662", "key": "' + KEY + '"}', "is not an account id"),
    ('{"accountId": "a", "key": "k#1"}', "key 'k#1'"),
    ('{"accountId": "a", "key": "' + KEY.upper() + '"}', "is not an email's key"),
    ('{"accountId": "a", "key": "' + KEY + '\\n"}', "is not an email's key"),
    ('{"accountId": "a", "key": "{' + KEY + '}"}', "is not an email's key"),
    ('{"accountId": "a", "key": "\\ud800"}', "is not an email's key"),
    ('{"accountId": "a", "accountId": "b", "key": "' + KEY + '"}', "accountId.*more than once"),
    ('{"accountId": "a", "key": "' + KEY + '", "x": ' + "[" * 5000 + "]" * 5000 + "}", "nested 5001 levels"),
    ('{"accountId": "a", "key": "' + KEY + '", "n": ' + "9" * 5000 + "}", "a JSON number of 5000 characters"),
])
def test_a_malformed_handoff_is_refused_with_its_reason(text: str, reason: str) -> None:
    with pytest.raises(MalformedHandoff, match=f"not an email hand-off: .*{reason}"):
        read_email_handoff(text)


def test_bytes_that_are_not_utf8_are_refused() -> None:
    with pytest.raises(MalformedHandoff, match="not UTF-8"):
        read_email_handoff(b'{"accountId": "a\xff", "key": "' + KEY.encode() + b'"}')
