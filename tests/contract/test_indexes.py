"""`DueIndexes` (`shared/adapters/store/indexes.py`): the due, retention and disabled entries the
sweeps read, on the twin and on Table Storage alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters.store.indexes import PAGE, index_entry
from shared.adapters.store.protocol import DueIndexes

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def unclaimed(indexes: DueIndexes, now: datetime, ladder: str = "due") -> list[list[str]]:
    return [[e.account_id for e in page] for page in indexes.unclaimed(now, ladder)]  # type: ignore[arg-type]


def test_an_entry_is_due_from_its_time_on(indexes: DueIndexes) -> None:
    indexes.mark_due("acc-1", NOW)
    indexes.mark_due("acc-2", NOW + HOUR)
    indexes.mark_due("acc-3", NOW - HOUR, "retention")
    assert [e.account_id for e in indexes.due(NOW)] == ["acc-1"]
    assert [e.account_id for e in indexes.due(NOW + HOUR)] == ["acc-1", "acc-2"]  # oldest first
    assert [e.account_id for e in indexes.due(NOW, "retention")] == ["acc-3"]
    [entry] = indexes.due(NOW)
    assert entry == index_entry("due", "acc-1", NOW) and entry.queued_until is None


def test_mark_due_is_an_upsert_and_each_time_is_its_own_entry(indexes: DueIndexes) -> None:
    indexes.mark_due("acc-1", NOW)
    indexes.mark_due("acc-1", NOW)
    indexes.mark_due("acc-1", NOW + timedelta(minutes=5))
    assert [e.at for e in indexes.due(NOW + HOUR)] == [NOW, NOW + timedelta(minutes=5)]


def test_a_claimed_entry_is_left_out_until_its_claim_runs_out(indexes: DueIndexes) -> None:
    for n in range(3):
        indexes.mark_due(f"acc-{n}", NOW)
    claimed = [e for e in indexes.due(NOW) if e.account_id != "acc-2"]
    indexes.claim(claimed, NOW + timedelta(minutes=10))
    assert [a for p in unclaimed(indexes, NOW) for a in p] == ["acc-2"]
    assert sorted(a for p in unclaimed(indexes, NOW + timedelta(minutes=10)) for a in p) == ["acc-0", "acc-1", "acc-2"]
    assert sorted(e.account_id for e in indexes.due(NOW)) == ["acc-0", "acc-1", "acc-2"]  # claimed or not
    until = {e.account_id: e.queued_until for e in indexes.due(NOW)}
    assert until == {"acc-0": NOW + timedelta(minutes=10), "acc-1": NOW + timedelta(minutes=10), "acc-2": None}


def test_marking_a_claimed_entry_due_again_keeps_its_claim(indexes: DueIndexes) -> None:
    """A decision that writes the same hint again (same account, same time) does not make a queued
    entry look unqueued: Table Storage's upsert merges, and the claim is a property of the row."""
    indexes.mark_due("acc-1", NOW)
    indexes.claim(indexes.due(NOW), NOW + timedelta(minutes=10))
    indexes.mark_due("acc-1", NOW)
    assert unclaimed(indexes, NOW) == []
    assert [e.queued_until for e in indexes.due(NOW)] == [NOW + timedelta(minutes=10)]


def test_done_deletes_the_entry_and_a_gone_entry_is_no_error(indexes: DueIndexes) -> None:
    indexes.mark_due("acc-1", NOW)
    [entry] = indexes.due(NOW)
    indexes.done(entry)
    indexes.done(entry)
    assert indexes.due(NOW) == []


def test_a_claim_on_an_entry_done_meanwhile_writes_a_whole_row(indexes: DueIndexes) -> None:
    indexes.mark_due("acc-1", NOW)
    [entry] = indexes.due(NOW)
    indexes.done(entry)
    indexes.claim([entry], NOW + timedelta(days=1))  # a quarantine after the worker deleted it
    [back] = indexes.due(NOW)
    assert back.account_id == "acc-1" and back.at == NOW and back.queued_until == NOW + timedelta(days=1)


def test_disabled_entries_are_set_and_unset(indexes: DueIndexes) -> None:
    indexes.set_disabled("acc-2", True)
    indexes.set_disabled("acc-1", True)
    indexes.set_disabled("acc-1", True)
    assert sorted(indexes.disabled()) == ["acc-1", "acc-2"]
    assert sorted(a for p in unclaimed(indexes, NOW, "disabled") for a in p) == ["acc-1", "acc-2"]
    [entry] = [e for p in indexes.unclaimed(NOW, "disabled") for e in p if e.account_id == "acc-1"]
    assert entry.at is None and entry == index_entry("disabled", "acc-1", None)
    indexes.set_disabled("acc-1", False)
    indexes.set_disabled("acc-1", False)  # gone already: no error
    assert indexes.disabled() == ["acc-2"]
    assert indexes.due(NOW) == []  # the ladders are apart


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 2 * PAGE + 30), claimed_every=st.integers(2, 7))
def test_pages_hold_one_shard_each_and_every_unclaimed_entry_once(indexes: DueIndexes, n: int,
                                                                  claimed_every: int) -> None:
    tag = f"{n}-{claimed_every}"  # each example its own accounts in the shared table
    ids = [f"acc-{tag}-{i:04d}" for i in range(n)]
    for i, account in enumerate(ids):
        indexes.mark_due(account, NOW - timedelta(seconds=i))
    mine = [e for e in indexes.due(NOW) if e.account_id.startswith(f"acc-{tag}-")]
    indexes.claim(mine[::claimed_every], NOW + HOUR)
    pages = [[e for e in p if e.account_id.startswith(f"acc-{tag}-")] for p in indexes.unclaimed(NOW, "due")]
    pages = [p for p in pages if p]
    seen = [e.account_id for p in pages for e in p]
    assert sorted(seen) == sorted(e.account_id for e in mine if e not in mine[::claimed_every])
    assert len(seen) == len(set(seen))
    for page in pages:
        assert 1 <= len(page) <= PAGE and len({e.partition for e in page}) == 1
        assert [e.row for e in page] == sorted(e.row for e in page)
    for e in mine:
        indexes.done(e)
