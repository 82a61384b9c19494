"""The local stack with an extra worker process on the same Azurite, as several Functions
instances would run: events shared between them, nothing lost, nothing doubled."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from azure.storage.queue import QueueClient

from devstack.stack import LocalStack, StackPorts
from tests.e2e.conftest import new_account, wait_until


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    logs: Path = tmp_path_factory.mktemp("stack-workers-logs")
    with LocalStack(StackPorts.free(), log_dir=logs, workers=1) as stack:
        yield stack


def test_events_spread_over_two_processes_are_each_applied_once(two_workers: LocalStack) -> None:
    api = f"{two_workers.functions_url}/api"
    accounts = [new_account(api, subscriptions=2) for _ in range(6)]
    queue = QueueClient.from_connection_string(two_workers.connection_string, "payment-events")
    for n in range(5):
        for acc in accounts:
            event = {"specversion": "1.0", "id": str(uuid.uuid4()), "type": "billing.charge.failed",
                     "source": "/tests", "time": "2026-12-01T09:00:00Z",
                     "data": {"accountId": acc, "subscriptionId": f"s{n % 2 + 1}", "chargeId": f"c{n}",
                              "amount": "1.00", "currency": "USD", "reason": "card_declined"}}
            text = json.dumps(event)
            queue.send_message(text)
            queue.send_message(text)  # every event delivered twice
    for acc in accounts:
        wait_until(lambda acc=acc: requests.get(f"{api}/accounts/{acc}", timeout=10).json()["balance"]
                   == {"USD": "5.00"}, f"five charges on {acc}")
    lifecycle = QueueClient.from_connection_string(two_workers.connection_string, "subscription-lifecycle")
    events: list[dict[str, object]] = []
    wait_until(lambda: events.extend(json.loads(m.content) for m in lifecycle.receive_messages(
        messages_per_page=32, visibility_timeout=120)) or len(events) >= 12, "the lifecycle events")
    ids = [e["id"] for e in events]
    assert len(ids) == 12 and len(set(ids)) == 12  # two subscriptions past due per account, once each
    logs = {p.name: p.read_text() for p in two_workers.log_dir.glob("*.log")}
    assert "Executed 'Functions.payment_events'" in logs["worker1.log"]  # the second process did its share
    assert "Executed 'Functions.payment_events'" in logs["functions.log"]
