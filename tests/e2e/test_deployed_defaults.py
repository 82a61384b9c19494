"""The app as deployed: without `BILLING_TEST_CLOCK=enabled` there is no test clock to move."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devstack.stack import LocalStack, StackPorts


@pytest.fixture(scope="module")
def production_like(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    logs: Path = tmp_path_factory.mktemp("stack-prod-logs")
    with LocalStack(StackPorts.free(), log_dir=logs, extra_env={"BILLING_TEST_CLOCK": ""}) as stack:
        yield stack


def test_the_test_clock_answers_404_unless_enabled(production_like: LocalStack) -> None:
    api = f"{production_like.functions_url}/api"
    for method in ("PUT", "DELETE", "GET"):
        r = requests.request(method, f"{api}/testing/clock", json={"now": "2030-01-01T00:00:00Z"}, timeout=10)
        assert r.status_code == 404, (method, r.text)
        assert r.headers["Content-Type"].startswith("application/problem+json")
    assert requests.get(f"{api}/health", timeout=10).status_code == 200
