"""Shared bits of the benchmarks: statistics, a private local stack, storage-log counting, output.

Statistics: `median` is the usual one (the mean of the two middle values for an even count);
`percentile` uses the nearest-rank method (the smallest value with at least p % of the values at
or below it: rank = ceil(p / 100 * n)), so a reported p95 is always a latency that was measured.

Counting storage requests: Azurite writes one access-log line per HTTP request it served (a
`$batch` is one line, whatever it holds). The benchmark brackets the window it measures with two
marker requests, a metadata read of a queue that does not exist (`bench-mark-<hex>`, answered
404), so the window is cut out of the log by position, not by the log's one-second timestamps.
Every line in between is parsed and classified by URL (`classify`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient, UpdateMode
from azure.storage.queue import QueueClient

from devstack.email_endpoint.server import Quota
from devstack.stack import LocalStack, StackPorts

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ACCOUNT_PREFIX = "/devstoreaccount1/"


class BenchError(RuntimeError):
    """The benchmark could not measure what it set out to (the message says why)."""


# -- statistics -----------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    """The middle value; the mean of the two middle values for an even count."""
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: the value at rank ceil(pct/100 * n) of the sorted values (1-based).

    p100 is the maximum and a tiny p is the minimum; the result is always one of the values."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < pct <= 100:
        raise ValueError("pct must be in (0, 100]")
    ordered = sorted(values)
    rank = math.ceil(pct / 100 * len(ordered))
    return float(ordered[max(rank, 1) - 1])


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, min, median, p95 (nearest rank), max and mean of the values."""
    return {
        "n": len(values),
        "min": float(min(values)),
        "median": median(values),
        "p95": percentile(values, 95),
        "max": float(max(values)),
        "mean": float(statistics.fmean(values)),
    }


# -- the private local stack --------------------------------------------------------------------


@dataclass
class BenchStack:
    stack: LocalStack
    workdir: Path
    access_log: Path

    @property
    def api(self) -> str:
        return f"{self.stack.functions_url}/api"

    @property
    def connection_string(self) -> str:
        return self.stack.connection_string

    def host_logs(self) -> list[Path]:
        """The log of every functions host process: the HTTP one and the extra workers."""
        names = [name for name, _ in self.stack.procs if name == "functions" or name.startswith("worker")]
        return [self.stack.log_dir / f"{name}.log" for name in names]

    def log_offsets(self) -> dict[Path, int]:
        return {path: file_size(path) for path in self.host_logs()}


# Timer functions (contract §5 names and the project's own): switched off with the standard
# `AzureWebJobs.<name>.Disabled` app setting unless asked for, so a sweep that happens to fire
# inside a measured window does not count as the work being measured.
TIMER_FUNCTIONS = ("dunning_sweep", "retention_sweep", "reconciliation_sweep")


@contextlib.contextmanager
def private_stack(name: str, *, workers: int = 0, keep_logs: bool = False,
                  timers: bool = False, email_quota: Quota | None = None, otlp: bool = False) -> Iterator[BenchStack]:
    """A local stack of its own on free loopback ports, with Azurite's access log on; stopped at
    the end. Its logs are deleted after a clean run unless `keep_logs`, kept after a failure."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    access_log = workdir / "azurite-access.log"
    env = {} if timers else {f"AzureWebJobs.{fn}.Disabled": "true" for fn in TIMER_FUNCTIONS}
    stack = LocalStack(StackPorts.free(), log_dir=workdir / "logs", storage_access_log=access_log, workers=workers,
                       extra_env=env, email_quota=email_quota, otlp=otlp)
    print(f"starting a private local stack on free ports (logs in {workdir}) ...", flush=True)
    started = time.perf_counter()
    ok = False
    try:
        stack.start()
        print(f"stack ready in {time.perf_counter() - started:.1f} s: functions {stack.functions_url}, "
              f"gateway {stack.gateway_url}", flush=True)
        yield BenchStack(stack, workdir, access_log)
        ok = True
    finally:
        stack.stop()
        if ok and not keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"stack logs kept in {workdir}", file=sys.stderr)


class Api:
    """The functions app's HTTP API, through one keep-alive session; counts the calls it makes."""

    def __init__(self, base: str, timeout: float = 60) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.calls: Counter[str] = Counter()

    def request(self, method: str, path: str, body: Any = None) -> requests.Response:
        self.calls[f"{method} /{path.strip('/').split('/')[0]}"] += 1
        return self.session.request(method, f"{self.base}{path}", json=body, timeout=self.timeout)

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        r = self.request(method, path, body)
        if r.status_code != expect:
            raise BenchError(f"{method} {path} answered {r.status_code} (expected {expect}): {r.text[:500]}")
        return r.json()


