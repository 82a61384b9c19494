"""Service tests: every use case run through the real service layer on the in-memory twins
(`tests/fakes/unit_of_work.py`), which the contract suite (`tests/contract/`) holds to the real
adapters. No Azurite, no network: each test takes milliseconds."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.domain.model import Profile
from shared.domain.payments import Registration
from shared.services.unit_of_work import UnitOfWork, register_account
from shared.settings import Settings
from tests.fakes.queues import InMemoryQueues
from tests.fakes.unit_of_work import in_memory_unit_of_work

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CONTACTS = ("ap@contoso.example", "cfo@contoso.example")
ACC = "acc-1"


@pytest.fixture
def uow() -> UnitOfWork:
    return in_memory_unit_of_work(NOW)


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true",
                              "BILLING_LINK_SIGNING_KEY": "service-test-key"})


def register(uow: UnitOfWork, account_id: str = ACC, contacts: tuple[str, ...] = CONTACTS,
             subscriptions: Iterable[tuple[str, str]] = (("s1", "Web"),), **profile: Any) -> None:
    register_account(uow, account_id, Registration(Profile("Contoso", "en", contacts, **profile), tuple(subscriptions)))


def sent(uow: UnitOfWork, role: str) -> list[str]:
    queues = uow.queues
    assert isinstance(queues, InMemoryQueues)
    return queues.texts(role)  # type: ignore[arg-type]


def lifecycle_types(uow: UnitOfWork) -> list[str]:
    return [json.loads(t)["type"] for t in sent(uow, "subscription-lifecycle")]


def handed_off(uow: UnitOfWork) -> list[str]:
    """Keys of the emails handed to the sender (`email-outbox`), each time it was."""
    return [json.loads(t)["key"] for t in sent(uow, "email-outbox")]


def pending_emails(uow: UnitOfWork, account_id: str = ACC) -> list[str]:
    return [r.key for r in uow.accounts.pending_outbox(account_id) if r.kind == "email"]
