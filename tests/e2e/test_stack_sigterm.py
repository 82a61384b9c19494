"""SIGTERM stops the local stack and the local Functions host cleanly (issue 26, point 8).

A process manager, `timeout`, a container stop and CI all send SIGTERM, not Ctrl-C. These tests
start their own processes as subprocesses, on free ports of their own (never the session `stack`
fixture), send SIGTERM and check from outside: every process the stack started is gone, every
port it used can be bound again, and the host finishes or hands back the queue messages in
flight - never deletes one unprocessed - and exits 0 within a bounded time.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TypeVar

import pytest
import requests
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from devstack import azurite
from devstack.host import command

ROOT = Path(__file__).resolve().parents[2]
STOP_BOUND = 30.0
T = TypeVar("T")


def wait_for(check: Callable[[], T], what: str, timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


# -- processes and ports, read from /proc -------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[1])


def descendants(root: int) -> set[int]:
    """Every live process below `root` (children, their children, ...)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            parents[int(entry)] = stat[1]
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Output:
    """A child's stdout, read line by line on a thread, so a test can wait for a line."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@contextlib.contextmanager
def started(args: list[str], **kwargs: object) -> Iterator[tuple[subprocess.Popen[str], Output]]:
    """A child process; whatever a failed test leaves running is killed, with its descendants."""
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **kwargs)  # type: ignore[call-overload]
    assert proc.stdout is not None
    out = Output(proc.stdout)
    try:
        yield proc, out
    finally:
        left = descendants(proc.pid)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# -- the stack ------------------------------------------------------------------------------------


def stack_ports(text: str) -> list[int]:
    """Every port the stack printed: its three URLs and Azurite's three ports."""
    ports = [int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", text)]
    storage = re.search(r"blob (\d+), queue (\d+), table (\d+)", text)
    assert storage, text
    return ports + [int(p) for p in storage.groups()]


def test_sigterm_stops_every_process_of_the_stack_and_frees_every_port(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "devstack.stack", "--ports", "free", "--workers", "1",
            "--log-dir", str(tmp_path / "logs")]
    with started(args) as (proc, out):
        wait_for(lambda: proc.poll() is not None or "running;" in out.text, "the stack to start", 120)
        assert proc.poll() is None, out.text
        ports = stack_ports(out.text)
        assert len(ports) == 6, out.text
        assert not any(bindable(p) for p in ports), "every part of the stack listens"
        children = descendants(proc.pid)
        # Azurite, the email endpoint, the sandbox gateway, the functions host, one worker
        assert len(children) >= 5, children

        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(STOP_BOUND)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the stack still runs {STOP_BOUND:.0f} s after SIGTERM:\n{out.text}")
        wait_for(lambda: not any(alive(pid) for pid in children), "the stack's processes to end",
                 max(1.0, STOP_BOUND - (time.monotonic() - sent)))
        took = time.monotonic() - sent
        print(f"\nthe stack stopped {took:.2f} s after SIGTERM ({len(children)} processes)")

        assert code == 0, out.text
        assert "SIGTERM: stopping the local stack" in out.text and out.text.endswith("stopped"), out.text
        assert [p for p in ports if not bindable(p)] == [], "ports still taken after the stop"
        logs = (tmp_path / "logs" / "functions.log").read_text(errors="replace")
        assert "Shutting down gracefully" in logs and "Host stopped" in logs, "the host drained, not killed"


def test_sigterm_while_the_stack_starts_leaves_nothing_running(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "devstack.stack", "--ports", "free", "--log-dir", str(tmp_path / "logs")]
    with started(args) as (proc, out):
        seen: set[int] = set()

        def some_started() -> bool:
            seen.update(descendants(proc.pid))
            return len(seen) >= 2 or proc.poll() is not None

        wait_for(some_started, "the stack to start its first processes", 60)
        seen.update(descendants(proc.pid))
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(STOP_BOUND)
        assert code == 0, out.text
        wait_for(lambda: not any(alive(pid) for pid in seen), "the started processes to end", 10)


# -- the host alone -------------------------------------------------------------------------------

APP = '''
import os
import time
from pathlib import Path

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
MARKS = Path(os.environ["SIGTERM_TEST_MARKS"])


@app.queue_trigger(arg_name="msg", queue_name="{queue}", connection="AzureWebJobsStorage")
def slow_message(msg: func.QueueMessage) -> None:
    seconds = msg.get_body().decode()
    (MARKS / f"started-{{seconds}}").touch()
    time.sleep(float(seconds))
    (MARKS / f"done-{{seconds}}").touch()


@app.route(route="sleep/{{seconds}}", methods=["GET"])
def slow_request(req: func.HttpRequest) -> str:
    seconds = req.route_params["seconds"]
    (MARKS / f"request-{{seconds}}").touch()
    time.sleep(float(seconds))
    return "slept"


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", run_on_startup=True)
def slow_timer(timer: func.TimerRequest) -> None:
    seconds = os.environ.get("SIGTERM_TEST_TIMER_SECONDS", "0")
    (MARKS / f"timer-{{seconds}}").touch()
    time.sleep(float(seconds))
'''

HOST_JSON = """{
  "version": "2.0",
  "extensions": {
    "http": {"routePrefix": "api"},
    "queues": {"messageEncoding": "none", "maxPollingInterval": "00:00:00.200", "visibilityTimeout": "00:00:00"}
  }
}"""


@pytest.fixture
def app(tmp_path: Path) -> tuple[Path, str]:
    queue = f"sigterm-{uuid.uuid4().hex[:12]}"
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "function_app.py").write_text(textwrap.dedent(APP.format(queue=queue)))
    (folder / "host.json").write_text(HOST_JSON)
    (tmp_path / "marks").mkdir()
    return folder, queue


