"""Emails under the email service's quota (issue 21), on a private local stack.

    python -m bench.emails [-n 2000] [--per-minute 600]

Starts a stack whose email endpoint enforces `--per-minute` (as ACS does: 429 with Retry-After
beyond it) and whose app is told the same quota (`EMAIL_QUOTA_PER_MINUTE`, the shared budget row),
registers n/2 accounts with two billing contacts each, and puts one `billing.charge.failed` per
account on `payment-events`: n failure emails, due at once. It waits until the endpoint has
accepted all n and `email-outbox` is empty, then prints the achieved send rate against the quota
(goal >= 0.9) while a backlog waited (from when every event was applied, so every email due, to
the last send) and over the whole run (first to last accepted send), the 429s the endpoint answered, resubmissions (a
repeated operation id), the hand-offs put back (paced to a slot or to the shared hold, throttled,
retrying after a passing failure: counted from the app's log lines), and the storage requests per
email (everything the product did in the window, and the budget row's share).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from azure.storage.queue import QueueClient

from bench.common import (
    Api,
    BenchError,
    BenchStack,
    StorageLog,
    cloudevent,
    count_kinds,
    invocations,
    kinds_json,
    machine,
    print_table,
    private_stack,
    summary,
    wait_drained,
    write_results,
)
from devstack.email_endpoint.server import Quota

QUEUE, EMAIL_QUEUE = "payment-events", "email-outbox"
PUT_BACK = re.compile(rb"put back for \d+ s \((\w+)\)")
"""The line `shared/services/email.py` logs for every put-back, with its reason."""


def put_backs(offsets: dict[Path, int]) -> Counter[str]:
    """The put-backs the host logs show after the offsets, by reason (paced, throttled, retrying)."""
    found: Counter[str] = Counter()
    for path, offset in offsets.items():
        if path.exists():
            with path.open("rb") as f:
                f.seek(offset)
                found.update(m.decode() for m in PUT_BACK.findall(f.read()))
    return found


def register(api: Api, accounts: int) -> None:
    def one(i: int) -> None:
        api.call("PUT", f"/accounts/acc-{i:05d}", {
            "displayName": f"Bench customer {i}", "locale": "en",
            "billingContacts": [f"ap-{i}@bench.example", f"cfo-{i}@bench.example"],
            "subscriptions": [{"id": "s1", "name": "Service"}],
        })

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(accounts)))


def enqueue(connection_string: str, accounts: int) -> None:
    def share(t: int) -> None:
        with QueueClient.from_connection_string(connection_string, QUEUE) as q:
            for i in range(t, accounts, 4):
                q.send_message(cloudevent("billing.charge.failed", {
                    "accountId": f"acc-{i:05d}", "subscriptionId": "s1", "chargeId": "ch-1", "amount": "12.00",
                    "currency": "USD", "reason": "card_declined"}))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(share, range(4)))


def wait_accepted(email_url: str, n: int, timeout: float) -> None:
    deadline, last = time.monotonic() + timeout, -1
    while True:
        accepted = int(requests.get(f"{email_url}/stats", timeout=10).json()["accepted"])
        if accepted >= n:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"only {accepted} of {n} emails accepted after {timeout:.0f} s")
        if accepted // 200 != last // 200:
            print(f"  ... {accepted} of {n} emails accepted", flush=True)
            last = accepted
        time.sleep(1)


def measure(bs: BenchStack, n: int, per_minute: int, timeout: float) -> dict[str, Any]:
    api, log, email = Api(bs.api), StorageLog(bs.access_log, bs.connection_string), bs.stack.email_url
    accounts = n // 2
    print(f"registering {accounts} accounts with two billing contacts each ...", flush=True)
    register(api, accounts)
    wait_drained(bs.connection_string, [QUEUE, EMAIL_QUEUE], timeout)
    requests.delete(f"{email}/messages", timeout=10)
    before = requests.get(f"{email}/stats", timeout=10).json()
    offsets = bs.log_offsets()
    open_mark = log.mark()
    started = time.perf_counter()
    print(f"{accounts} failed charges: {n} failure emails due at once, quota {per_minute} a minute ...", flush=True)
    enqueue(bs.connection_string, accounts)
    applied = wait_drained(bs.connection_string, [QUEUE], timeout).at  # every email decided, and handed off
    applied_wall = time.time()
    wait_accepted(email, n, timeout)
    wait_drained(bs.connection_string, [QUEUE, EMAIL_QUEUE], timeout)
    elapsed = time.perf_counter() - started
    close_mark = log.mark()
    stats = requests.get(f"{email}/stats", timeout=10).json()
    got = requests.get(f"{email}/messages", params={"bodies": "false"}, timeout=60).json()
    times = sorted(datetime.fromisoformat(m["receivedAt"].replace("Z", "+00:00")).timestamp() for m in got)
    if len(got) != n or len({m["operationId"] for m in got}) != n:
        raise BenchError(f"{len(got)} messages stored for {n} emails")
    span = times[-1] - times[0]
    rate = (n - 1) / span * 60 if span else float("inf")
    # The backlog's drain: from when every email was due (all events applied) to the last send,
    # the sends made meanwhile; what went out while the events were still being applied was
    # paced by how fast they came, not by the quota.
    backlog = [t for t in times if t >= applied_wall]
    drain = times[-1] - applied_wall
    drain_rate = len(backlog) / drain * 60 if drain > 0 else float("inf")
    # the steadiest minute-long stretch is bounded by the quota: the best 60 s window
    best = max(sum(1 for t in times[i:] if t < start + 60) for i, start in enumerate(times))

    product = count_kinds(r for r in log.window(open_mark, close_mark)
                          if not (r.kind[0] == "queue" and r.kind[1] == "properties")
                          and r.kind != ("queue", "send", QUEUE))
    total = sum(v for k, v in product.items() if k[0] in ("table", "queue"))
    budget = sum(v for k, v in product.items() if "[budget]" in k[2] or "emailbudget" in k[2])
    handoffs = product[("queue", "send", EMAIL_QUEUE)]
    found = invocations(offsets)
    why = put_backs(offsets)
    durations, failed = found.get("email_outbox", ([], 0))
    throttled = int(stats["throttled"]) - int(before["throttled"])
    resubmitted = int(stats["duplicates"]) - int(before["duplicates"])
    fn = summary(durations) if durations else {"median": 0.0, "p95": 0.0, "max": 0.0, "n": 0}
    rows = [
        ("emails", f"{n}", f"{accounts} failed charges x 2 contacts, all due at once"),
        ("quota", f"{per_minute} a minute", "the endpoint enforces it; the app paces to it (budget row)"),
        ("events applied in", f"{applied - started:.1f} s", "every email due by then (a backlog after it)"),
        ("backlog drain rate", f"{drain_rate:.0f} a minute", f"{len(backlog)} emails left when all were due, "
                                                              f"sent in {drain:.1f} s"),
        ("backlog rate / quota", f"{drain_rate / per_minute:.3f}", "goal >= 0.9"),
        ("overall rate", f"{rate:.0f} a minute", f"first to last accepted send, {span:.1f} s "
                                                 f"({rate / per_minute:.3f} of the quota)"),
        ("busiest 60 s", f"{best}", f"accepted sends in any 60 s (the quota: {per_minute})"),
        ("429s received", f"{throttled}", "the endpoint's `throttled` count"),
        ("resubmissions", f"{resubmitted}", "sends repeating an operation id (stored once)"),
        ("hand-offs put back", f"{handoffs - n}", f"{handoffs} sends on {EMAIL_QUEUE} for {n} emails"),
        ("  by reason", f"{why['paced']} / {why['throttled']} / {why['retrying']}",
         "paced (a slot ahead, or the shared hold) / throttled (a 429) / retrying (a 5xx)"),
        ("storage requests / email", f"{total / n:.2f}", "everything the product did in the window "
                                                         "(the failed charge's decision too)"),
        ("  budget row", f"{budget / n:.2f}", "reads and conditional writes of emailbudget/budget"),
        ("email_outbox duration", f"{fn['median']:.0f} ms", f"median of {fn['n']}; p95 {fn['p95']:.0f} ms, "
                                                            f"max {fn['max']:.0f} ms, {failed} failed"),
        ("all done in", f"{elapsed:.1f} s", "first event enqueued to both queues empty"),
    ]
    print_table("bench.emails", rows)
    print("\nstorage requests in the window, by operation:")
    for (service, op, name), count in sorted(product.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {service:<5} {op:<10} {name:<28} {count:>7}  {count / n:6.2f} per email")
    return {
        "benchmark": "emails", "machine": machine(), "emails": n, "quota_per_minute": per_minute,
        "achieved_per_minute": round(rate, 1), "achieved_over_quota": round(rate / per_minute, 4),
        "events_applied_s": round(applied - started, 1), "backlog_emails": len(backlog),
        "backlog_drain_per_minute": round(drain_rate, 1), "backlog_over_quota": round(drain_rate / per_minute, 4),
        "busiest_60_s": best, "throttled_429": throttled, "resubmissions": resubmitted,
        "handoffs_put_back": handoffs - n, "put_backs_by_reason": dict(why),
        "storage_requests_per_email": round(total / n, 3),
        "budget_requests_per_email": round(budget / n, 3), "storage_requests_by_operation": kinds_json(product),
        "email_outbox_duration_ms": fn, "email_outbox_failed": failed, "elapsed_s": round(elapsed, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.emails", description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=2000, help="emails, two per account (default %(default)s)")
    p.add_argument("--per-minute", type=int, default=600, help="the quota (default %(default)s)")
    p.add_argument("--timeout", type=float, default=1200, help="seconds to wait for everything to be sent")
    p.add_argument("--keep-logs", action="store_true")
    args = p.parse_args(argv)
    if not 2 <= args.n <= 20_000 or args.n % 2 or not 2 <= args.per_minute <= 100_000:
        p.error("-n must be an even 2..20000, --per-minute 2..100000")
    try:
        with private_stack("emails", keep_logs=args.keep_logs, email_quota=Quota(args.per_minute)) as bs:
            results = measure(bs, args.n, args.per_minute, args.timeout)
    except BenchError as exc:
        print(f"bench.emails failed: {exc}", file=sys.stderr)
        return 1
    print(f"\nresults written to {write_results('emails', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
