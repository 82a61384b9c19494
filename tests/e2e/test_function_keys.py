"""Auth levels, enforced as the Functions host in Azure enforces them (issue 15 point 5).

A second functions host of the same app runs beside the session's stack (same Azurite, email
endpoint and gateway; HTTP only) started with a master key, a function key and the Event Grid
system key. Every route of openapi.yaml (which a unit test ties to the app's own bindings) is
called with no key, a wrong key, the function key, the system key and the master key, by header
and by `code` query parameter: a key that is not enough is a 401 before the function runs,
wherever one is needed; anonymous routes stay open. The session stack itself checks no key, as
`func start` (every other e2e test relies on that).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from devstack import azurite
from devstack.stack import ROOT, LocalStack
from tests.e2e.conftest import new_account

MASTER, FUNCTION, SYSTEM = "master-key-e2e", "function-key-e2e", "eventgrid-key-e2e"
KEYS = {"none": None, "wrong": "not-a-key", "function": FUNCTION, "system": SYSTEM, "master": MASTER}
# Which keys pass each level, as in Azure: a function key never opens an admin route.
PASSES = {"anonymous": set(KEYS), "function": {"function", "master"}, "admin": {"master"},
          "system": {"system", "master"}}
# A body each operation refuses (400), or a target that does not exist (404), so that the master
# key can pass without changing what the session's other tests see.
BODIES: dict[tuple[str, str], Any] = {
    ("/accounts/{accountId}", "PUT"): {"displayName": ""},
    ("/accounts/{accountId}/payment-method", "PUT"): {"token": "not-a-token"},
    ("/accounts/{accountId}/subscriptions/{subscriptionId}/legal-hold", "PUT"): {"hold": "maybe"},
    ("/testing/clock", "PUT"): {"now": "not a time"},
}


@pytest.fixture(scope="module")
def keyed(stack: LocalStack) -> Iterator[str]:
    port = azurite.free_port()
    log_dir: Path = stack.log_dir
    with open(log_dir / "functions-keyed.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devstack.host", "--app-dir", str(ROOT), "--port", str(port), "--no-triggers",
             "--master-key", MASTER, "--function-key", FUNCTION, "--system-key", f"eventgrid_extension={SYSTEM}"],
            cwd=ROOT, env=stack.app_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"the keyed host exited; see {log_dir / 'functions-keyed.log'}"
            try:
                if requests.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "the keyed host did not start"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _level(security: list[dict[str, list[str]]]) -> str:
    names = {name for requirement in security for name in requirement}
    if not names:
        return "anonymous"
    return "admin" if names == {"adminKeyHeader", "adminKeyQuery"} else "function"


def _operations() -> list[tuple[str, str, str]]:
    document = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
    default = document["security"]
    return sorted((path, method.upper(), _level(op.get("security", default)))
                  for path, item in document["paths"].items() for method, op in item.items()
                  if method in {"get", "put", "post", "delete"})


# The host's own endpoints, outside the document: its admin API and the Event Grid webhook.
HOST_ENDPOINTS = [("/admin/functions/no_such_function", "POST", "admin"), ("/admin/host/status", "GET", "admin"),
                  ("/runtime/webhooks/eventgrid?functionName=email_delivery_reports", "POST", "system")]


def _call(base: str, account_id: str, path: str, method: str, key: str | None, by_query: bool) -> int:
    concrete = path.replace("{accountId}", account_id).replace("{subscriptionId}", "s1").replace("{id}", "nope")
    url = base + ("" if concrete.startswith(("/admin", "/runtime")) else "/api") + concrete
    headers = {"aeg-event-type": "Notification"}
    params = {}
    if key is not None:
        if by_query:
            params["code"] = key
        else:
            headers["x-functions-key"] = key
    body = BODIES.get((path, method), [] if "webhooks" in path else {})
    r = requests.request(method, url, headers=headers, params=params, json=body if method != "GET" else None,
                         timeout=30)
    return r.status_code


@pytest.mark.parametrize(("path", "method", "level"), _operations() + HOST_ENDPOINTS)
def test_each_route_refuses_a_missing_or_insufficient_key(
        keyed: str, api: str, path: str, method: str, level: str) -> None:
    account_id = new_account(api)
    for name, key in KEYS.items():
        for by_query in (False, True):
            if key is None and by_query:
                continue
            status = _call(keyed, account_id, path, method, key, by_query)
            how = "code=" if by_query else "x-functions-key"
            if name in PASSES[level]:
                assert status != 401, (path, method, level, name, how, status)
                assert status < 500, (path, method, name, status)
            else:
                assert status == 401, (path, method, level, name, how, status)


def test_the_operator_routes_are_at_admin_level() -> None:
    admin = {(path, method) for path, method, level in _operations() if level == "admin"}
    assert admin == {("/deadletters", "GET"), ("/deadletters/{id}/replay", "POST"),
                     ("/accounts/{accountId}/subscriptions/{subscriptionId}/legal-hold", "PUT"),
                     ("/testing/clock", "GET"), ("/testing/clock", "PUT"), ("/testing/clock", "DELETE")}


def test_the_master_key_reads_dead_letters_and_a_function_key_does_not(keyed: str) -> None:
    refused = requests.get(f"{keyed}/api/deadletters", headers={"x-functions-key": FUNCTION}, timeout=10)
    assert refused.status_code == 401 and refused.content == b""
    r = requests.get(f"{keyed}/api/deadletters", headers={"x-functions-key": MASTER}, timeout=10)
    assert r.status_code == 200 and "items" in r.json()


def test_without_keys_the_local_stack_checks_none(api: str, stack: LocalStack) -> None:
    assert requests.get(f"{api}/deadletters", timeout=10).status_code == 200
    assert requests.get(f"{stack.functions_url}/admin/host/status", timeout=10).status_code == 200
