"""python -m bench.sweeps: what a dunning sweep costs as the customer base grows, and how fast the
work queue drains with more worker processes.

1. Cost: the sweep's storage requests and time for `--due` due accounts among each of `--bases`
   accounts in all (default 1,000 due among 10,000 and among 100,000). The ratio of storage
   requests between the largest and smallest base must stay <= 1.2: cost grows with the work due,
   not with the customer base.
2. Throughput: due accounts handled per second for each of `--throughput-due` (default 1,000 and
   5,000) with each of `--workers` extra worker processes (default 0, 1, 3), each due account's
   step being an automatic card retry through the sandbox gateway with `--latency-ms` (300) per
   charge.

Seeding. Two template accounts are made through the product's own code (`register_account`,
`apply_event`) on an Azurite of their own: one idle (registered, active, nothing due) and one due
(past due since T0, its day-1 retry due). Azurite is stopped, and its table database (a LokiJS
JSON file, `__azurite_db_table__.json`) is rewritten with one copy of the templates' rows per
account, renamed; every tenth idle account also gets a due-index row a month ahead (an index that
holds future work, which the sweep must not read). As in production, a share of the idle accounts
(`--card-share`, default 60%) pay by a saved card expiring in one of the 48 months from January
2027 (one template per month, registered by the product's code like the others), each with the
due-index row for its card-expiry notice that registration writes, 1 to 49 months ahead of the
sweep; none of those notices is due in the sweep, so the work due stays `--due` accounts whatever
the base. The stack then starts on that folder. Inserting
100,000 rows through the API would take hours: Azurite finds an entity by scanning every row with
the same RowKey, and every account has an `account` row, so each insert costs more than the last.
The same scan makes each point read or write of an `account` row slower on the larger table;
the benchmark measures that (`account` row vs unique-RowKey point reads at each size) to say how
much of the time ratio is the emulator.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from azure.data.tables import TableClient

from bench.common import (
    BenchError,
    StorageLog,
    count_kinds,
    cpu_diff,
    cpu_seconds,
    invocations,
    kinds_json,
    load_average,
    machine,
    print_table,
    summary,
    wait_drained,
    write_results,
)
from devstack import azurite
from devstack.host.leases import TABLE as LOCK_TABLE
from devstack.stack import LocalStack, StackPorts
from shared.adapters.store.indexes import due_keys
from shared.bootstrap import build
from shared.domain.facts import ChargeFailed
from shared.domain.model import PaymentMethod, Profile
from shared.domain.money import Money
from shared.domain.payments import Registration
from shared.services.unit_of_work import apply_event, register_account
from shared.settings import Settings

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SWEEP_AT = T0 + timedelta(days=1, hours=1)
CARD_MONTHS = [(2027 + n // 12, n % 12 + 1) for n in range(48)]
"""Expiry (year, month) of the idle accounts' saved cards: each notice falls after SWEEP_AT."""
TIMERS = ("dunning_sweep", "retention_sweep", "reconciliation_sweep")
TABLE_DB = "__azurite_db_table__.json"
HOST_ID = "bench-sweeps"


# -- seeding ---------------------------------------------------------------------------------------


def _card_template(n: int) -> str:
    return f"tmpl-card-{n:02d}"


