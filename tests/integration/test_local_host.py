"""The local Functions host (devstack.host), run as `func start` would be: a real subprocess on
a real port, against the session's real Azurite, observed only from outside (HTTP, queues,
the table the sample app writes to, and the host's log). No mocks.

The sample app is copied to a temp dir so that a local.settings.json can be written next to it
(those files are git-ignored everywhere else, and tests must not write into the source tree).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from devstack import azurite
from devstack.host import command
from devstack.host.eventgrid import parse_time
from devstack.host.queues import decode_body
from devstack.host.routing import Matched, NotAllowed, Router, compile_route
from devstack.host.settings import ConfigError, parse_timespan

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = Path(__file__).parent / "sample_app"
T = TypeVar("T")


@dataclass
class RunningHost:
    proc: subprocess.Popen[bytes]
    log_path: Path
    base: str | None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def url(self, path: str) -> str:
        assert self.base is not None
        return self.base + path

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def wait_for(check: Callable[[], T], what: str, timeout: float = 15.0, interval: float = 0.1) -> T:
    """Poll until `check()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def start_host(app_dir: Path, env: dict[str, str], log_path: Path, *, http: bool = True) -> RunningHost:
    port = azurite.free_port() if http else None
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        command(app_dir, port=port, http=http), cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
    )
    log_file.close()
    host = RunningHost(proc, log_path, f"http://127.0.0.1:{port}" if http else None)
    ready = "Host started: http" if http else "Host started without HTTP"

    def started() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"host exited with {proc.returncode}:\n{host.log()}")
        return ready in host.log()

    wait_for(started, "the host to start", timeout=30)
    return host


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("local-host") / "app"
    shutil.copytree(SAMPLE, target, ignore=shutil.ignore_patterns("__pycache__"))
    settings = {
        "IsEncrypted": False,
        "Values": {
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",  # overridden by the environment
            "YEARLY_SCHEDULE": "0 0 0 1 1 *",
            "SAMPLE_FROM_FILE": "read from local.settings.json",
            "SAMPLE_OVERRIDDEN": "from the file",
        },
        "Host": {"CORS": "http://billing.localhost"},
    }
    (target / "local.settings.json").write_text(json.dumps(settings))
    return target


@pytest.fixture(scope="module")
def host_env(storage_connection_string: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AzureWebJobs", "SAMPLE_"))}
    return {**env, "AzureWebJobsStorage": storage_connection_string, "SAMPLE_OVERRIDDEN": "from the environment"}


@pytest.fixture(scope="module")
def host(app_dir: Path, host_env: dict[str, str]) -> Iterator[RunningHost]:
    running = start_host(app_dir, host_env, app_dir.parent / "host.log")
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def records(storage_connection_string: str) -> Iterator[TableClient]:
    client = TableClient.from_connection_string(storage_connection_string, "samplerecords")
    with contextlib.suppress(ResourceExistsError):
        client.create_table()
    yield client
    client.close()


def rows(table: TableClient, partition: str) -> list[dict[str, Any]]:
    return [dict(e) for e in table.query_entities("PartitionKey eq @p", parameters={"p": partition})]


def queue(conn: str, name: str) -> QueueClient:
    client = QueueClient.from_connection_string(conn, name)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client


def message_count(client: QueueClient) -> int:
    return int(client.get_queue_properties().approximate_message_count)


# -- pure parts: route templates, TimeSpans, message decoding --------------------------------------


def test_route_precedence_and_constraints() -> None:
    router: Router[str] = Router()
    for template, methods in [
        ("accounts/{id}", ["GET"]),
        ("accounts/{id}", ["PUT"]),
        ("accounts/search", ["GET"]),
        ("accounts/{id:int}/items", None),
        ("files/{*path}", None),
        ("greet/{name?}", ["GET"]),
        ("reports/{year}.{ext}", ["GET"]),
    ]:
        router.add(compile_route(template, methods, template))

    def target(path: str, method: str = "GET") -> tuple[str, dict[str, str]] | None:
        found = router.resolve(path, method)
        return (found.route.target, found.params) if isinstance(found, Matched) else None

    assert target("/accounts/search") == ("accounts/search", {})
    assert target("/ACCOUNTS/Search/") == ("accounts/search", {})
    assert target("/accounts/Ab1") == ("accounts/{id}", {"id": "Ab1"})
    assert target("/accounts/42/items") == ("accounts/{id:int}/items", {"id": "42"})
    assert target("/accounts/x/items") is None
    assert target("/accounts/٤٢/items") is None  # Arabic-Indic 42 is not an int to ASP.NET
    assert target("/accounts/Ab1\n") == ("accounts/{id}", {"id": "Ab1\n"})  # a final newline is kept, not dropped
    assert target("/files") == ("files/{*path}", {})
    assert target("/files/a/b.txt") == ("files/{*path}", {"path": "a/b.txt"})
    assert target("/greet") == ("greet/{name?}", {})
    assert target("/reports/2026.csv") == ("reports/{year}.{ext}", {"year": "2026", "ext": "csv"})
    assert target("/accounts/Ab1", "PUT") == ("accounts/{id}", {"id": "Ab1"})
    assert router.resolve("/accounts/1", "POST") == NotAllowed(("GET", "PUT"))
    assert router.resolve("/nothing", "GET") is None


def test_event_grid_times_in_ascii_digits_only() -> None:
    assert parse_time("2026-12-01T09:00:00.1234567Z") == datetime(2026, 12, 1, 9, 0, 0, 123456, tzinfo=UTC)
    for bad in ("２０２６-12-01T09:00:00Z", "2026-12-01T09:00:00.12345６Z"):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_timespans_and_message_encodings() -> None:
    assert parse_timespan("00:00:05") == 5
    assert parse_timespan("1.02:00:00.5") == 86400 + 7200 + 0.5
    for bad in ("5s", "００:00:05", "00:00:0٥"):
        with pytest.raises(ConfigError):
            parse_timespan(bad)
    assert decode_body("aGVsbG8=", "base64") == b"hello"
    assert decode_body("not base64!", "none") == b"not base64!"
    with pytest.raises(ValueError, match="base64"):
        decode_body("not base64!", "base64")


def test_unsupported_binding_fails_at_startup(tmp_path: Path) -> None:
    (tmp_path / "function_app.py").write_text(
        "import azure.functions as func\n"
        "app = func.FunctionApp()\n"
        "@app.queue_trigger(arg_name='msg', queue_name='in', connection='AzureWebJobsStorage')\n"
        "@app.queue_output(arg_name='out', queue_name='out', connection='AzureWebJobsStorage')\n"
        "def forward(msg: func.QueueMessage, out) -> None: ...\n"
    )
    done = subprocess.run(command(tmp_path, port=0), cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "binding 'out' of type 'queue' is not supported" in done.stderr


# -- HTTP --------------------------------------------------------------------------------------------


def test_startup_lists_every_function(host: RunningHost) -> None:
    log = host.log()
    assert f"get_account: [GET] {host.url('/api/accounts/{accountId}')}" in log
    assert "record_item: queueTrigger (queue: items, connection: AzureWebJobsStorage)" in log
    assert "tick: timerTrigger (schedule: * * * * * *)" in log
    assert "yearly: timerTrigger (schedule: 0 0 0 1 1 *)" in log  # %YEARLY_SCHEDULE% resolved
    assert "on_event: eventGridTrigger" in log


def test_root_page(host: RunningHost) -> None:
    r = requests.get(host.url("/"), timeout=5)
    assert r.status_code == 200
    assert "local Functions host" in r.text
    assert requests.head(host.url("/"), timeout=5).status_code == 200


def test_cors_from_local_settings(host: RunningHost) -> None:
    origin = {"Origin": "http://billing.localhost"}
    preflight = requests.options(
        host.url("/api/echo"), headers={**origin, "Access-Control-Request-Method": "POST"}, timeout=5
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "http://billing.localhost"
    allowed = requests.get(host.url("/api/accounts/a1"), headers=origin, timeout=5)
    assert allowed.headers["access-control-allow-origin"] == "http://billing.localhost"
    other = requests.get(host.url("/api/accounts/a1"), headers={"Origin": "http://evil.example"}, timeout=5)
    assert "access-control-allow-origin" not in other.headers


def test_route_param_and_query_param(host: RunningHost) -> None:
    r = requests.get(host.url("/api/accounts/acc-42"), params={"verbose": "yes"}, timeout=5)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"accountId": "acc-42", "verbose": "yes"}


def test_same_route_different_methods(host: RunningHost) -> None:
    put = requests.put(host.url("/api/accounts/acc-9"), data=b"{}", timeout=5)
    assert (put.status_code, put.headers["x-account"], put.content) == (204, "acc-9", b"")
    assert requests.get(host.url("/api/accounts/acc-9"), timeout=5).json()["accountId"] == "acc-9"


def test_literal_segment_wins_and_nested_routes(host: RunningHost) -> None:
    assert requests.get(host.url("/api/accounts/search"), timeout=5).text == "search"
    timeline = requests.get(host.url("/api/accounts/acc-7/timeline"), timeout=5)
    assert (timeline.status_code, timeline.text) == (200, "timeline of acc-7")
    assert timeline.headers["content-type"] == "text/plain; charset=utf-8"
    assert requests.get(host.url("/api/files/a/b/c.txt"), timeout=5).text == "path=a/b/c.txt"
    assert requests.get(host.url("/api/items/12"), timeout=5).text == "number 12"
    assert requests.get(host.url("/api/items/twelve"), timeout=5).status_code == 404
    assert requests.get(host.url("/api/greet"), timeout=5).text == "hello nobody"  # async function
    assert requests.get(host.url("/api/greet/ana"), timeout=5).text == "hello ana"


def test_routes_on_the_segments_as_sent_and_decodes_the_values(host: RunningHost) -> None:
    # `%2F` was decoded before routing: `accounts/acc-x%2F` acted on `acc-x`, and
    # `accounts/a%2Fb/timeline` was no route at all. The Functions host routes on the segments
    # the client wrote and hands the function the decoded value, for it to validate.
    def get(path: str) -> requests.Response:
        return requests.get(host.url(path), timeout=5)

    assert get("/api/accounts/acc-x%2F").json()["accountId"] == "acc-x/"
    assert get("/api/accounts/acc-x%2f").json()["accountId"] == "acc-x/"
    assert get("/api/accounts/a%2Fb%2Ftimeline").json()["accountId"] == "a/b/timeline"
    assert get("/api/accounts/a%2Fb/timeline").text == "timeline of a/b"
    assert get("/api/accounts/100%25").json()["accountId"] == "100%"
    assert get("/api/accounts/a%252Fb").json()["accountId"] == "a%2Fb"  # decoded once, never twice
    assert get("/api/accounts/caf%C3%A9%20x").json()["accountId"] == "café x"
    assert get("/api/%61ccounts/acc-1").json()["accountId"] == "acc-1"  # a literal segment, decoded
    assert get("/api/files/a%2Fb/c.txt").text == "path=a/b/c.txt"
    assert get("/api/items/1%32").text == "number 12"  # constraints see the decoded value
    put = requests.put(host.url("/api/accounts/acc-x%2F"), data=b"{}", timeout=5)
    assert put.headers["x-account"] == "acc-x/"
    assert requests.post(host.url("/admin/functions/record_item%2F"), json={"input": ""},
                         timeout=5).status_code == 404


def test_post_echo(host: RunningHost) -> None:
    r = requests.post(host.url("/api/echo?x=1"), data=b'{"a": 1}', headers={"Content-Type": "application/json"})
    assert r.status_code == 201
    assert r.content == b'{"a": 1}'
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-echo-method"] == "POST"
    assert r.headers["x-echo-url"] == host.url("/api/echo?x=1")


def test_wrong_method_is_405_with_allow(host: RunningHost) -> None:
    for method, path, allow in [
        ("GET", "/api/echo", "POST"),
        ("TRACE", "/api/echo", "POST"),
        ("BREW", "/api/accounts/a1", "GET, PUT"),
        ("POST", "/api/accounts/a1/timeline", "DELETE, GET"),
        ("GET", "/admin/functions/record_item", "POST"),
    ]:
        r = requests.request(method, host.url(path), timeout=5)
        assert (r.status_code, r.headers.get("allow")) == (405, allow), (method, path)


def test_unknown_route_is_404(host: RunningHost) -> None:
    assert requests.get(host.url("/api/no/such/route"), timeout=5).status_code == 404
    assert requests.get(host.url("/accounts/a1"), timeout=5).status_code == 404  # outside the prefix


def test_exception_is_a_generic_500_and_logged(host: RunningHost) -> None:
    r = requests.get(host.url("/api/crash"), timeout=5)
    assert r.status_code == 500
    assert "secret" not in r.text
    wait_for(lambda: "RuntimeError: secret detail" in host.log(), "the traceback in the log")


def test_context_and_one_log_line_per_invocation(host: RunningHost) -> None:
    body = requests.get(host.url("/api/whoami"), timeout=5).json()
    assert body["function"] == "whoami"
    lines = wait_for(
        lambda: [line for line in host.log().splitlines() if body["invocation"] in line],
        "the invocation's log line",
    )
    assert len(lines) == 1
    assert f"Executed 'Functions.whoami' (Succeeded, Id={body['invocation']}, Duration=" in lines[0]


def test_local_settings_values_reach_environ_and_environment_wins(host: RunningHost) -> None:
    assert requests.get(host.url("/api/env/SAMPLE_FROM_FILE"), timeout=5).text == "read from local.settings.json"
    assert requests.get(host.url("/api/env/SAMPLE_OVERRIDDEN"), timeout=5).text == "from the environment"
    assert requests.get(host.url("/api/env/FUNCTIONS_WORKER_RUNTIME"), timeout=5).text == "python"


# -- queues ------------------------------------------------------------------------------------------


def test_queue_messages_are_processed_and_deleted(
    host: RunningHost, records: TableClient, storage_connection_string: str
) -> None:
    items = queue(storage_connection_string, "items")
    bodies = {f"order-{i}" for i in range(5)}
    for body in bodies:
        items.send_message(body)

    def seen() -> bool:
        return bodies <= {r["body"] for r in rows(records, "items")}

    wait_for(seen, "the queue function to record every message")
    got = [r for r in rows(records, "items") if r["body"] in bodies]
    assert sorted(r["body"] for r in got) == sorted(bodies)  # once each
    assert all(r["dequeue_count"] == 1 for r in got)
    wait_for(lambda: message_count(items) == 0, "the messages to be deleted")


def test_failing_message_is_retried_then_poisoned_and_drained(
    host: RunningHost, records: TableClient, storage_connection_string: str
) -> None:
    items = queue(storage_connection_string, "items")
    sent = items.send_message("boom")
    wait_for(lambda: any(r["body"] == "boom" for r in rows(records, "poison")), "the poison function", timeout=20)
    attempts = sorted(r["dequeue_count"] for r in rows(records, "items") if r["RowKey"].startswith(sent.id))
    assert attempts == [1, 2, 3]  # maxDequeueCount in the sample host.json
    wait_for(lambda: message_count(items) == 0, "the message to leave the queue")
    poison = queue(storage_connection_string, "items-poison")
    wait_for(lambda: message_count(poison) == 0, "the poison queue to be drained")
    assert f"Queue items: message {sent.id} failed 3 times; moved to items-poison" in host.log()


# -- admin -------------------------------------------------------------------------------------------


def test_admin_runs_queue_function(host: RunningHost, records: TableClient) -> None:
    r = requests.post(host.url("/admin/functions/record_item"), json={"input": "from admin"}, timeout=5)
    assert r.status_code == 202
    wait_for(lambda: any(x["body"] == "from admin" for x in rows(records, "items")), "the manual run")


def test_admin_runs_timer_function(host: RunningHost, records: TableClient) -> None:
    r = requests.post(host.url("/admin/functions/yearly"), json={"input": ""}, timeout=5)
    assert r.status_code == 202
    runs = wait_for(lambda: rows(records, "yearly"), "the manual timer run")
    assert runs[0]["past_due"] is False


def test_admin_refuses_unknown_and_http_functions(host: RunningHost) -> None:
    assert requests.post(host.url("/admin/functions/nope"), json={"input": ""}, timeout=5).status_code == 404
    assert requests.post(host.url("/admin/functions/echo"), json={"input": ""}, timeout=5).status_code == 400


@pytest.mark.parametrize(("name", "body"), [
    ("record_item", b"[" * 100_000 + b"]" * 100_000),
    ("record_item", b'{"input": ' + b"9" * 5_000 + b"}"),
    ("on_event", b'{"input": "' + b"[" * 100_000 + b'"}'),  # the event in `input` is JSON too
])
def test_admin_refuses_unreadable_json_with_400(host: RunningHost, name: str, body: bytes) -> None:
    assert requests.post(host.url(f"/admin/functions/{name}"), data=body, timeout=10).status_code == 400


# -- timers ------------------------------------------------------------------------------------------


def test_timer_fires_every_second(host: RunningHost, records: TableClient) -> None:
    fired = wait_for(lambda: len(rows(records, "timer")) >= 2 and rows(records, "timer"), "two timer runs", 10)
    assert all(r["past_due"] is False for r in fired)
    assert "Timer lock tick acquired" in host.log()


# -- Event Grid --------------------------------------------------------------------------------------


def _event(event_id: str, subject: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.EventGrid/topics/billing",
        "subject": subject,
        "eventType": "Billing.PaymentFailed",
        "eventTime": "2026-01-02T03:04:05.1234567Z",
        "data": {"accountId": subject.rsplit("/", 1)[-1], "amount": "12.50"},
        "dataVersion": "1.0",
    }


def test_eventgrid_delivers_each_event(host: RunningHost, records: TableClient) -> None:
    url = host.url("/runtime/webhooks/eventgrid?functionName=on_event")
    events = [_event("ev-1", "accounts/a1"), _event("ev-2", "accounts/a2")]
    r = requests.post(url, json=events, headers={"aeg-event-type": "Notification"}, timeout=10)
    assert r.status_code == 200
    got = {row["RowKey"]: row for row in rows(records, "events")}
    assert {"ev-1", "ev-2"} <= set(got)
    assert got["ev-1"]["event_type"] == "Billing.PaymentFailed"
    assert got["ev-2"]["subject"] == "accounts/a2"
    assert json.loads(got["ev-1"]["data"]) == {"accountId": "a1", "amount": "12.50"}
    assert got["ev-1"]["event_time"] == "2026-01-02T03:04:05.123456+00:00"


def test_eventgrid_subscription_validation(host: RunningHost) -> None:
    body = [
        {"id": "v", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": {"validationCode": "c0de"}}
    ]
    r = requests.post(
        host.url("/runtime/webhooks/eventgrid?functionName=on_event"),
        json=body,
        headers={"aeg-event-type": "SubscriptionValidation"},
        timeout=5,
    )
    assert (r.status_code, r.json()) == (200, {"validationResponse": "c0de"})


def test_eventgrid_errors(host: RunningHost) -> None:
    notify = {"aeg-event-type": "Notification"}
    url = host.url("/runtime/webhooks/eventgrid?functionName=on_event")
    failing = requests.post(url, json=[_event("ev-3", "accounts/a3"), _event("ev-4", "fail")], headers=notify)
    assert failing.status_code == 500
    unknown = host.url("/runtime/webhooks/eventgrid?functionName=nope")
    assert requests.post(unknown, json=[_event("ev-5", "x")], headers=notify, timeout=5).status_code == 404
    assert requests.post(url, data=b"{not json", headers=notify, timeout=5).status_code == 400


@pytest.mark.parametrize("bad", [{"eventTime": "yesterday"}, {"eventTime": 20261201},
                                 {"eventTime": "２０２６-01-02T03:04:05Z"}])
def test_eventgrid_skips_an_unreadable_event_and_delivers_the_rest(host: RunningHost, records: TableClient,
                                                                   bad: dict[str, Any]) -> None:
    # One event Event Grid would never publish (its time cannot be read) used to refuse the whole
    # batch with a 400, so the valid events in it were never delivered.
    tag = uuid.uuid4().hex[:8]
    batch = [{**_event(f"bad-{tag}", "accounts/b1"), **bad}, _event(f"ok1-{tag}", "accounts/b2"), 42,
             _event(f"ok2-{tag}", "accounts/b3")]
    r = requests.post(host.url("/runtime/webhooks/eventgrid?functionName=on_event"), json=batch,
                      headers={"aeg-event-type": "Notification"}, timeout=10)
    assert r.status_code == 200, r.text
    got = {row["RowKey"] for row in rows(records, "events")}
    assert {f"ok1-{tag}", f"ok2-{tag}"} <= got and f"bad-{tag}" not in got
    log = wait_for(lambda: host.log() if f"bad-{tag}" in host.log() else "", "the skipped event's log line")
    assert f"Event Grid event 'bad-{tag}' (item 0) skipped" in log
    assert "Event Grid batch item 2 skipped: not an event object" in log


def test_eventgrid_refuses_a_body_that_holds_no_event_object(host: RunningHost) -> None:
    url = host.url("/runtime/webhooks/eventgrid?functionName=on_event")
    for body in ([1, "two", None], "text", 7):
        r = requests.post(url, json=body, headers={"aeg-event-type": "Notification"}, timeout=5)
        assert r.status_code == 400, body


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'[{"id": ' + b"9" * 5_000 + b"}]", b"[\xff]"])
@pytest.mark.parametrize("kind", ["Notification", "SubscriptionValidation"])
def test_eventgrid_refuses_unreadable_json_with_400(host: RunningHost, body: bytes, kind: str) -> None:
    # Deep nesting and huge numbers are not JSONDecodeErrors: they were a 500, which Event Grid retries
    url = host.url("/runtime/webhooks/eventgrid?functionName=on_event")
    r = requests.post(url, data=body, headers={"aeg-event-type": kind}, timeout=10)
    assert (r.status_code, r.text.split(":")[0]) == (400, "body is not JSON")


def test_eventgrid_validation_echoes_only_a_string_code(host: RunningHost) -> None:
    body = [{"id": "v", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
             "data": {"validationCode": {"not": "a code"}}}]
    r = requests.post(host.url("/runtime/webhooks/eventgrid?functionName=on_event"), json=body,
                      headers={"aeg-event-type": "SubscriptionValidation"}, timeout=5)
    assert r.status_code == 400 and "validationCode" in r.text


# -- a second, trigger-only worker on the same storage -------------------------------------------------


def test_trigger_only_worker_shares_the_work_and_never_doubles_a_timer(
    app_dir: Path, host: RunningHost, host_env: dict[str, str], records: TableClient, storage_connection_string: str
) -> None:
    worker = start_host(app_dir, host_env, app_dir.parent / "worker.log", http=False)
    try:
        items = queue(storage_connection_string, "items")
        bodies = {f"shared-{i}" for i in range(12)}
        for body in bodies:
            items.send_message(body)
        wait_for(lambda: bodies <= {r["body"] for r in rows(records, "items")}, "both hosts to drain the queue")
        started = time.time()
        time.sleep(2.5)  # several timer occurrences while both processes run
    finally:
        assert worker.stop() == 0
    log = worker.log()
    assert "Host stopped" in log
    assert "http://" not in log  # no HTTP in a --no-http worker
    assert "Timer lock tick acquired" not in log  # the first host holds it
    recent = [r for r in rows(records, "timer") if datetime.fromisoformat(r["scheduled"]).timestamp() >= started]
    assert recent, "the timer kept firing"
    doubled = [s for s, n in Counter(r["scheduled"] for r in recent).items() if n > 1]
    assert doubled == []
