"""Throughput of the `payment-events` queue function on a private local stack.

    python -m bench.events [-n 500] [--accounts 50] [--concurrency 1] [--workers 0]

Registers `--accounts` accounts (billing contacts, two subscriptions, no card), then puts `-n`
valid CloudEvents on `payment-events`, round-robin over the accounts: per account, two
`billing.charge.failed` then one `billing.payment.received` that pays the first of the two by
name, and so on. It waits until the queue is empty (a message is deleted only after its event
was applied), then until `email-outbox` is empty too (the emails those events caused were
sent), checks every account's balance against the expected one, and prints events/s, storage
requests per event, and Azurite's raw single-entity write and queue send rates measured in the
same run as the ceiling. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from azure.storage.queue import QueueClient

from bench.common import (
    Api,
    BenchError,
    BenchStack,
    StorageLog,
    StorageRequest,
    cloudevent,
    count_kinds,
    cpu_diff,
    cpu_seconds,
    invocations,
    kinds_json,
    load_average,
    machine,
    print_table,
    private_stack,
    raw_queue_send_rate,
    raw_upsert_rate,
    summary,
    wait_drained,
    warn_unexpected,
    write_results,
)

QUEUE = "payment-events"
EMAIL_QUEUE = "email-outbox"
SUBSCRIPTIONS = ("s1", "s2")
MAX_EVENTS = 20_000
MAX_ACCOUNTS = 1_000
MAX_CONCURRENCY = 32
MAX_WORKERS = 4


@dataclass
class Plan:
    """The events to send, in order, and the balance each account must end with."""

    accounts: list[str]
    messages: list[str] = field(default_factory=list)
    types: Counter[str] = field(default_factory=Counter)
    expected: dict[str, dict[str, Decimal]] = field(default_factory=dict)


def cents(k: int) -> Decimal:
    """A deterministic USD amount between 1.00 and 9.99 for the k-th event of an account."""
    return Decimal(100 + (k * 37) % 900) / 100


def build_plan(n: int, n_accounts: int, grouped: bool = False) -> Plan:
    """`n` events: event i goes to account i mod `n_accounts` and is that account's k-th. They are
    sent round-robin over the accounts, or with `grouped` account after account (the same
    events, so the same work, but consecutive messages then race for the same account row)."""
    plan = Plan([f"acc-{i:04d}" for i in range(n_accounts)])
    owed: dict[str, dict[str, Decimal]] = {a: {} for a in plan.accounts}
    per_account: dict[str, list[str]] = {a: [] for a in plan.accounts}
    for i in range(n):
        account = plan.accounts[i % n_accounts]
        k = i // n_accounts  # the k-th event of this account
        if k % 3 == 2:
            paid = f"ch-{k - 2}"
            amount = owed[account].pop(paid)
            data: dict[str, Any] = {"accountId": account, "paymentId": f"pay-{k}", "amount": f"{amount:.2f}",
                                    "currency": "USD", "method": "wire", "chargeIds": [paid]}
            type_ = "billing.payment.received"
        else:
            charge = f"ch-{k}"
            owed[account][charge] = cents(k)
            data = {"accountId": account, "subscriptionId": SUBSCRIPTIONS[k % 2], "chargeId": charge,
                    "amount": f"{cents(k):.2f}", "currency": "USD", "reason": "card_declined"}
            type_ = "billing.charge.failed"
        text = cloudevent(type_, data)
        plan.messages.append(text)
        per_account[account].append(text)
        plan.types[type_] += 1
    if grouped:
        plan.messages = [text for account in plan.accounts for text in per_account[account]]
    for account, charges in owed.items():
        total = sum(charges.values(), Decimal(0))
        plan.expected[account] = {"USD": total} if total else {}
    return plan


def register(api: Api, accounts: list[str]) -> None:
    for i, account in enumerate(accounts):
        api.call("PUT", f"/accounts/{account}", {
            "displayName": f"Bench customer {i}", "locale": "en",
            "billingContacts": [f"billing-{i}@bench.example"],
            "subscriptions": [{"id": s, "name": f"Service {s}"} for s in SUBSCRIPTIONS],
        })


def enqueue(connection_string: str, messages: list[str], concurrency: int) -> int:
    """Send every message, `concurrency` threads each with its own client; returns the count sent."""
    shares = [messages[t::concurrency] for t in range(concurrency)]

    def send(share: list[str]) -> int:
        with QueueClient.from_connection_string(connection_string, QUEUE) as q:
            for text in share:
                q.send_message(text)
        return len(share)

    if concurrency == 1:
        return send(shares[0])
    with ThreadPoolExecutor(concurrency, thread_name_prefix="enqueue") as pool:
        return sum(pool.map(send, shares))


def verify(api: Api, plan: Plan) -> None:
    wrong = []
    for account in plan.accounts:
        view = api.call("GET", f"/accounts/{account}")
        balance = {cur: Decimal(v) for cur, v in view["balance"].items()}
        if balance != plan.expected[account]:
            wrong.append(f"{account}: balance {view['balance']}, expected {plan.expected[account]}")
    dead = api.call("GET", "/deadletters")["items"]
    if dead:
        wrong.append(f"{len(dead)} dead-lettered messages, first: {dead[0]['reason']}")
    if wrong:
        raise BenchError("the events were not all applied as expected:\n  " + "\n  ".join(wrong[:10]))


def is_own(req: StorageRequest) -> bool:
    """The benchmark's own requests in the window: its enqueues on `payment-events` and its
    queue-length polls. The product never sends to `payment-events`, nor reads queue metadata."""
    service, op, name = req.kind
    return service == "queue" and (op == "properties" or (op == "send" and name == QUEUE))


@dataclass
class Measurement:
    sent: int
    enqueue_s: float
    applied_s: float  # first enqueue to `payment-events` empty: every event applied
    followed_s: float  # ... to `email-outbox` empty too: every email they caused sent
    polls: int
    product: Counter[tuple[str, str, str]]
    own: Counter[tuple[str, str, str]]
    durations: dict[str, list[float]]
    failed: dict[str, int]
    cpu: dict[str, float]
    upserts: float = 0.0
    sends: float = 0.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = build_plan(args.n, args.accounts, grouped=args.order == "grouped")
    with private_stack("events", workers=args.workers, keep_logs=args.keep_logs, timers=args.timers,
                       otlp=args.otlp) as bs:
        m = measure(bs, plan, args)
    return report(args, plan, m)


def measure(bs: BenchStack, plan: Plan, args: argparse.Namespace) -> Measurement:
    api = Api(bs.api)
    log = StorageLog(bs.access_log, bs.connection_string)
    print(f"registering {len(plan.accounts)} accounts ...", flush=True)
    register(api, plan.accounts)
    wait_drained(bs.connection_string, [QUEUE, EMAIL_QUEUE], args.timeout)  # nothing left over from setup
    offsets = bs.log_offsets()

    print(f"sending {len(plan.messages)} events ({dict(plan.types)}) with {args.concurrency} "
          f"sender thread(s) ...", flush=True)
    cpu_before = cpu_seconds(bs.stack)
    open_mark = log.mark()
    started = time.perf_counter()
    sent = enqueue(bs.connection_string, plan.messages, args.concurrency)
    enqueued = time.perf_counter()
    applied = wait_drained(bs.connection_string, [QUEUE], args.timeout, progress=True)
    followed = wait_drained(bs.connection_string, [EMAIL_QUEUE], args.timeout, progress=True)
    close_mark = log.mark()
    cpu = cpu_diff(cpu_before, cpu_seconds(bs.stack))
    print(f"events applied in {applied.at - started:.2f} s, their emails sent {followed.at - applied.at:.2f} s "
          "later; checking balances ...", flush=True)
    verify(api, plan)

    window = log.window(open_mark, close_mark)
    product = count_kinds(r for r in window if not is_own(r))
    own = count_kinds(r for r in window if is_own(r))
    if own[("queue", "send", QUEUE)] < sent:
        print(f"warning: the log shows fewer enqueues than were made: {kinds_json(own)}", file=sys.stderr)
    found = invocations(offsets)
    warn_unexpected(found, ("payment_events", "email_outbox", "get_account", "get_deadletters"))
    durations = {fn: found.get(fn, ([], 0))[0] for fn in ("payment_events", "email_outbox")}
    failed = {fn: found.get(fn, ([], 0))[1] for fn in ("payment_events", "email_outbox")}
    m = Measurement(sent, enqueued - started, applied.at - started, followed.at - started,
                    applied.polls + followed.polls, product, own, durations, failed, cpu)

    print(f"measuring Azurite's raw rates ({args.n} sequential upserts, {args.n} queue sends) ...", flush=True)
    m.upserts = raw_upsert_rate(bs.connection_string, args.n)
    m.sends = raw_queue_send_rate(bs.connection_string, args.n)
    return m


def report(args: argparse.Namespace, plan: Plan, m: Measurement) -> dict[str, Any]:
    n = m.sent
    rate = n / m.applied_s
    product = m.product

    def per_event(pred: Any) -> float:
        return sum(v for k, v in product.items() if pred(*k)) / n

    total = per_event(lambda s, o, t: s in ("table", "queue"))
    split = {
        "table_reads": per_event(lambda s, o, t: s == "table" and o in ("read", "query")),
        "table_batch": per_event(lambda s, o, t: s == "table" and o == "batch"),
        "table_single_writes": per_event(lambda s, o, t: s == "table" and o in ("write", "delete", "admin")),
        "queue_operations": per_event(lambda s, o, t: s == "queue"),
        "other": per_event(lambda s, o, t: s not in ("table", "queue")),
    }
    emails = product[("queue", "delete", EMAIL_QUEUE)]
    ceiling_ratio = rate / m.upserts
    fns = {name: summary(d) for name, d in m.durations.items() if d}

    rows = [
        ("events", f"{n}", f"{dict(plan.types)} over {len(plan.accounts)} accounts, sent {args.order}"),
        ("telemetry", "OTLP" if args.otlp else "off", "exported to the local OTLP receiver" if args.otlp
         else "no exporter: the API's no-op providers"),
        ("applied in", f"{m.applied_s:.2f} s", f"first enqueue to {QUEUE} empty (enqueue alone "
                                               f"{m.enqueue_s:.2f} s, {args.concurrency} sender thread(s), "
                                               f"{args.workers} extra worker(s))"),
        ("throughput", f"{rate:.1f} events/s", "applied"),
        ("emails sent by", f"{m.followed_s:.2f} s", f"{EMAIL_QUEUE} empty too ({emails} emails, "
                                                    f"{n / m.followed_s:.1f} events/s including them)"),
        ("storage requests / event", f"{total:.2f}", "everything the product did in the window, emails included"),
        ("  table reads", f"{split['table_reads']:.2f}", "point reads + queries"),
        ("  table $batch", f"{split['table_batch']:.2f}", "entity group transactions (one request each)"),
        ("  table single writes", f"{split['table_single_writes']:.2f}", "inserts, updates, deletes outside a "
                                                                         "batch"),
        ("  queue operations", f"{split['queue_operations']:.2f}", "receives (incl. empty polls), deletes, sends"),
    ]
    if split["other"]:
        rows.append(("  other", f"{split['other']:.2f}", "neither table nor queue"))
    for name, fn in fns.items():
        rows.append((f"{name} duration", f"{fn['median']:.0f} ms", f"median of {fn['n']}; p95 {fn['p95']:.0f} ms, "
                                                                   f"max {fn['max']:.0f} ms, {m.failed[name]} failed"))
    for name, used in sorted(m.cpu.items(), key=lambda kv: -kv[1]):
        if used >= 0.005:
            rows.append((f"CPU {name}", f"{used * 1000 / n:.1f} ms/event",
                         f"{used:.2f} s in the window ({used / m.followed_s:.0%} of one core)"))
    rows += [
        ("raw upsert_entity", f"{m.upserts:.0f} entities/s", f"sequential, {args.n} calls, same Azurite"),
        ("raw send_message", f"{m.sends:.0f} messages/s", f"sequential, {args.n} calls"),
        ("events/s / raw upserts/s", f"{ceiling_ratio:.3f}", ""),
    ]
    rows.append(("load average", load_average(), f"1/5/15 min at the end, {os.cpu_count()} CPUs: more than "
                                                  "that means other work competed for them"))
    print_table("bench.events", rows)
    print("\nstorage requests in the window, by operation (product side):")
    for (service, op, name), count in sorted(product.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {service:<5} {op:<10} {name:<28} {count:>7}  {count / n:6.2f} per event")
    print(f"excluded as the benchmark's own: {kinds_json(m.own)}")
    return {
        "benchmark": "events",
        "machine": machine(),
        "args": vars(args),
        "events": n,
        "telemetry": "otlp" if args.otlp else "off",
        "event_types": dict(plan.types),
        "accounts": len(plan.accounts),
        "enqueue_s": round(m.enqueue_s, 3),
        "applied_s": round(m.applied_s, 3),
        "events_per_s": round(rate, 2),
        "emails_sent": emails,
        "emails_sent_s": round(m.followed_s, 3),
        "queue_length_polls": m.polls,
        "storage_requests_per_event": {"total": round(total, 3), **{k: round(v, 3) for k, v in split.items()}},
        "storage_requests_by_operation": kinds_json(product),
        "excluded_own_requests": kinds_json(m.own),
        "function_duration_ms": fns,
        "function_failures": m.failed,
        "cpu_seconds_in_window": m.cpu,
        "raw_upsert_entities_per_s": round(m.upserts, 1),
        "raw_queue_send_per_s": round(m.sends, 1),
        "events_per_s_over_raw_upserts_per_s": round(ceiling_ratio, 4),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=500, help="events to send (default %(default)s)")
    p.add_argument("--accounts", type=int, default=50, help="accounts to spread them over (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=1, help="threads sending to the queue (default %(default)s)")
    p.add_argument("--workers", type=int, default=0,
                   help="extra queue-worker host processes besides the HTTP host (default %(default)s)")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for the queue to drain")
    p.add_argument("--order", choices=("round-robin", "grouped"), default="round-robin",
                   help="send the events round-robin over the accounts (default), or account after account "
                        "(the hot-account case)")
    p.add_argument("--timers", action="store_true", help="leave the timer sweeps on (off by default)")
    p.add_argument("--otlp", action="store_true",
                   help="run the stack with the local OTLP receiver: the app exports every span, metric and log "
                        "(contract §6), to measure what telemetry costs per event")
    p.add_argument("--keep-logs", action="store_true", help="keep the stack's logs and Azurite's access log")
    args = p.parse_args(argv)
    if not 1 <= args.n <= MAX_EVENTS:
        p.error(f"-n must be 1..{MAX_EVENTS}")
    if not 1 <= args.accounts <= min(args.n, MAX_ACCOUNTS):
        p.error(f"--accounts must be 1..min(n, {MAX_ACCOUNTS})")
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        p.error(f"--concurrency must be 1..{MAX_CONCURRENCY}")
    if not 0 <= args.workers <= MAX_WORKERS:
        p.error(f"--workers must be 0..{MAX_WORKERS}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = run(args)
    except BenchError as exc:
        print(f"bench.events failed: {exc}", file=sys.stderr)
        return 1
    print(f"\nresults written to {write_results('events', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
