"""Fixtures shared by every layer of tests: a real Azurite per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack import azurite


@pytest.fixture(scope="session")
def azurite_endpoints() -> Iterator[azurite.AzuriteEndpoints]:
    """A real, in-memory Azurite on free ports, started once per test session."""
    with azurite.running() as endpoints:
        yield endpoints


@pytest.fixture(scope="session")
def storage_connection_string(azurite_endpoints: azurite.AzuriteEndpoints) -> str:
    return azurite_endpoints.connection_string
