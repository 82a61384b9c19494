"""The running local stack (Azurite, email endpoint, sandbox gateway, functions host), on free
ports, started once for the end-to-end tests."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.storage.queue import QueueClient

from devstack.stack import LocalStack, StackPorts
from tests.e2e.card_scan import card_numbers_left


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    logs: Path = tmp_path_factory.mktemp("stack-logs")
    s = LocalStack(StackPorts.free(), log_dir=logs)
    s.start()
    try:
        yield s
        # After every test of the session: no card number anywhere the stack keeps anything
        # (issue 15). A failure here is reported as an error at the last test's teardown.
        left = card_numbers_left(logs, s.connection_string, s.email_url)
    finally:
        s.stop()
    assert not left, "card numbers kept by the local stack:\n" + "\n".join(left[:50])


@pytest.fixture(scope="session")
def api(stack: LocalStack) -> str:
    return f"{stack.functions_url}/api"


@pytest.fixture(scope="session")
def send_event(stack: LocalStack) -> Callable[..., str]:
    queue = QueueClient.from_connection_string(stack.connection_string, "payment-events")

    def send(type_: str, data: dict[str, Any], event_id: str | None = None, raw: str | None = None) -> str:
        event_id = event_id or f"evt-{uuid.uuid4().hex}"
        text = raw if raw is not None else json.dumps({
            "specversion": "1.0", "id": event_id, "type": type_, "source": "/tests", "time": "2026-12-01T09:00:00Z",
            "data": data})
        queue.send_message(text)
        return event_id

    return send


def all_dead_letters(api: str, limit: int = 50) -> list[dict[str, Any]]:
    """Every dead letter, read page by page through `GET /api/deadletters` (oldest first)."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        r = requests.get(f"{api}/deadletters", params=params, timeout=60)
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        if r.json()["continuation"] is None:
            return items
        params["continuation"] = r.json()["continuation"]


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def new_account(api: str, *, subscriptions: int = 1, locale: str = "en", token: str | None = "tok_visa",
                contacts: tuple[str, ...] = ("billing@contoso.example",)) -> str:
    account_id = f"acc-{uuid.uuid4().hex[:12]}"
    body: dict[str, Any] = {
        "displayName": "Contoso Ltd", "locale": locale, "billingContacts": list(contacts),
        "subscriptions": [{"id": f"s{i + 1}", "name": f"Service {i + 1}"} for i in range(subscriptions)],
    }
    if token:
        body["paymentMethod"] = {"type": "card", "token": token}
    r = requests.put(f"{api}/accounts/{account_id}", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return account_id
