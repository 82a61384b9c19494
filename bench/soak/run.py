"""The soak's driver: a private local stack with several worker processes on one Azurite whose
data lives on disk (queue leases of 45 s instead of 5 minutes), the plan played against it with
the clock jumping forward, faults injected while it runs, then everything observable collected
for the checker.

The clock walks the days that matter (`checkpoints`): every step of contract §3 for every cohort.
At each: the test clock is set (and left a moment, since every process reads it at most once a
second); if a cohort starts that day, its shuffled messages go on `payment-events` from a thread
while the racing card updates go through the API from another and the dunning and retention
sweeps run for the earlier cohorts; then everything is drained (every queue but the lifecycle
one empty) and, on a day with faults or events, the sweeps run a second time (as the next timer
tick would, on the same frozen clock) and everything is drained again. The timers stay on, so a
timer tick may add a sweep anywhere.

With `gateway="stripe"` the app charges through the Stripe-compatible sandbox
(`LocalStack(gateway="stripe")`), and the card charges observed are its PaymentIntents
(`GET /payment_intents`, Stripe's objects), which the checker reads.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from azure.core.exceptions import AzureError
from azure.storage.queue import QueueClient, QueueServiceClient

from bench.soak.faults import Injector
from bench.soak.model import LADDER_DAYS, PAUSE, paused_ladder_days
from bench.soak.plan import COHORT_DAYS, FINAL_DAY, AccountPlan, Message, Plan, at_day
from devstack.stack import LocalStack, StackPorts

LIFECYCLE_QUEUE = "subscription-lifecycle"
SWEEPS = ("dunning_sweep", "retention_sweep")
# A message a killed worker held, or whose delete Azurite's restart lost, comes back when its
# lease runs out: 5 minutes in the Functions host; 45 s here (above the product's 30 s redelivery
# grace; still renewed every 15 s while the function runs), so the soak does not spend its time
# waiting.
LEASE_SECONDS = 45


def checkpoints() -> list[int]:
    days = {d + step for d in COHORT_DAYS for step in LADDER_DAYS if d + step <= FINAL_DAY}
    days |= {COHORT_DAYS[0] + step for step in paused_ladder_days() if COHORT_DAYS[0] + step <= FINAL_DAY}
    return sorted(days | {FINAL_DAY})


@dataclass
class Observed:
    views: dict[str, dict[str, Any]]
    charges: list[dict[str, Any]]
    """`http`: the sandbox gateway's `GET /charges`; `stripe`: the Stripe sandbox's PaymentIntents."""
    emails: list[dict[str, Any]]
    lifecycle: list[dict[str, Any]]  # every message received, repeats included
    deadletters: list[dict[str, Any]]
    replayed: int
    gateway: str = "http"


QUOTA_COHORT = 2
"""The cohort whose day runs under an email quota at the endpoint (the app is not told: Retry-After)."""
QUOTA_PER_MINUTE = 60


@dataclass
class Soak:
    plan: Plan
    stack: LocalStack
    faults: Injector
    full: bool
    log: Callable[[str], None] = print
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    send_retries: int = 0
    card_updates: dict[str, int] = field(default_factory=dict)  # account -> PUT attempts
    busy_seconds: float = 0.0
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def api(self) -> str:
        return f"{self.stack.functions_url}/api"

    # -- the run -------------------------------------------------------------------------------

    def play(self) -> None:
        self.set_clock(0)
        self.register()
        cohort_of_day = {d: k for k, d in enumerate(COHORT_DAYS)}
        for day in checkpoints():
            started = time.perf_counter()
            self.set_clock(day)
            cohort = cohort_of_day.get(day)
            workers = []
            quota = cohort == QUOTA_COHORT
            if quota:  # throttled is not failed: every email of the day still goes out, once
                self.faults.email_quota(QUOTA_PER_MINUTE)
            if cohort is not None:
                workers += [self._thread(self.send, cohort), self._thread(self.race_cards, cohort)]
            faulted = self.day_faults(day, cohort) or cohort is not None
            if day == COHORT_DAYS[0] + PAUSE[0]:
                self.pause_dunning()
            self.run_sweeps()
            for t in workers:
                t.join()
            self.drain()
            if faulted:  # the next timer tick, on the same frozen clock, picks up what a fault stopped
                self.run_sweeps()
                self.drain()
            if quota:
                self.faults.email_quota(None)
            self.collect_lifecycle()
            self.busy_seconds += time.perf_counter() - started
            sent = f", cohort {cohort}: {len(self.plan.messages[cohort])} messages" if cohort is not None else ""
            self.log(f"day {day:3d}{sent}: done in {time.perf_counter() - started:.1f} s")

    @staticmethod
    def _thread(fn: Callable[[int], None], cohort: int) -> threading.Thread:
        t = threading.Thread(target=fn, args=(cohort,), daemon=True)
        t.start()
        return t

    def day_faults(self, day: int, cohort: int | None) -> bool:
        """Faults that hit the sweeps and the card charges of a day: gateway errors on the day-1
        retries of a cohort (and on the racing card updates), timeouts after a charge. True when
        one was injected."""
        before = sum(self.faults.counts.values())
        if day - 1 in COHORT_DAYS:
            k = COHORT_DAYS.index(day - 1)
            if k == 0 or self.full:
                self.faults.gateway_timeout_after_charge(2)
            if k == 1 or self.full:
                self.faults.gateway(500, 4)
        if cohort is not None and (cohort == 2 or self.full):
            self.faults.gateway(429, 4)
        return sum(self.faults.counts.values()) > before

    def send_faults(self, cohort: int) -> dict[int, Callable[[], None]]:
        """Faults while a cohort's messages are sent, keyed by the message index they fire at."""
        n = len(self.plan.messages[cohort])
        out: dict[int, Callable[[], None]] = {}
        if cohort == 0 or self.full:
            out[n // 10] = lambda: self.faults.email(429, 15)
            out[n * 2 // 5] = lambda: self.faults.worker_kill(f"worker{cohort % 2 + 1}")
        if cohort == 1 or (self.full and cohort == 3):
            out[n // 10 + 1] = lambda: self.faults.email(500, 15)
            out[n // 2] = self.faults.azurite_restart
        return out

    # -- the parts -------------------------------------------------------------------------------

    def set_clock(self, day: int) -> None:
        body = {"now": at_day(day).isoformat().replace("+00:00", "Z")}
        self._http("PUT", "/testing/clock", body, expect=(200,))
        time.sleep(1.2)  # every process reads the stored clock at most once a second

    def register(self) -> None:
        started = time.perf_counter()
        errors: list[str] = []

        def one(account: AccountPlan) -> None:
            r = self._http("PUT", f"/accounts/{account.account_id}", account.registration(), expect=(200,))
            if r is None:
                errors.append(account.account_id)

        _parallel(one, self.plan.accounts, 4)
        if errors:
            raise RuntimeError(f"registration failed for {len(errors)} accounts, e.g. {errors[:3]}")
        self.log(f"registered {len(self.plan.accounts)} accounts in {time.perf_counter() - started:.1f} s")

    def send(self, cohort: int) -> None:
        faults = self.send_faults(cohort)
        fired: list[threading.Thread] = []
        with QueueClient.from_connection_string(self.stack.connection_string, "payment-events") as queue:
            for i, message in enumerate(self.plan.messages[cohort]):
                if i in faults:
                    fired.append(threading.Thread(target=faults[i], daemon=True))
                    fired[-1].start()
                self._send_one(queue, message)
        for t in fired:
            t.join()

    def _send_one(self, queue: QueueClient, message: Message) -> None:
        """A producer that retries until storage took the message (a repeat is harmless: ids)."""
        for attempt in range(60):
            try:
                queue.send_message(message.text)
                return
            except AzureError:
                self.send_retries += 1
                time.sleep(min(0.2 * 2**attempt, 2))
        raise RuntimeError("payment-events refused a message for two minutes")

    def race_cards(self, cohort: int) -> None:
        """Save a card that pays through the API while the cohort's events are on the queue; a
        5xx answer is retried as a client would (the card and the settlement are idempotent)."""
        accounts = [a for a in self.plan.cohort_accounts(cohort) if a.races_card]
        time.sleep(0.5)

        def one(account: AccountPlan) -> None:
            for attempt in range(1, 31):
                r = self._http("PUT", f"/accounts/{account.account_id}/payment-method", {"token": "tok_visa"},
                               expect=(200,), quiet=True)
                self.card_updates[account.account_id] = attempt
                if r is not None:
                    return
                time.sleep(1)
            self.log(f"warning: the card update of {account.account_id} never answered 200")

        _parallel(one, accounts, 2)

    def pause_dunning(self) -> None:
        """The first cohort's pausing accounts pause their dunning until day + `PAUSE[1]`."""
        until = at_day(COHORT_DAYS[0] + PAUSE[1]).isoformat()

        def one(account: AccountPlan) -> None:
            self._http("PUT", f"/accounts/{account.account_id}/dunning", {"pausedUntil": until}, expect=(200,))

        _parallel(one, [a for a in self.plan.accounts if a.pauses], 16)

    def run_sweeps(self) -> None:
        """Run both sweeps through the admin endpoint and wait until the host logged each done."""
        host_log = self.stack.log_dir / "functions.log"
        for name in SWEEPS:
            before = _count_executed(host_log, name)
            self._http("POST", f"/admin/functions/{name}", {"input": ""}, expect=(202,), admin=True)
            deadline = time.monotonic() + 600
            while _count_executed(host_log, name) <= before:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not finish within 10 minutes")
                time.sleep(0.2)

    def drain(self, timeout: float = 1800) -> None:
        """Wait until every queue but the lifecycle one is empty, twice in a row half a second
        apart (Azurite counts in-flight messages too; a poison queue is drained into the
        dead-letter list by its own function)."""
        deadline = time.monotonic() + timeout
        empty_in_a_row = 0
        while empty_in_a_row < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("the queues did not drain")
            try:
                with QueueServiceClient.from_connection_string(self.stack.connection_string) as service:
                    names = [q.name for q in service.list_queues() if q.name != LIFECYCLE_QUEUE]
                    left = sum(service.get_queue_client(n).get_queue_properties().approximate_message_count
                               for n in names)
            except AzureError:
                left = -1
            empty_in_a_row = empty_in_a_row + 1 if left == 0 else 0
            time.sleep(0.5)

    def collect_lifecycle(self) -> None:
        with QueueClient.from_connection_string(self.stack.connection_string, LIFECYCLE_QUEUE) as queue:
            while True:
                batch = list(queue.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=60))
                if not batch:
                    return
                for m in batch:
                    self.lifecycle.append(json.loads(m.content))
                    queue.delete_message(m)

    def observe(self) -> Observed:
        views: dict[str, dict[str, Any]] = {}

        def one(account: AccountPlan) -> None:
            r = self.session.get(f"{self.api}/accounts/{account.account_id}", timeout=60)
            views[account.account_id] = {"status": r.status_code, **(r.json() if r.content else {})}

        _parallel(one, self.plan.accounts, 4)
        charges = self.card_charges()
        emails = requests.get(f"{self.stack.email_url}/messages", params={"bodies": "false"}, timeout=300).json()
        replayed = self.replay_valid_deadletters()
        dead = self._deadletters()
        return Observed(views, charges, emails, self.lifecycle, dead, replayed, self.stack.gateway)

    def card_charges(self) -> list[dict[str, Any]]:
        """What the payment processor holds: the sandbox gateway's charges, or with Stripe every
        PaymentIntent of the Stripe sandbox (Stripe's objects; the checker reads them)."""
        stripe = self.stack.gateway == "stripe"
        url = f"{self.stack.stripe_url}/payment_intents" if stripe else f"{self.stack.gateway_url}/charges"
        r = requests.get(url, timeout=120)
        r.raise_for_status()
        rows: list[dict[str, Any]] = r.json()
        return rows

    def _deadletters(self) -> list[dict[str, Any]]:
        """Every dead letter, page by page."""
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 50}
        while True:
            r = self.session.get(f"{self.api}/deadletters", params=params, timeout=120)
            r.raise_for_status()
            items += r.json()["items"]
            if not r.json()["continuation"]:
                return items
            params["continuation"] = r.json()["continuation"]

    def replay_valid_deadletters(self) -> int:
        """A valid event dead-lettered for a passing reason (storage down past maxDequeueCount) is
        put back by the operator's replay route; then its effect must show like any other."""
        valid = {m.text for msgs in self.plan.messages.values() for m in msgs if m.event_id}
        todo = [d for d in self._deadletters() if d.get("text") in valid and not d.get("replayedAt")]
        for d in todo:
            self._http("POST", f"/deadletters/{d['id']}/replay", None, expect=(200,), admin=True)
        if todo:
            self.log(f"replayed {len(todo)} valid events from the dead-letter list")
            self.drain()
            self.run_sweeps()
            self.drain()
            self.collect_lifecycle()
        return len(todo)

    def _http(self, method: str, path: str, body: Any, expect: tuple[int, ...], admin: bool = False,
              quiet: bool = False) -> requests.Response | None:
        url = (self.stack.functions_url if path.startswith("/admin") else self.api) + path
        for attempt in range(20):
            try:
                r = self.session.request(method, url, json=body, timeout=120)
            except requests.RequestException as exc:
                if not quiet:
                    self.log(f"  {method} {path}: {exc.__class__.__name__}, retrying")
                time.sleep(min(0.5 * 2**attempt, 5))
                continue
            if r.status_code in expect:
                return r
            if r.status_code < 500 and r.status_code != 429:
                raise RuntimeError(f"{method} {path} answered {r.status_code}: {r.text[:300]}")
            if quiet:
                return None
            time.sleep(min(0.5 * 2**attempt, 5))
        raise RuntimeError(f"{method} {path} kept failing")


def _count_executed(path: Path, name: str) -> int:
    try:
        return path.read_text(errors="replace").count(f"Executed 'Functions.{name}'")
    except FileNotFoundError:
        return 0


def _parallel(fn: Callable[[Any], None], items: list[Any], threads: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(fn, items):
            pass


@contextlib.contextmanager
def soak_stack(workers: int, keep: dict[str, bool], gateway: str = "http") -> Iterator[tuple[LocalStack, Path]]:
    """A private stack on free ports: Azurite on disk in a scratch folder (so a restart keeps the
    data), its access log on, `workers` extra queue/timer worker processes, the app charging
    through `gateway` (`http` or `stripe`). The folder (logs, Azurite's data) is kept after a
    failure, or when the caller sets `keep["logs"]` (a run with differences)."""
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    stack = LocalStack(StackPorts.free(), workers=workers, log_dir=workdir / "logs",
                       storage_access_log=workdir / "azurite-access.log", storage_location=workdir / "azurite",
                       extra_env={"DEVSTACK_QUEUE_LEASE_SECONDS": str(LEASE_SECONDS)}, gateway=gateway)
    ok = False
    try:
        stack.start()
        yield stack, workdir
        ok = True
    finally:
        stack.stop()
        if ok and not keep["logs"]:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"soak logs kept in {workdir}", file=sys.stderr)
