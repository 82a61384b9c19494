"""Each port's implementations side by side: every contract test runs once on the in-memory twin
(`tests/fakes/`) and once on the real adapter on the session Azurite, on fresh tables and queues,
so the twin the service tests run on cannot drift from what production runs on."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.queue import QueueServiceClient

from shared.adapters.queues.protocol import QueueRole, Queues
from shared.adapters.queues.storage import StorageQueues
from shared.adapters.store import clients
from shared.adapters.store.account_store import AccountStore
from shared.adapters.store.contact_index import ContactIndex
from shared.adapters.store.email_budget import Pace, TableEmailBudget
from shared.adapters.store.indexes import Indexes
from shared.adapters.store.leases import AccountLeases
from shared.adapters.store.system import DeadLetters
from shared.clock import FixedClock
from tests.fakes.contacts import InMemoryContactDirectory
from tests.fakes.dead_letters import InMemoryDeadLetters
from tests.fakes.email_budget import InMemoryBudgetRow, InMemoryEmailBudget
from tests.fakes.indexes import InMemoryIndexes
from tests.fakes.leases import InMemoryLeases
from tests.fakes.memory_store import InMemoryAccountStore
from tests.fakes.queues import InMemoryQueues

IMPLEMENTATIONS = ["twin", "azurite"]
ROLES: tuple[QueueRole, ...] = ("payment-events", "subscription-lifecycle", "email-outbox", "sweep-work",
                                "sweep-pages")


@pytest.fixture(params=IMPLEMENTATIONS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def fresh_table(request: pytest.FixtureRequest, prefix: str) -> TableClient:
    """A table of its own on the session Azurite (started only when an `azurite` case runs)."""
    service = TableServiceClient.from_connection_string(request.getfixturevalue("storage_connection_string"))
    return clients.ensure_table(service, f"{prefix}{uuid.uuid4().hex[:12]}")


@pytest.fixture
def accounts(kind: str, request: pytest.FixtureRequest) -> InMemoryAccountStore | AccountStore:
    return InMemoryAccountStore() if kind == "twin" else AccountStore(fresh_table(request, "contract"))


@pytest.fixture
def indexes(kind: str, request: pytest.FixtureRequest) -> InMemoryIndexes | Indexes:
    return InMemoryIndexes() if kind == "twin" else Indexes(fresh_table(request, "index"))


@pytest.fixture
def contacts(kind: str, request: pytest.FixtureRequest) -> InMemoryContactDirectory | ContactIndex:
    return InMemoryContactDirectory() if kind == "twin" else ContactIndex(fresh_table(request, "contacts"))


@pytest.fixture
def dead_letters(kind: str, request: pytest.FixtureRequest) -> InMemoryDeadLetters | DeadLetters:
    return InMemoryDeadLetters() if kind == "twin" else DeadLetters(fresh_table(request, "system"))


@pytest.fixture
def leases(kind: str, request: pytest.FixtureRequest) -> InMemoryLeases | AccountLeases:
    return InMemoryLeases() if kind == "twin" else AccountLeases(fresh_table(request, "leases"))


@dataclass
class QueueSide:
    """A `Queues` and what a consumer sees of it: `take` (visible messages, received and deleted)
    and `wait` (time passing: the twin's clock, or real seconds)."""

    queues: Queues
    take: Callable[[QueueRole], list[str]]
    wait: Callable[[timedelta], None]


@pytest.fixture
def queues(kind: str, request: pytest.FixtureRequest) -> QueueSide:
    if kind == "twin":
        clock = FixedClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
        twin = InMemoryQueues(clock.now)
        return QueueSide(twin, twin.take, lambda d: clock.advance_to(clock.now() + d))
    service = QueueServiceClient.from_connection_string(request.getfixturevalue("storage_connection_string"))
    suffix = uuid.uuid4().hex[:10]
    real = StorageQueues({role: clients.ensure_queue(service, f"c{n}-{suffix}") for n, role in enumerate(ROLES)})

    def take(role: QueueRole) -> list[str]:
        client = real.client(role)
        out: list[str] = []
        while batch := list(client.receive_messages(max_messages=32, visibility_timeout=60)):
            for m in batch:
                out.append(m.content)
                client.delete_message(m)
        return out

    return QueueSide(real, take, lambda d: time.sleep(d.total_seconds()))


@dataclass
class BudgetSide:
    """Processes (instances) of the email budget, each made by `instance(pace)` (None: no quota),
    all on one shared row, and the clock they all read (`clock.advance_to` moves it)."""

    instance: Callable[[Pace | None], TableEmailBudget | InMemoryEmailBudget]
    clock: FixedClock


@pytest.fixture
def email_budgets(kind: str, request: pytest.FixtureRequest) -> BudgetSide:
    clock = FixedClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    if kind == "twin":
        row = InMemoryBudgetRow()
        return BudgetSide(lambda pace: InMemoryEmailBudget(pace, clock.now, row), clock)
    table = fresh_table(request, "budget")
    return BudgetSide(lambda pace: TableEmailBudget(table, pace, clock=lambda: clock.now().timestamp()), clock)