def make_templates(folder: Path, card: bool) -> None:
    """An Azurite on `folder` holding the template accounts, made by the product's code: idle,
    due, and one idle account per expiry month of CARD_MONTHS paying by that card."""
    endpoints = azurite.AzuriteEndpoints(azurite.free_port(), azurite.free_port(), azurite.free_port())
    proc = azurite.start(endpoints, location=folder)
    try:
        settings = Settings.from_env({"AzureWebJobsStorage": endpoints.connection_string,
                                      "BILLING_TEST_CLOCK": "enabled"})
        svc = build(settings, mailer=None)
        svc.test_clock.set(T0)  # type: ignore[union-attr]
        method = PaymentMethod("card", "tok_visa", "visa", "4242", 12, 2030) if card else PaymentMethod("invoice")
        for account_id in ("tmpl-idle", "tmpl-due"):
            register_account(svc.uow, account_id, Registration(
                Profile("Contoso Ltd", "en", ("billing@contoso.example",), method), (("s1", "Web front end"),)))
        for n, (year, month) in enumerate(CARD_MONTHS):
            register_account(svc.uow, _card_template(n), Registration(
                Profile("Contoso Ltd", "en", ("billing@contoso.example",),
                        PaymentMethod("card", "tok_visa", "visa", "4242", month, year)),
                (("s1", "Web front end"),)))
        apply_event(svc.uow, ChargeFailed("tmpl-due-e1", "tmpl-due", "s1", "c1", Money.parse("10.00", "USD"),
                                                "insufficient_funds"), "billing.charge.failed")
        # The host's timer locks, held by the benchmark: no scheduled sweep fires during a run,
        # so the only sweeps are the ones it starts through the admin endpoint.
        locks = TableClient.from_connection_string(endpoints.connection_string, LOCK_TABLE)
        locks.create_table()
        for name in TIMERS:
            locks.upsert_entity({"PartitionKey": HOST_ID, "RowKey": name, "Owner": "bench.sweeps",
                                 "ExpiresAt": datetime.now(UTC) + timedelta(days=1)})
        time.sleep(6)  # Azurite writes its database every 5 s
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    for name in ("__azurite_db_queue__.json", "__azurite_db_queue_extent__.json"):
        (folder / name).unlink(missing_ok=True)  # start with empty queues: the templates' mail is not wanted


def _rename(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {k: _rename(v, old, new) for k, v in value.items()}
    return value


def _index_doc(template: dict[str, Any], partition: str, row: str, account_id: str, at: datetime) -> dict[str, Any]:
    props = {**template["properties"], "PartitionKey": partition, "RowKey": row, "accountId": account_id,
             "at": at.isoformat()}
    props.pop("queuedUntil", None)
    return {**template, "PartitionKey": partition, "RowKey": row, "properties": props}


def clone_accounts(folder: Path, idle: int, due: int, card_share: float = 0.0, seed: int = 7) -> None:
    """Rewrite the table database: `idle` accounts, `card_share` of them copies of a card template
    (an expiry month drawn at random) with its card-notice index row and the rest copies of
    tmpl-idle, and `due` copies of tmpl-due; templates gone."""
    path = folder / TABLE_DB
    db = json.loads(path.read_text())
    colls = {c["name"]: c for c in db["collections"]}
    billing, index = colls["devstoreaccount1$billing"], colls["devstoreaccount1$billingindex"]
    cards = [_card_template(n) for n in range(len(CARD_MONTHS))]
    rows = {name: [d for d in billing["data"] if d["PartitionKey"] == name and not d["RowKey"].startswith("outbox|")]
            for name in ("tmpl-idle", "tmpl-due", *cards)}
    due_row = next(d for d in index["data"] if d["properties"].get("accountId") == "tmpl-due")
    notices = {name: [d for d in index["data"] if d["properties"].get("accountId") == name] for name in cards}
    for name, found in notices.items():
        if len(found) != 1 or datetime.fromisoformat(found[0]["properties"]["at"]) <= SWEEP_AT:
            raise BenchError(f"{name}: expected one card-notice index row after the sweep, found "
                             f"{[d['properties'].get('at') for d in found]}")
    rng, card_rng = random.Random(seed), random.Random(seed + 1)
    out_billing: list[dict[str, Any]] = [d for d in billing["data"] if not d["PartitionKey"].startswith("tmpl-")]
    out_index: list[dict[str, Any]] = [d for d in index["data"]
                                       if not str(d["properties"].get("accountId", "")).startswith("tmpl-")]
    later = T0 + timedelta(days=30)
    for n in range(idle):
        account_id = f"idle-{n:06d}"
        template = card_rng.choice(cards) if card_rng.random() < card_share else "tmpl-idle"
        out_billing += [_rename(d, template, account_id) for d in rows[template]]
        if template != "tmpl-idle":
            notice = notices[template][0]
            at = datetime.fromisoformat(notice["properties"]["at"])
            out_index.append(_index_doc(notice, *due_keys("due", account_id, at), account_id, at))
        if rng.random() < 0.1:
            out_index.append(_index_doc(due_row, *due_keys("due", account_id, later), account_id, later))
    due_at = T0 + timedelta(days=1)
    for n in range(due):
        account_id = f"due-{n:06d}"
        out_billing += [_rename(d, "tmpl-due", account_id) for d in rows["tmpl-due"]]
        out_index.append(_index_doc(due_row, *due_keys("due", account_id, due_at), account_id, due_at))
    for coll, data in ((billing, out_billing), (index, out_index)):
        for i, doc in enumerate(data, start=1):
            doc["$loki"] = i
        coll["data"], coll["maxId"], coll["idIndex"] = data, len(data), None
        coll["binaryIndices"] = {key: {"name": key, "dirty": False,
                                       "values": sorted(range(len(data)), key=lambda i, key=key: data[i][key])}
                                 for key in ("PartitionKey", "RowKey")}
    path.write_text(json.dumps(db, separators=(",", ":")))


@dataclass
class Seeded:
    stack: LocalStack
    folder: Path
    access_log: Path
    seconds: float

    @property
    def api(self) -> str:
        return f"{self.stack.functions_url}/api"


@contextmanager
def seeded_stack(idle: int, due: int, *, card: bool, workers: int, latency_ms: int,
                 card_share: float = 0.0) -> Iterator[Seeded]:
    started = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="bench-sweeps-"))
    make_templates(folder / "azurite", card)
    clone_accounts(folder / "azurite", idle, due, card_share)
    env = {"AzureFunctionsWebHost__hostid": HOST_ID, "SANDBOX_CHARGE_LATENCY_MS": str(latency_ms)}
    access_log = folder / "azurite-access.log"
    stack = LocalStack(StackPorts.free(), log_dir=folder / "logs", storage_access_log=access_log, workers=workers,
                       extra_env=env, storage_location=folder / "azurite")
    stack.start()
    try:
        yield Seeded(stack, folder, access_log, time.perf_counter() - started)
    finally:
        stack.stop()


