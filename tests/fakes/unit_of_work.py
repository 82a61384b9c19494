"""A unit of work on in-memory twins, for service tests that run in milliseconds."""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.clock import FixedClock
from shared.domain.policy import DunningPolicy
from shared.faults import Faults
from shared.services.dispatch import Dispatcher, OutboxDispatcher
from shared.services.unit_of_work import UnitOfWork
from tests.fakes.contacts import InMemoryContactDirectory
from tests.fakes.dead_letters import InMemoryDeadLetters
from tests.fakes.indexes import InMemoryIndexes
from tests.fakes.leases import InMemoryLeases
from tests.fakes.memory_store import InMemoryAccountStore
from tests.fakes.queues import InMemoryQueues


def in_memory_unit_of_work(now: datetime, *, policy: DunningPolicy | None = None, faults: Faults | None = None,
                           redelivery_grace: timedelta = timedelta(0), accounts: InMemoryAccountStore | None = None,
                           dispatcher: Dispatcher | None = None) -> UnitOfWork:
    """Every port a twin, dispatched by the real `OutboxDispatcher` (or `dispatcher`); the clock
    is a `FixedClock` at `now` (`uow.clock.advance_to(...)` moves it)."""
    clock = FixedClock(now)
    faults = faults or Faults()
    accounts = accounts if accounts is not None else InMemoryAccountStore(faults)
    indexes, contacts, queues = InMemoryIndexes(), InMemoryContactDirectory(), InMemoryQueues(clock.now)
    return UnitOfWork(accounts=accounts, indexes=indexes, contacts=contacts, dead_letters=InMemoryDeadLetters(),
                      leases=InMemoryLeases(), queues=queues,
                      dispatcher=dispatcher or OutboxDispatcher(accounts, queues, indexes, contacts), clock=clock,
                      policy=policy or DunningPolicy(), faults=faults, redelivery_grace=redelivery_grace)