def start_host(folder: Path, connection_string: str, *grace: str, timer_seconds: int = 0
               ) -> tuple[list[str], dict[str, str], int]:
    port = azurite.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AzureWebJobs")}
    env.update(AzureWebJobsStorage=connection_string, SIGTERM_TEST_MARKS=str(folder.parent / "marks"),
               PYTHONUNBUFFERED="1", SIGTERM_TEST_TIMER_SECONDS=str(timer_seconds))
    return [*command(folder, port=port), *grace], env, port


def get_quietly(url: str) -> None:
    with contextlib.suppress(requests.RequestException):
        requests.get(url, timeout=60)


def stop_within(proc: subprocess.Popen[str], out: Output, bound: float) -> float:
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(bound)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the host still runs {bound:.0f} s after SIGTERM:\n{out.text}")
    took = time.monotonic() - sent
    assert code == 0, out.text
    assert "Host stopped" in out.text, out.text
    return took


def test_the_host_alone_exits_0_on_sigterm_within_seconds(app: tuple[Path, str],
                                                          storage_connection_string: str) -> None:
    argv, env, port = start_host(app[0], storage_connection_string)
    with started(argv, env=env) as (proc, out):
        wait_for(lambda: proc.poll() is not None or "Host started" in out.text, "the host to start", 60)
        assert proc.poll() is None, out.text
        took = stop_within(proc, out, 5)
        print(f"\nthe idle host stopped {took:.2f} s after SIGTERM")
        assert bindable(port)


def test_the_host_finishes_or_hands_back_what_is_in_flight(app: tuple[Path, str],
                                                           storage_connection_string: str) -> None:
    """With a grace of 2 s: a message whose function ends within it is completed (deleted); one
    whose function would take a minute is handed back to its queue, not deleted; an HTTP request
    or a timer whose function would take a minute does not hold the host (a timer did, until
    SIGKILL: cancelling its task stopped counting the invocation, so the host waited for its thread)."""
    folder, queue_name = app
    marks = folder.parent / "marks"
    queue = QueueClient.from_connection_string(storage_connection_string, queue_name)
    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()
    argv, env, port = start_host(folder, storage_connection_string, "--grace", "2", timer_seconds=60)
    with started(argv, env=env) as (proc, out):
        wait_for(lambda: proc.poll() is not None or "Host started" in out.text, "the host to start", 60)
        queue.send_message("1")
        queue.send_message("60")
        threading.Thread(target=get_quietly, args=(f"http://127.0.0.1:{port}/api/sleep/60",), daemon=True).start()
        wait_for(lambda: all((marks / m).exists() for m in ("started-1", "started-60", "request-60", "timer-60")),
                 "both messages, the request and the timer to be in flight", 30)

        took = stop_within(proc, out, 15)
        print(f"\nthe busy host stopped {took:.2f} s after SIGTERM (grace 2 s)")
        assert (marks / "done-1").exists(), "the short invocation finished within the grace period"
        assert not (marks / "done-60").exists()
        assert "handed back unfinished" in out.text, out.text

    # The finished message was deleted; the unfinished one is on the queue again, visible at once
    # (visibilityTimeout 0), its first delivery counted.
    left = wait_for(lambda: list(queue.peek_messages(max_messages=32)), "the handed-back message", 5)
    assert [(m.content, m.dequeue_count) for m in left] == [("60", 1)]
    queue.delete_queue()
