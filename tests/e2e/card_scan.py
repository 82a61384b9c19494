"""Looking for card numbers wherever the local stack keeps anything: every log file, every row of
every table, every message still on a queue, every email the email endpoint received; in plain
text and behind JSON string escapes (`"4111\\u00201111..."`). Used after the whole e2e session (the `stack`
fixture's finaliser) and by the last e2e test, `test_zz_no_card_numbers_left.py`."""

from __future__ import annotations

import json
from pathlib import Path

import requests
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

from shared.inbound.card_data import find_card_numbers, mask_card_numbers, mask_escaped_card_numbers

IDENTIFIERS_IN_USE: set[str] = set()
"""Identifiers (contract §1) that tests sent on purpose with digits passing Luhn: applied and kept
whole wherever they are stored, so the scan reads past them. Nothing else is exempt."""


def declare_identifier(identifier: str) -> str:
    """Note an identifier a test uses that looks like a card number; returns it."""
    IDENTIFIERS_IN_USE.add(identifier)
    return identifier


def _where(text: str) -> bool:
    for identifier in sorted(IDENTIFIERS_IN_USE, key=len, reverse=True):
        text = text.replace(identifier, "<id>")
    return bool(find_card_numbers(text)) or mask_escaped_card_numbers(text) != text


def in_logs(log_dir: Path) -> list[str]:
    """`file:line: the line, masked` for every log line holding a card number."""
    found = []
    for path in sorted(p for p in log_dir.rglob("*") if p.is_file()):
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            if _where(line):
                found.append(f"{path.name}:{number}: {mask_card_numbers(line)[:300]}")
    return found


def in_tables(connection_string: str) -> list[str]:
    """`table PartitionKey/RowKey property` for every property (or key) holding a card number."""
    service = TableServiceClient.from_connection_string(connection_string)
    found = []
    for table in service.list_tables():
        for entity in service.get_table_client(table.name).list_entities():
            keys = (entity.get("PartitionKey"), entity.get("RowKey"))
            where = "/".join(mask_card_numbers(str(k)) for k in keys)
            found += [f"table {table.name} {where} {mask_card_numbers(str(name))}" for name, value in entity.items()
                      if _where(str(name)) or _where(str(value))]
    return found


def in_queues(connection_string: str) -> list[str]:
    """`queue name` for every message (of the first 32 per queue) holding a card number."""
    service = QueueServiceClient.from_connection_string(connection_string)
    found = []
    for queue in service.list_queues():
        for message in service.get_queue_client(queue.name).peek_messages(max_messages=32):
            if _where(str(message.content)):
                found.append(f"queue {queue.name} message {message.id}")
    return found


def in_emails(email_url: str) -> list[str]:
    """`email operationId` for every email the local email endpoint keeps that holds a card number."""
    messages = requests.get(f"{email_url}/messages", timeout=30).json()
    return [f"email {m.get('operationId')}" for m in messages if _where(json.dumps(m, ensure_ascii=False))]


def card_numbers_left(log_dir: Path, connection_string: str, email_url: str | None = None) -> list[str]:
    return [*in_logs(log_dir), *in_tables(connection_string), *in_queues(connection_string),
            *(in_emails(email_url) if email_url else [])]
