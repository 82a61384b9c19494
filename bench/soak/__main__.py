"""`python -m bench.soak`: the whole product under load and faults, checked against a model.

    python -m bench.soak                 # full: 2,000 accounts, 20,000 messages
    python -m bench.soak --quick         # CI: 200 accounts, 2,000 messages, every fault once
    python -m bench.soak --seed 7 --accounts 50 --events 400
    python -m bench.soak --quick --gateway stripe   # the app charges through the Stripe sandbox

Prints each difference between the product and the model, then `N differences`, then the
summary; exits 1 on any difference (2 when the run itself could not finish). See bench/README.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.common import classify, load_average, parse_line, print_table, write_results
from bench.soak.check import check
from bench.soak.faults import Injector
from bench.soak.plan import generate
from bench.soak.run import Soak, soak_stack

# The soak's own storage requests, told apart by URL: its enqueues, its queue-length and
# queue-list reads, its reads of the lifecycle queue (the product only sends to it).
OWN = {("queue", "send", "payment-events"), ("queue", "receive", "subscription-lifecycle"),
       ("queue", "delete", "subscription-lifecycle")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="200 accounts, 2,000 messages (CI)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--accounts", type=int, help="default 2,000 (200 with --quick)")
    p.add_argument("--events", type=int, help="messages put on the queue, duplicates included; default 10 per account")
    p.add_argument("--workers", type=int, default=2, help="queue/timer worker processes besides the HTTP host")
    p.add_argument("--keep-logs", action="store_true")
    p.add_argument("--gateway", choices=["http", "stripe"], default="http",
                   help="http: the sandbox gateway (default); stripe: the Stripe-compatible sandbox, through the "
                        "Stripe adapter (PAYMENT_GATEWAY=stripe)")
    args = p.parse_args(argv)
    n_accounts = args.accounts or (200 if args.quick else 2000)
    n_events = args.events or 10 * n_accounts
    if not 4 <= n_accounts <= 20_000 or not n_accounts <= n_events <= 200_000 or not 2 <= args.workers <= 8:
        p.error("--accounts 4..20000, --events accounts..200000, --workers 2..8")
    plan = generate(args.seed, n_accounts, n_events, malformed=max(4, n_events // 500))
    messages = sum(len(m) for m in plan.messages.values())
    dups = sum(m.duplicate for ms in plan.messages.values() for m in ms)
    malformed = sum(m.event_id is None for ms in plan.messages.values() for m in ms)
    print(f"soak: seed {args.seed}, {n_accounts} accounts, {messages} messages ({dups} duplicates), "
          f"{args.workers} workers, {args.gateway} gateway", flush=True)
    started = time.perf_counter()
    keep = {"logs": args.keep_logs}
    with soak_stack(args.workers, keep, args.gateway) as (stack, workdir):
        soak = Soak(plan, stack, Injector(stack, gateway_kind=args.gateway), full=not args.quick)
        access_log = workdir / "azurite-access.log"
        soak.play()
        requests_in_run = _storage_requests(access_log)
        seen = soak.observe()
        report = check(plan, seen)
        keep["logs"] = keep["logs"] or bool(report.differences)  # Azurite's data too, to look into
    elapsed = time.perf_counter() - started
    for d in report.differences:
        print(f"DIFFERENCE {d}")
    print(f"{len(report.differences)} differences", flush=True)
    rows = [
        ("accounts", f"{n_accounts}", ""),
        ("messages", f"{messages}", f"{dups} duplicates, {malformed} malformed"),
        *[(f"fault {name}", f"{n}", "") for name, n in sorted(soak.faults.counts.items())],
        ("producer resends", f"{soak.send_retries}", "sends retried while storage was down"),
        ("card updates racing events", f"{len(soak.card_updates)}",
         f"{sum(soak.card_updates.values())} PUT attempts"),
        ("dead letters replayed", f"{seen.replayed}", "valid events dead-lettered for a passing reason"),
        *[(k, f"{v}", "") for k, v in sorted(report.figures.items())],
        ("time", f"{elapsed:.0f} s", f"{soak.busy_seconds:.0f} s playing the days"),
        ("events/s", f"{messages / soak.busy_seconds:.1f}", "messages over the time playing the days"),
        ("storage requests / event", f"{requests_in_run / messages:.1f}",
         "the product's, sweeps and emails included"),
        ("load average", load_average(), ""),
    ]
    print_table("soak summary", rows)
    write_results("soak", {"seed": args.seed, "gateway": args.gateway, "accounts": n_accounts, "messages": messages,
                           "duplicates": dups,
                           "faults": dict(soak.faults.counts), "fault_log": soak.faults.log,
                           "figures": dict(report.figures), "differences": report.differences,
                           "seconds": elapsed, "busy_seconds": soak.busy_seconds,
                           "storage_requests": requests_in_run})
    return 1 if report.differences else 0


def _storage_requests(access_log: Path) -> int:
    n = 0
    with access_log.open(errors="replace") as f:
        for line in f:
            req = parse_line(line)
            if req is None:
                continue
            kind = classify(req)
            if kind in OWN or kind[1] in ("properties", "admin") or "comp=list" in req.query:
                continue
            n += 1
    return n


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:
        print(f"soak could not finish: {exc}", file=sys.stderr)
        sys.exit(2)
