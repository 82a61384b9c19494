"""Exactly-once effects on at-least-once delivery, against real Table Storage and queues: two
processes racing for one account's ETag. The service's own exactly-once logic (redeliveries,
crashes before the commit and before the dispatch, retried requests) is tested on the twins in
tests/services/test_event_intake.py."""

from __future__ import annotations

import json
import logging
import multiprocessing
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.bootstrap import Services, build
from shared.domain.facts import ChargeFailed
from shared.domain.model import Profile
from shared.domain.money import Money
from shared.domain.payments import Registration
from shared.services.unit_of_work import apply_event, register_account
from shared.settings import Settings
from tests.integration.queues import queue as queue_of

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def usd(s: str) -> Money:
    return Money.parse(s, "USD")


def failed(cid: str, sub: str = "s1", amount: str = "10.00") -> ChargeFailed:
    return ChargeFailed(f"evt-{cid}", "acc-1", sub, cid, usd(amount), "card_declined")


def lifecycle_messages(svc: Services) -> list[dict[str, object]]:
    queue = queue_of(svc, "subscription-lifecycle")
    return [json.loads(m.content) for m in queue.peek_messages(max_messages=32)]


@pytest.fixture
def svc(make_services: Callable[..., Services]) -> Services:
    s = make_services()
    assert s.test_clock is not None
    s.test_clock.set(NOW)
    register_account(s.uow, "acc-1", Registration(Profile("Contoso", "en", ("ap@contoso.example",)),
                                                       (("s1", "Web"),)))
    return s


def _worker(settings: Settings, ids: list[int], conflicts: Any) -> None:
    """A worker process of its own, as a second Functions instance would be."""
    s = build(settings)
    counter = _ConflictCounter()
    logging.getLogger("shared.services.unit_of_work").addHandler(counter)
    logging.getLogger("shared.services.unit_of_work").setLevel(logging.INFO)
    for i in ids:
        apply_event(s.uow, failed(f"c{i}", sub=f"s{i % 3}", amount="1.00"), "billing.charge.failed")
    conflicts.value += counter.count


class _ConflictCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1  # tenacity logs each retry after a lost race


def test_two_worker_processes_interleaving_events_on_one_account_lose_nothing(svc: Services) -> None:
    ctx = multiprocessing.get_context("fork")
    conflicts = ctx.Value("i", 0)
    workers = [ctx.Process(target=_worker, args=(svc.settings, list(range(n, 60, 2)), conflicts)) for n in (0, 1)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    account = svc.uow.accounts.load("acc-1").account
    assert sorted(account.outstanding) == sorted(f"c{i}" for i in range(60))
    assert account.balance() == {"USD": usd("60.00")}
    assert account.revision == 61  # the registration and sixty events, none lost
    assert {m["type"] for m in lifecycle_messages(svc)} == {"subscription.past_due"}
    assert len(lifecycle_messages(svc)) == 3  # one per subscription that went past due
    print(f"lost races retried: {conflicts.value}")
