"""Runs last in the e2e session (files run in name order): after every other test has sent the
stack card numbers over HTTP, on the queue and in forms, none is kept in any log file, table or
queue (issue 15). The `stack` fixture scans once more after the very last test."""

from __future__ import annotations

import uuid
from pathlib import Path

from azure.data.tables import TableServiceClient

from devstack.stack import LocalStack
from tests.e2e.card_scan import card_numbers_left, in_logs, in_tables


def test_the_scan_finds_a_card_number_where_one_is_kept(stack: LocalStack, tmp_path: Path) -> None:
    """The scan itself can fail: a number planted in a log file and a table row is found; masked ones are not."""
    (tmp_path / "planted.log").write_text("fine\nmasked **** **** **** 1111\nleaked 4111-1111-1111-1111 here\n")
    assert [f.split(":")[:2] for f in in_logs(tmp_path)] == [["planted.log", "3"]]
    service = TableServiceClient.from_connection_string(stack.connection_string)
    name = f"probe{uuid.uuid4().hex[:12]}"
    table = service.create_table(name)
    try:
        table.upsert_entity({"PartitionKey": "p", "RowKey": "masked", "note": "************1111"})
        assert not [f for f in in_tables(stack.connection_string) if name in f]
        table.upsert_entity({"PartitionKey": "p", "RowKey": "leaked", "note": "4111 1111 1111 1111"})
        assert [f for f in in_tables(stack.connection_string) if name in f] == [f"table {name} p/leaked note"]
        escaped = r'{"r": "4111\u00201111\u00201111\u00201111"'  # broken JSON, as a dead letter may keep it
        table.upsert_entity({"PartitionKey": "p", "RowKey": "escaped", "note": escaped})
        assert sorted(f for f in in_tables(stack.connection_string) if name in f) == [
            f"table {name} p/escaped note", f"table {name} p/leaked note"]
    finally:
        service.delete_table(name)


def test_no_card_number_is_kept_in_any_log_table_or_queue(stack: LocalStack) -> None:
    left = card_numbers_left(stack.log_dir, stack.connection_string, stack.email_url)
    assert not left, "\n".join(left[:50])