# -- measuring -------------------------------------------------------------------------------------


@dataclass
class SweepRun:
    seconds: float
    timer_ms: list[float]
    """Each timer run's own duration; more than one if the first spent its time budget."""
    requests: Counter[tuple[str, str, str]]
    work_invocations: int
    work_failures: int
    per_process: dict[str, int]
    cpu: dict[str, float]
    """CPU seconds each process of the stack used in the window (Azurite's apart from the host's)."""

    @property
    def product_requests(self) -> int:
        """Every storage request but the benchmark's own queue-length polls."""
        return sum(n for k, n in self.requests.items() if k[1] != "properties")

    @property
    def idle_polls(self) -> int:
        """The hosts' receives on queues with nothing for them: they grow with the window's length,
        not with the work."""
        return sum(n for k, n in self.requests.items()
                   if k[1] == "receive" and k[2] not in ("sweep-work", "sweep-pages"))


def run_sweep(seeded: Seeded, due: int, timeout: float) -> SweepRun:
    stack = seeded.stack
    requests.put(f"{seeded.api}/testing/clock", json={"now": SWEEP_AT.isoformat()}, timeout=30).raise_for_status()
    time.sleep(1.2)  # every process reads the test clock at most once a second
    log = StorageLog(seeded.access_log, stack.connection_string)
    logs = [stack.log_dir / f"{name}.log" for name, _ in stack.procs
            if name == "functions" or name.startswith("worker")]
    offsets = {p: p.stat().st_size if p.exists() else 0 for p in logs}
    cpu_before = cpu_seconds(stack)
    start_mark = log.mark()
    started = time.perf_counter()
    timers: list[float] = []
    work: list[float] = []
    while len(work) < due:  # a timer that spent its time budget leaves the rest to the next run
        if len(timers) == 5:
            raise BenchError(f"only {len(work)} of {due} due accounts were handled after 5 sweeps")
        r = requests.post(f"{stack.functions_url}/admin/functions/dunning_sweep", json={"input": ""}, timeout=30)
        if r.status_code != 202:
            raise BenchError(f"starting the sweep answered {r.status_code}")
        timers = _wait_for_timer(offsets, len(timers) + 1, timeout)
        drained = wait_drained(stack.connection_string, ["sweep-pages", "sweep-work"], timeout, interval=0.2,
                               progress=True)
        work, failed = invocations(offsets).get("sweep_work", ([], 0))
    seconds = drained.at - started
    end_mark = log.mark()
    cpu = cpu_diff(cpu_before, cpu_seconds(stack))
    per_process = {p.stem: len(invocations({p: offsets[p]}).get("sweep_work", ([], 0))[0]) for p in logs}
    return SweepRun(seconds, timers, count_kinds(log.window(start_mark, end_mark)), len(work), failed, per_process,
                    cpu)


