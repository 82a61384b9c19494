"""The `sweep-pages` and `sweep-work` messages: what the timer queues, what a page becomes, and
what the worker reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.store.indexes import PAGE, DueEntry
from shared.sweeps import MAX_ATTEMPTS, SWEEPS, MalformedWork, SweepPage, SweepWork

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


QUEUE_MESSAGE_LIMIT = 64 * 1024  # bytes, Azure Queue Storage (messageEncoding "none": the text as sent)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def _entry(account_id: str, at: datetime | None, partition: str = "due-3") -> DueEntry:
    return DueEntry(account_id, at, partition, f"{at:%Y%m%dT%H%M%S%fZ}|{account_id}" if at else account_id)


@given(st.sampled_from(SWEEPS), st.lists(st.tuples(ids, st.none() | st.datetimes(timezones=st.just(UTC))),
                                         min_size=1, max_size=PAGE))
def test_a_page_reads_back_as_written_and_becomes_one_work_message_per_entry(
        sweep: str, rows: list[tuple[str, datetime | None]]) -> None:
    page = SweepPage(sweep, tuple(_entry(a, at) for a, at in rows))  # type: ignore[arg-type]
    assert SweepPage.from_message(page.to_message()) == page
    assert [SweepWork.from_message(w.to_message()) for w in page.work()] == [
        SweepWork(sweep, e) for e in page.entries]  # type: ignore[arg-type]


@pytest.mark.parametrize("partition", ["due-7", "retention-7", "disabled"])
def test_the_largest_page_fits_one_queue_message(partition: str) -> None:
    at = None if partition == "disabled" else LATEST
    longest = [_entry(f"{n:03d}" + "x" * 61, at, partition) for n in range(PAGE)]  # 64-character ids
    text = SweepPage("reconciliation", tuple(longest)).to_message()
    assert len(text.encode()) <= QUEUE_MESSAGE_LIMIT // 2, len(text)  # half the limit: room to spare
    assert len(SweepPage.from_message(text).entries) == PAGE


@pytest.mark.parametrize("text", [
    "not json", "[]", "{}", '{"sweep": "dunning"}',
    '{"sweep": "dunning", "entries": []}',
    '{"sweep": "dunning", "entries": {"accountId": "a", "partition": "p", "row": "r"}}',
    '{"sweep": "dunning", "entries": ["a"]}',
    '{"sweep": "dunning", "entries": [{"accountId": "a", "partition": "p"}]}',
    '{"sweep": "gardening", "entries": [{"accountId": "a", "partition": "p", "row": "r"}]}',
    '{"sweep": "dunning", "entries": [{"accountId": "a", "partition": "p", "row": "r", "at": "tomorrow"}]}',
    '{"sweep": "dunning", "entries": [' + ", ".join(['{"accountId": "a", "partition": "p", "row": "r"}'] * (PAGE + 1))
    + "]}",
    '{"sweep": "dunning", "sweep": "retention", "entries": [{"accountId": "a", "partition": "p", "row": "r"}]}',
])
def test_a_malformed_page_is_refused_with_its_reason(text: str) -> None:
    with pytest.raises(MalformedWork, match="not a sweep-pages message"):
        SweepPage.from_message(text)


def test_the_attempt_that_dead_letters_is_the_hosts_last() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["queues"]["maxDequeueCount"] == MAX_ATTEMPTS