def cloudevent(type_: str, data: dict[str, Any], source: str = "/bench") -> str:
    """A structured-mode CloudEvents 1.0 JSON message (contract §1)."""
    return json.dumps({
        "specversion": "1.0",
        "id": f"evt-{uuid.uuid4().hex}",
        "type": type_,
        "source": source,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "data": data,
    }, separators=(",", ":"))


@dataclass
class Drained:
    at: float  # perf_counter when the last queue was seen empty
    polls: int  # queue-length reads made (each one storage request, on `<queue>?comp=metadata`)


def wait_drained(connection_string: str, queues: Sequence[str], timeout: float, interval: float = 0.05,
                 progress: bool = False) -> Drained:
    """Poll the queues' approximate message counts until all are zero, in order.

    Azurite's count includes invisible (in-flight) messages, and the host deletes a message only
    after its function succeeded, so zero means every message was processed (or moved to the
    poison queue, which the callers check for). The product itself never reads queue metadata,
    so these polls are told apart from its requests in the access log by URL."""
    polls = 0
    deadline = time.perf_counter() + timeout
    last_report = time.perf_counter()
    for name in queues:
        with QueueClient.from_connection_string(connection_string, name) as q:
            while True:
                left = q.get_queue_properties().approximate_message_count
                polls += 1
                now = time.perf_counter()
                if left == 0:
                    break
                if now > deadline:
                    raise BenchError(f"{left} messages still on {name} after {timeout:.0f} s")
                if progress and now - last_report > 5:
                    print(f"  ... {left} messages left on {name}", flush=True)
                    last_report = now
                time.sleep(interval)
    return Drained(time.perf_counter(), polls)


# -- counting storage requests --------------------------------------------------------------------

_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[\d.]+" (?P<status>\d{3})')
_ENTITY = re.compile(r"^(?P<table>[A-Za-z][A-Za-z0-9]*)\((?P<keys>.*)\)$")
_ROW_KEY = re.compile(r"RowKey='(?P<rk>[^']*)'")
_QUERY_ROWS = re.compile(r"RowKey ge '(?P<rk>[^']*)'")
_WORD = re.compile(r"^[A-Za-z]{1,20}$")


def _row_kind(m: re.Match[str] | None) -> str:
    """`[kind]` of a row from its RowKey: the part before the first `|` (`event|…` → `[event]`,
    `account` → `[account]`) when that is a short all-letter word; nothing for other keys (ids,
    timestamps, hashes)."""
    if m is None:
        return ""
    prefix = m["rk"].split("|", 1)[0]
    return f"[{prefix}]" if _WORD.match(prefix) else ""


@dataclass(frozen=True)
class StorageRequest:
    method: str
    path: str  # after /devstoreaccount1/, unquoted, without the query
    query: str
    status: int

    @property
    def kind(self) -> tuple[str, str, str]:
        return classify(self)


