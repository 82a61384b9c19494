"""Integration fixtures: the product's services wired to the test Azurite, isolated per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from devstack.sandbox_gateway import start_in_thread
from shared.bootstrap import Services, build
from shared.faults import Faults
from shared.settings import Settings


@pytest.fixture
def make_services(storage_connection_string: str) -> Callable[..., Services]:
    """Services on fresh tables and queues, so tests never see each other's rows."""
    suffix = uuid.uuid4().hex[:10]
    base = replace(
        Settings.from_env({"AzureWebJobsStorage": storage_connection_string, "BILLING_TEST_CLOCK": "enabled",
                           "BILLING_LINK_SIGNING_KEY": "integration-test-key"}),
        billing_table=f"billing{suffix}", system_table=f"system{suffix}", index_table=f"index{suffix}",
        lifecycle_queue=f"lifecycle-{suffix}", email_queue=f"email-{suffix}", sweep_queue=f"sweep-{suffix}",
        sweep_page_queue=f"pages-{suffix}",
    )

    def make(faults: Faults | None = None, **kwargs: object) -> Services:
        return build(base, faults=faults, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="module")
def sandbox(storage_connection_string: str) -> Iterator[str]:
    """The sandbox payment gateway over HTTP, on the test Azurite: its base URL."""
    with start_in_thread(storage_connection_string) as sb:
        yield sb.url
