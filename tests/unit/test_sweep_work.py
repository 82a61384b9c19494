"""The `sweep-pages` and `sweep-work` messages: what the timer queues, what a page becomes, and
what the worker reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.adapters.store.indexes import PAGE, DueEntry, index_entry
from shared.services.sweep_work import (
    INDEX_OF,
    MAX_ATTEMPTS,
    SWEEPS,
    MalformedWork,
    SweepName,
    SweepPage,
    SweepWork,
    expand,
)

ROOT = Path(__file__).resolve().parents[2]
ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)


def _entry(sweep: SweepName, account_id: str, at: datetime) -> DueEntry:
    """The entry the sweep's index keeps (reconciliation's `disabled` rows have no time)."""
    return index_entry(INDEX_OF[sweep], account_id, None if sweep == "reconciliation" else at)


@given(st.sampled_from(SWEEPS), ids, st.datetimes(timezones=st.just(UTC)))
def test_a_work_message_reads_back_as_written(sweep: SweepName, account_id: str, at: datetime) -> None:
    work = SweepWork(sweep, _entry(sweep, account_id, at))
    assert SweepWork.from_message(work.to_message()) == work


def test_a_work_message_queued_before_pages_existed_still_reads() -> None:
    text = ('{"sweep": "dunning", "accountId": "acc-1", "partition": "due-2", '
            '"row": "20280203T090000000000Z|acc-1", "at": "2028-02-03T09:00:00+00:00"}')
    assert SweepWork.from_message(text).entry == index_entry("due", "acc-1", datetime(2028, 2, 3, 9, tzinfo=UTC))


@given(st.sampled_from(SWEEPS), ids, st.datetimes(timezones=st.just(UTC)),
       st.sampled_from(["due-0", "due-7", "retention-3", "disabled", "billing", ""]), st.text(max_size=90))
def test_a_work_message_naming_keys_its_index_does_not_keep_is_refused(
        sweep: SweepName, account_id: str, at: datetime, partition: str, row: str) -> None:
    entry = _entry(sweep, account_id, at)
    doc = json.loads(SweepWork(sweep, entry).to_message()) | {"partition": partition, "row": row}
    if (partition, row) == (entry.partition, entry.row):
        assert SweepWork.from_message(json.dumps(doc)).entry == entry
    else:  # it could claim, quarantine or delete another row: never acted on
        with pytest.raises(MalformedWork, match=r"not the .* index's keys"):
            SweepWork.from_message(json.dumps(doc))


@pytest.mark.parametrize("text", [
    '{"sweep": "dunning", "accountId": "a"}',  # a due entry needs its time
    '{"sweep": "dunning", "accountId": "a", "at": null}',
    '{"sweep": "reconciliation", "accountId": "a", "at": "2028-02-03T09:00:00+00:00"}',  # disabled rows have none
    '{"sweep": "dunning", "accountId": "a b", "at": "2028-02-03T09:00:00+00:00"}',
    '{"sweep": "dunning", "accountId": "' + "a" * 65 + '", "at": "2028-02-03T09:00:00+00:00"}',
    '{"sweep": "dunning", "accountId": "a\\n", "at": "2028-02-03T09:00:00+00:00"}',
    '{"sweep": "dunning", "accountId": ["a"], "at": "2028-02-03T09:00:00+00:00"}',
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


@given(st.sampled_from(SWEEPS), st.lists(st.tuples(ids, st.datetimes(timezones=st.just(UTC))),
                                         min_size=1, max_size=PAGE))
def test_a_page_reads_back_as_written_and_becomes_one_work_message_per_entry(
        sweep: SweepName, rows: list[tuple[str, datetime]]) -> None:
    page = SweepPage(sweep, tuple(_entry(sweep, a, at) for a, at in rows))
    assert SweepPage.from_message(page.to_message()) == page
    assert [SweepWork.from_message(w.to_message()) for w in page.work()] == [SweepWork(sweep, e) for e in page.entries]


@pytest.mark.parametrize("sweep", SWEEPS)
def test_the_largest_page_fits_one_queue_message(sweep: SweepName) -> None:
    longest = [_entry(sweep, f"{n:03d}" + "x" * 61, LATEST) for n in range(PAGE)]  # 64-character ids
    text = SweepPage(sweep, tuple(longest)).to_message()
    assert len(text.encode()) <= QUEUE_MESSAGE_LIMIT // 4, len(text)  # a quarter of the limit: room to spare
    assert len(SweepPage.from_message(text).entries) == PAGE


@pytest.mark.parametrize("text", [
    "not json", "[]", "{}", '{"sweep": "dunning"}',
    '{"sweep": "dunning", "entries": []}',
    '{"sweep": "dunning", "entries": {"accountId": "a", "partition": "p", "row": "r"}}',
    '{"sweep": "dunning", "entries": ["a"]}',
    '{"sweep": "dunning", "entries": [{"accountId": "a"}]}',
    '{"sweep": "dunning", "entries": [{"accountId": "a", "at": "2028-02-03T09:00:00+00:00", "partition": "due-9"}]}',
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


class _Queues:
    """`Queues` whose sends of the named accounts (`*`: every one) fail on a role, as a reset connection does."""

    def __init__(self, failing: dict[str, frozenset[str]]) -> None:
        self.failing = failing
        self.sent: dict[str, list[str]] = {"sweep-work": [], "sweep-pages": []}

    def send(self, role: str, text: str, *, visible_in: object = None) -> None:
        failing = self.failing.get(role, frozenset())
        if "*" in failing or json.loads(text).get("accountId") in failing:
            raise ConnectionResetError("Connection reset by peer")
        self.sent[role].append(text)


def _page(n: int) -> SweepPage:
    return SweepPage("dunning", tuple(_entry("dunning", f"acc-{i:03d}", LATEST) for i in range(n)))


def test_a_page_whose_sends_partly_fail_queues_only_those_again_as_a_page() -> None:
    page, queues = _page(PAGE), _Queues({"sweep-work": frozenset({"acc-007", "acc-042"})})
    assert expand(SimpleNamespace(queues=queues), page) == PAGE - 2  # type: ignore[arg-type]
    sent = sorted(SweepWork.from_message(t).entry.account_id for t in queues.sent["sweep-work"])
    assert sent == [e.account_id for e in page.entries if e.account_id not in {"acc-007", "acc-042"}]
    (again,) = queues.sent["sweep-pages"]
    assert SweepPage.from_message(again).entries == (page.entries[7], page.entries[42])


def test_a_page_raises_for_its_retry_when_even_the_smaller_page_cannot_be_sent() -> None:
    queues = _Queues({"sweep-work": frozenset({"acc-003"}), "sweep-pages": frozenset({"*"})})
    with pytest.raises(ConnectionResetError):
        expand(SimpleNamespace(queues=queues), _page(5))  # type: ignore[arg-type]