def parse_line(line: str) -> StorageRequest | None:
    """One access-log line (`127.0.0.1 - - [date] "GET /devstoreaccount1/... HTTP/1.1" 200 -`)."""
    m = _LINE.search(line)
    if not m:
        return None
    target = m["target"]
    path, _, query = target.partition("?")
    path = unquote(path)
    path = path[len(ACCOUNT_PREFIX):] if path.startswith(ACCOUNT_PREFIX) else path.lstrip("/")
    return StorageRequest(m["method"], path, query, int(m["status"]))


def classify(req: StorageRequest) -> tuple[str, str, str]:
    """(service, operation, table or queue) from the URL alone, since the log names no port.

    Table: `$batch` (one entity group transaction), `Tables` (table admin), `t(PK,RK)` (point
    read, or a single-entity write/delete), `t()?$filter` (query), `POST t` (insert). Rows of the
    product's account partitions are told apart by their RowKey prefix: `billing[account]`,
    `billing[event]`, `billing[charge]`, `billing[outbox]`, ...; a query by the prefix it scans.
    Queue: `q/messages` (GET receive or peek, POST send), `q/messages/id` (DELETE, PUT update),
    `q?comp=metadata` (properties, also the markers), `PUT/DELETE q` (admin)."""
    method, path = req.method, req.path
    if path == "$batch":
        return ("table", "batch", "$batch")
    if path == "Tables" or path.startswith("Tables("):
        return ("table", "admin", "Tables")
    if m := _ENTITY.match(path):
        table, keys = m["table"], m["keys"]
        if method == "GET" and not keys:
            return ("table", "query", table + _row_kind(_QUERY_ROWS.search(unquote(req.query))))
        op = "read" if method == "GET" else "delete" if method == "DELETE" else "write"
        return ("table", op, table + _row_kind(_ROW_KEY.search(keys)))
    parts = path.split("/")
    if len(parts) == 1 and method == "POST":
        return ("table", "write", parts[0])
    queue = parts[0]
    if len(parts) == 2 and parts[1] == "messages":
        if method == "GET":
            return ("queue", "peek" if "peekonly=true" in req.query.lower() else "receive", queue)
        if method == "POST":
            return ("queue", "send", queue)
        if method == "DELETE":
            return ("queue", "clear", queue)
    if len(parts) == 3 and parts[1] == "messages":
        return ("queue", "delete" if method == "DELETE" else "update", queue)
    if len(parts) == 1:
        if "comp=metadata" in req.query:
            return ("queue", "properties", queue)
        return ("queue", "admin", queue)
    return ("other", method, path)


class StorageLog:
    """Azurite's access log plus the markers that bracket a measured window in it."""

    def __init__(self, path: Path, connection_string: str) -> None:
        self.path = path
        self.connection_string = connection_string

    def mark(self) -> str:
        """Make one uniquely named request (a 404 on a missing queue) and return its name."""
        name = f"bench-mark-{uuid.uuid4().hex[:16]}"
        with QueueClient.from_connection_string(self.connection_string, name) as q, \
                contextlib.suppress(ResourceNotFoundError):
            q.get_queue_properties()
        return name

    def window(self, start_mark: str, end_mark: str, timeout: float = 10) -> list[StorageRequest]:
        """The requests logged strictly between the two markers."""
        start_key, end_key = f"{ACCOUNT_PREFIX}{start_mark}?", f"{ACCOUNT_PREFIX}{end_mark}?"
        deadline = time.monotonic() + timeout
        while True:
            lines = self.path.read_text(errors="replace").splitlines()
            starts = [i for i, line in enumerate(lines) if start_key in line]
            ends = [i for i, line in enumerate(lines) if end_key in line]
            if starts and ends:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"markers not found in {self.path}: is Azurite writing its access log?")
            time.sleep(0.1)
        found = (parse_line(line) for line in lines[starts[0] + 1:ends[0]])
        return [r for r in found if r is not None]


def count_kinds(requests_: Iterable[StorageRequest]) -> Counter[tuple[str, str, str]]:
    return Counter(r.kind for r in requests_)


def kinds_json(counts: Counter[tuple[str, str, str]]) -> dict[str, int]:
    return {" ".join(k): v for k, v in sorted(counts.items())}