def _wait_for_timer(offsets: dict[Path, int], runs: int, timeout: float) -> list[float]:
    """The durations (ms) of the timer's successful runs, once `runs` have ended. A failed run
    (Azurite resetting connections under load) is what the next scheduled run makes good: the
    caller starts another."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        durations, failed = invocations(offsets).get("dunning_sweep", ([], 0))
        if len(durations) + failed >= runs:
            if failed:
                print(f"   {failed} timer run(s) failed (see the host log); sweeping again", flush=True)
            return durations + [float("nan")] * failed
        time.sleep(0.1)
    raise BenchError("the dunning_sweep timer did not finish")


def point_reads(connection_string: str, idle: int, n: int = 200) -> dict[str, float]:
    """Median ms of point reads of idle accounts' `account` rows (a RowKey every account shares)
    and of their `charge|...`-free unique rows: the index rows' keys are unique per account."""
    billing = TableClient.from_connection_string(connection_string, "billing")
    rng = random.Random(3)
    shared_key: list[float] = []
    for _ in range(n):
        account_id = f"idle-{rng.randrange(idle):06d}"
        t = time.perf_counter()
        billing.get_entity(account_id, "account")
        shared_key.append((time.perf_counter() - t) * 1000)
    index = TableClient.from_connection_string(connection_string, "billingindex")
    unique_key: list[float] = []
    rows = [(r["PartitionKey"], r["RowKey"]) for r in index.list_entities(results_per_page=n).by_page().__next__()]
    for pk, rk in (rows * (n // max(len(rows), 1) + 1))[:n]:
        t = time.perf_counter()
        index.get_entity(pk, rk)
        unique_key.append((time.perf_counter() - t) * 1000)
    return {"account_row_ms": summary(shared_key)["median"], "unique_row_ms": summary(unique_key)["median"]}


def gateway_charges(stack: LocalStack) -> int:
    return len(requests.get(f"{stack.gateway_url}/charges", timeout=60).json())


def dead_letters(api: str) -> int:
    return len(requests.get(f"{api}/deadletters", timeout=60).json()["items"])


# -- the two parts ---------------------------------------------------------------------------------


def cost(bases: list[int], due: int, timeout: float, card_share: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for base in bases:
        print(f"\n-- cost: {due} due among {base} accounts: seeding ...", flush=True)
        with seeded_stack(base - due, due, card=False, workers=0, latency_ms=0, card_share=card_share) as seeded:
            print(f"   seeded and started in {seeded.seconds:.1f} s; sweeping ...", flush=True)
            run = run_sweep(seeded, due, timeout)
            reads = point_reads(seeded.stack.connection_string, base - due)
            results[str(base)] = {
                "accounts": base, "due": due, "card_share": card_share,
                "seed_and_start_s": round(seeded.seconds, 1),
                "sweep_s": round(run.seconds, 2), "timer_ms": run.timer_ms,
                "storage_requests": run.product_requests, "idle_queue_polls": run.idle_polls,
                "requests_per_due_account": round(run.product_requests / due, 2),
                "requests_per_due_account_without_idle_polls": round((run.product_requests - run.idle_polls) / due, 2),
                "cpu_s": run.cpu,
                "requests_by_kind": kinds_json(run.requests), "failures": run.work_failures,
                "dead_letters": dead_letters(seeded.api), **reads,
            }
            print(f"   {json.dumps(results[str(base)])}", flush=True)
    small, large = results[str(min(bases))], results[str(max(bases))]
    results["request_ratio"] = round(large["storage_requests"] / small["storage_requests"], 3)
    def work(r: dict[str, Any]) -> int:
        return int(r["storage_requests"] - r["idle_queue_polls"])

    results["request_ratio_without_idle_polls"] = round(work(large) / work(small), 3)
    results["time_ratio"] = round(large["sweep_s"] / small["sweep_s"], 2)
    return results


def throughput(dues: list[int], workers: list[int], latency_ms: int, timeout: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for due in dues:
        for extra in workers:
            print(f"\n-- throughput: {due} due, {extra} extra workers, {latency_ms} ms per charge: seeding ...",
                  flush=True)
            with seeded_stack(0, due, card=True, workers=extra, latency_ms=latency_ms) as seeded:
                print(f"   seeded and started in {seeded.seconds:.1f} s; sweeping ...", flush=True)
                run = run_sweep(seeded, due, timeout)
                charges = gateway_charges(seeded.stack)
                results[f"{due}x{extra}"] = {
                    "due": due, "extra_workers": extra, "sweep_s": round(run.seconds, 2),
                    "due_per_s": round(due / run.seconds, 2), "timer_ms": run.timer_ms, "charges": charges,
                    "per_process": run.per_process, "failures": run.work_failures, "cpu_s": run.cpu,
                    "dead_letters": dead_letters(seeded.api),
                }
                print(f"   {json.dumps(results[f'{due}x{extra}'])}", flush=True)
    return results


def _ms(durations: list[float]) -> str:
    return " + ".join(f"{d / 1000:.1f} s" for d in durations)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sweeps", description=__doc__.splitlines()[0])
    p.add_argument("--bases", default="10000,100000", help="accounts in all, per cost run (default %(default)s)")
    p.add_argument("--due", type=int, default=1000, help="due accounts in the cost runs (default %(default)s)")
    p.add_argument("--throughput-due", default="1000,5000", help="due accounts per throughput run")
    p.add_argument("--workers", default="0,1,3", help="extra worker processes per throughput run")
    p.add_argument("--latency-ms", type=int, default=300, help="sandbox gateway latency per charge")
    p.add_argument("--card-share", type=float, default=0.6,
                   help="share of the idle accounts in the cost runs paying by a saved card (default %(default)s)")
    p.add_argument("--skip-cost", action="store_true")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--timeout", type=float, default=1800, help="bound on each wait, seconds")
    args = p.parse_args(argv)
    bases, dues, workers = _ints(args.bases), _ints(args.throughput_due), _ints(args.workers)
    if any(b <= args.due for b in bases) or max(bases + dues) > 200_000 or max(workers, default=0) > 8:
        p.error("each base must exceed --due; at most 200,000 accounts and 8 extra workers")
    if not 0 <= args.card_share <= 1:
        p.error("--card-share is a share, from 0 to 1")
    out: dict[str, Any] = {"machine": machine(), "args": vars(args)}
    if not args.skip_cost:
        out["cost"] = cost(bases, args.due, args.timeout, args.card_share)
        c = out["cost"]
        rows = [(f"{b} accounts, {args.due} due", f"{c[str(b)]['storage_requests']} req",
                 f"{c[str(b)]['sweep_s']} s sweep; timer runs {_ms(c[str(b)]['timer_ms'])}; "
                 f"{c[str(b)]['requests_per_due_account']} req/due account; account-row read "
                 f"{c[str(b)]['account_row_ms']:.1f} ms vs unique-key {c[str(b)]['unique_row_ms']:.1f} ms")
                for b in bases]
        rows += [(f"  CPU in the window, {b} accounts", f"{c[str(b)]['cpu_s'].get('azurite', 0):.0f} s",
                  f"Azurite; functions host {c[str(b)]['cpu_s'].get('functions', 0):.0f} s") for b in bases]
        rows.append(("request ratio (largest/smallest)", f"{c['request_ratio']}", "must be <= 1.2; "
                     f"{c['request_ratio_without_idle_polls']} without the hosts' polls of idle queues"))
        rows.append(("time ratio", f"{c['time_ratio']}", "see the account-row read times for the emulator's part"))
        print_table("cost of one dunning sweep (1 host process)", rows)
    if not args.skip_throughput:
        out["throughput"] = throughput(dues, workers, args.latency_ms, args.timeout)
        t = out["throughput"]
        print_table(f"due accounts handled per second ({args.latency_ms} ms per charge)", [
            (f"{r['due']} due, {r['extra_workers']} extra workers", f"{r['due_per_s']}/s",
             f"{r['sweep_s']} s; timer runs {_ms(r['timer_ms'])}; {r['charges']} charges; "
             f"by process {r['per_process']}")
            for r in t.values()])
    print(f"\nload average at the end: {load_average()}")
    print(f"results: {write_results('sweeps', out)}")
    ok = args.skip_cost or out["cost"]["request_ratio"] <= 1.2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
