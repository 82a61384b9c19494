"""The `sweep-work` message: what the timer queues and the worker reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.store.indexes import DueEntry
from shared.sweeps import MAX_ATTEMPTS, SWEEPS, MalformedWork, SweepWork

ROOT = Path(__file__).resolve().parents[2]
ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)


@given(st.sampled_from(SWEEPS), ids, st.datetimes(timezones=st.just(UTC)))
def test_a_work_message_reads_back_as_written(sweep: str, account_id: str, at: datetime) -> None:
    entry = DueEntry(account_id, at, "due-3", f"{at:%Y%m%dT%H%M%S%fZ}|{account_id}")
    work = SweepWork(sweep, entry)  # type: ignore[arg-type]
    assert SweepWork.from_message(work.to_message()) == work


@pytest.mark.parametrize("text", [
    "not json", "[]", "{}",
    '{"sweep": "gardening", "accountId": "a", "partition": "p", "row": "r"}',
    '{"sweep": "dunning", "accountId": "", "partition": "p", "row": "r"}',
    '{"sweep": "dunning", "accountId": 7, "partition": "p", "row": "r"}',
    '{"sweep": "dunning", "accountId": "a", "partition": "p", "row": "r", "at": "yesterday"}',
    '{"sweep": "dunning", "accountId": "a", "partition": "p", "row": "r", "at": "２０２６-12-01T09:00:00+00:00"}',
    '{"sweep": "dunning", "accountId": "a", "accountId": "b", "partition": "p", "row": "r"}',
    '{"sweep": "dunning", "accountId": "a", "partition": "p", "row": "r", "x": ' + "[" * 5000 + "]" * 5000 + "}",
])
def test_a_malformed_work_message_is_refused_with_its_reason(text: str) -> None:
    with pytest.raises(MalformedWork, match="not a sweep-work message"):
        SweepWork.from_message(text)


def test_the_attempt_that_dead_letters_is_the_hosts_last() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["queues"]["maxDequeueCount"] == MAX_ATTEMPTS