# -- raw Azurite rates, the ceiling ---------------------------------------------------------------


def raw_upsert_rate(connection_string: str, n: int) -> float:
    """Entities/s of a sequential loop of `n` single-entity `upsert_entity` calls (one HTTP request
    each) on a scratch table of the same Azurite; the table is deleted afterwards."""
    name = f"benchscratch{uuid.uuid4().hex[:12]}"
    with TableServiceClient.from_connection_string(connection_string) as service:
        table = service.create_table(name)
        payload = "x" * 200
        table.upsert_entity({"PartitionKey": "warmup", "RowKey": "0", "payload": payload})
        started = time.perf_counter()
        for i in range(n):
            table.upsert_entity({"PartitionKey": f"p{i % 50:02d}", "RowKey": f"{i:08d}", "seq": i,
                                 "payload": payload}, mode=UpdateMode.REPLACE)
        elapsed = time.perf_counter() - started
        service.delete_table(name)
    return n / elapsed


def raw_queue_send_rate(connection_string: str, n: int) -> float:
    """Messages/s of a sequential loop of `n` `send_message` calls on a scratch queue (deleted after)."""
    name = f"bench-scratch-{uuid.uuid4().hex[:12]}"
    with QueueClient.from_connection_string(connection_string, name) as queue:
        queue.create_queue()
        body = json.dumps({"payload": "x" * 300})
        queue.send_message(body)
        started = time.perf_counter()
        for _ in range(n):
            queue.send_message(body)
        elapsed = time.perf_counter() - started
        queue.delete_queue()
    return n / elapsed


# -- the functions host's own log -----------------------------------------------------------------

_EXECUTED = re.compile(r"Executed 'Functions\.(?P<name>[\w.-]+)' \((?P<outcome>\w+), Id=[^,]+, "
                       r"Duration=(?P<ms>\d+)ms\)")


def invocations(offsets: dict[Path, int]) -> dict[str, tuple[list[float], int]]:
    """Per function: the durations (ms) of the successful invocations the host logs show after
    the given byte offsets (see `BenchStack.log_offsets`), and how many failed (the host retries
    a failed queue invocation)."""
    found: dict[str, tuple[list[float], int]] = {}
    for path, offset in offsets.items():
        if not path.exists():
            continue
        with path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
        for m in _EXECUTED.finditer(text):
            durations, failed = found.get(m["name"], ([], 0))
            if m["outcome"] == "Succeeded":
                durations.append(float(m["ms"]))
            else:
                failed += 1
            found[m["name"]] = (durations, failed)
    return found


def warn_unexpected(found: dict[str, tuple[list[float], int]], expected: Iterable[str]) -> list[str]:
    """Functions that ran in the window but are not part of the measured work (a timer sweep)."""
    others = sorted(set(found) - set(expected))
    if others:
        print(f"warning: these functions also ran in the measured window, their storage requests are counted: "
              f"{', '.join(others)}", file=sys.stderr)
    return others


def cpu_seconds(stack: LocalStack) -> dict[str, float]:
    """CPU time (user + system) used so far by each process of the stack, and by this one, from
    /proc (Linux); empty where /proc is not there. Diff two readings to get a window's share."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    used: dict[str, float] = {}
    for name, proc in stack.procs:
        try:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15)
    if used:
        t = os.times()
        used["bench"] = t.user + t.system
    return used


def cpu_diff(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before[k], 3) for k in after if k in before}


def file_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


# -- output ---------------------------------------------------------------------------------------


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews every figure."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_average_at_end": load_average(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def print_table(title: str, rows: Sequence[tuple[str, str, str]]) -> None:
    """An aligned three-column table: figure, value (right-aligned), note."""
    print(f"\n{title}")
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    for label, value, note in rows:
        print(f"  {label:<{w0}}  {value:>{w1}}  {note}".rstrip())


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path
