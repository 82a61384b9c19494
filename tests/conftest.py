"""Fixtures shared by every layer of tests: a real Azurite per test session; and how the tests are
shared out between pytest-xdist workers when run as `scripts/test.sh` runs them (`-n N --dist loadgroup`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack import azurite

SHARED_STACK_GROUP = "e2e-stack"
"""The xdist group of every e2e test on the session `stack` (tests/e2e/conftest.py), in one worker."""


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (its own hook of the same name)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every test an xdist group, which `--dist loadgroup` runs whole in one worker, in file order.

    - Every e2e test on the session `stack` fixture is in one group: one stack per run, as without
      xdist, and test_zz_no_card_numbers_left.py, last in file order, runs after every other test of
      that stack. (Each worker's session fixtures are its own: a test of this stack in another group
      would start a second stack, which only its own finaliser's scan would cover.)
    - Every other test is grouped by its file, so a module-scoped fixture (a stack of its own, a
      sandbox gateway) starts once, as `--dist loadfile` would.
    Without xdist, or without `--dist loadgroup`, the marks change nothing."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_group(item)))


def _group(item: pytest.Item) -> str:
    path = item.nodeid.split("::", 1)[0]
    module = getattr(item, "module", None)
    on_shared_stack = (path.startswith("tests/e2e/") and "stack" in getattr(item, "fixturenames", ())
                       and not hasattr(module, "stack"))  # a module's own `stack` fixture is another stack
    return SHARED_STACK_GROUP if on_shared_stack else path


@pytest.fixture(scope="session")
def azurite_endpoints() -> Iterator[azurite.AzuriteEndpoints]:
    """A real, in-memory Azurite on free ports, started once per test session (per xdist worker)."""
    with azurite.running() as endpoints:
        yield endpoints


@pytest.fixture(scope="session")
def storage_connection_string(azurite_endpoints: azurite.AzuriteEndpoints) -> str:
    return azurite_endpoints.connection_string
