"""Card update to settled: latency of `PUT /api/accounts/{id}/payment-method` on a private stack.

    python -m bench.settlement [--accounts 20] [--charges 50] [--subscriptions 10]

Registers each account with `--subscriptions` subscriptions and no card, puts `--charges`
`billing.charge.failed` events per account on `payment-events` (spread over the subscriptions, in
USD and JPY; JPY amounts have no decimals), waits until every charge is outstanding, then, one
account at a time, times `PUT /api/accounts/{id}/payment-method` with `{"token": "tok_visa"}`
(contract §2) from request to answer. Each answer must say settled with every charge paid, the
account must then show every subscription active and an empty balance, and the sandbox gateway
must list one charge per currency for the account. Prints median, p95 (nearest rank), min and
max latency, the storage requests one settlement makes, and the gateway charges made.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import requests
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
    summary,
    wait_drained,
    warn_unexpected,
    write_results,
)

QUEUE = "payment-events"
EMAIL_QUEUE = "email-outbox"
CURRENCIES = ("USD", "JPY")
ROUTE_MISSING = (404, 405, 501)
MAX_ACCOUNTS = 200
MAX_CHARGES = 500
MAX_SUBSCRIPTIONS = 50


@dataclass
class AccountPlan:
    account_id: str
    messages: list[str] = field(default_factory=list)
    charges: dict[str, tuple[str, Decimal, str]] = field(default_factory=dict)  # id -> (sub, amount, cur)

    def totals(self) -> dict[str, Decimal]:
        sums: dict[str, Decimal] = {}
        for _, amount, cur in self.charges.values():
            sums[cur] = sums.get(cur, Decimal(0)) + amount
        return sums


def amount_of(j: int, currency: str) -> Decimal:
    """Deterministic amounts: USD 1.00 to 9.99, JPY 500 to 5499 (no decimals)."""
    if currency == "JPY":
        return Decimal(500 + (j * 113) % 5000)
    return Decimal(100 + (j * 37) % 900) / 100


def plan_account(i: int, charges: int, subscriptions: int) -> AccountPlan:
    plan = AccountPlan(f"acc-settle-{i:04d}")
    for j in range(charges):
        sub = f"s{j % subscriptions + 1}"
        currency = CURRENCIES[(j // subscriptions) % 2]  # every subscription gets both currencies
        amount = amount_of(j, currency)
        charge_id = f"ch-{j:03d}"
        text = f"{amount:.0f}" if currency == "JPY" else f"{amount:.2f}"
        plan.charges[charge_id] = (sub, amount, currency)
        plan.messages.append(cloudevent("billing.charge.failed", {
            "accountId": plan.account_id, "subscriptionId": sub, "chargeId": charge_id, "amount": text,
            "currency": currency, "reason": "card_declined"}))
    return plan


def register(api: Api, plan: AccountPlan, subscriptions: int) -> None:
    api.call("PUT", f"/accounts/{plan.account_id}", {
        "displayName": f"Settlement customer {plan.account_id}", "locale": "en",
        "billingContacts": [f"ap-{plan.account_id}@bench.example"],
        "subscriptions": [{"id": f"s{k + 1}", "name": f"Service {k + 1}"} for k in range(subscriptions)],
    })


def balance_of(view: dict[str, Any]) -> dict[str, Decimal]:
    return {cur: Decimal(v) for cur, v in view["balance"].items()}


def check_outstanding(api: Api, plans: list[AccountPlan]) -> None:
    """Every account's balance is the sum of all its charges, i.e. every charge is outstanding."""
    wrong = [f"{p.account_id}: balance {view['balance']}, expected {p.totals()}"
             for p in plans if balance_of(view := api.call("GET", f"/accounts/{p.account_id}")) != p.totals()]
    if wrong:
        raise BenchError("not every charge is outstanding after the events were applied:\n  " + "\n  ".join(wrong[:10]))


@dataclass
class Setup:
    """The setup phase, measured too: `--charges` events per account in a row is the hot-account
    case (the host runs up to 16 messages at once, so they race for the same account row)."""

    events: int
    seconds: float
    emails: int
    storage: Counter[tuple[str, str, str]]

    def per_event(self, service: str, op: str, name: str) -> float:
        return self.storage[(service, op, name)] / self.events


@dataclass
class Result:
    account_id: str
    latency_ms: float
    follow_up_ms: float  # answer to the emails it caused sent
    storage: Counter[tuple[str, str, str]]
    gateway_charges: int
    problems: list[str]


def settle_one(api: Api, log: StorageLog, bs: BenchStack, plan: AccountPlan, charges: int,
               timeout: float) -> Result:
    """One timed card update; the storage window then stays open until the emails it caused
    have been sent (`email-outbox` empty), so their requests count too."""
    path = f"/accounts/{plan.account_id}/payment-method"
    open_mark = log.mark()
    started = time.perf_counter()
    r = api.request("PUT", path, {"token": "tok_visa"})
    answered = time.perf_counter()
    drained = wait_drained(bs.connection_string, [EMAIL_QUEUE], timeout)
    close_mark = log.mark()
    if r.status_code in ROUTE_MISSING and "no account" not in r.text:
        raise BenchError(
            f"PUT /api{path} answered {r.status_code}: the payment-method route of contract §2 is not "
            f"there (yet?). Body: {r.text[:300]}")
    problems: list[str] = []
    if r.status_code != 200:
        problems.append(f"answered {r.status_code}: {r.text[:300]}")
        answer: dict[str, Any] = {}
    else:
        answer = r.json()
    if answer:
        paid = {p["chargeId"] for p in answer.get("paid", [])}
        if answer.get("settled") is not True:
            problems.append(f"settled is {answer.get('settled')!r}")
        if len(answer.get("paid", [])) != charges or paid != set(plan.charges):
            problems.append(f"{len(answer.get('paid', []))} paid charges in the answer, expected {charges}")
    view = api.call("GET", f"/accounts/{plan.account_id}")
    not_active = [s["id"] for s in view["subscriptions"] if s["state"] != "active"]
    if not_active:
        problems.append(f"subscriptions not active afterwards: {not_active}")
    if view["balance"]:
        problems.append(f"balance afterwards {view['balance']}, expected empty")
    made: list[dict[str, Any]] = requests.get(f"{bs.stack.gateway_url}/charges", params={"accountId": plan.account_id},
                                              timeout=30).json()
    if sorted(c["currency"] for c in made) != sorted(plan.totals()):
        problems.append(f"gateway charges {[(c['currency'], c['amount']) for c in made]}, expected one per "
                        f"currency {sorted(plan.totals())}")
    for c in made:
        want = plan.totals().get(c["currency"])
        if want is not None and Decimal(str(c["amount"])) != want:
            problems.append(f"gateway charged {c['amount']} {c['currency']}, expected {want}")
    storage = count_kinds(r for r in log.window(open_mark, close_mark) if not is_own(r))
    return Result(plan.account_id, (answered - started) * 1000, (drained.at - answered) * 1000, storage,
                  len(made), problems)


def is_own(req: StorageRequest) -> bool:
    """The benchmark's queue-length polls (the product never reads queue metadata)."""
    return req.kind[:2] == ("queue", "properties")


def run(args: argparse.Namespace) -> dict[str, Any]:
    plans = [plan_account(i, args.charges, args.subscriptions) for i in range(args.accounts)]
    with private_stack("settlement", keep_logs=args.keep_logs, timers=args.timers) as bs:
        return measure(bs, plans, args)


def measure(bs: BenchStack, plans: list[AccountPlan], args: argparse.Namespace) -> dict[str, Any]:
    api = Api(bs.api)
    log = StorageLog(bs.access_log, bs.connection_string)
    print(f"registering {len(plans)} accounts with {args.subscriptions} subscriptions each ...", flush=True)
    for plan in plans:
        register(api, plan, args.subscriptions)
    # Fail fast, before a minute of setup, if the route is not there: an unknown account must get
    # the API's own problem+json 404 ("no account"), not the host's route-not-found.
    probe = api.request("PUT", "/accounts/acc-settle-probe/payment-method", {"token": "tok_visa"})
    if probe.status_code in ROUTE_MISSING and "no account" not in probe.text:
        raise BenchError(f"PUT /api/accounts/{{id}}/payment-method answered {probe.status_code}: the route of "
                         f"contract §2 is not there (yet?). Body: {probe.text[:300]}")
    total = sum(len(p.messages) for p in plans)
    wait_drained(bs.connection_string, [QUEUE, EMAIL_QUEUE], args.timeout)
    print(f"sending {total} billing.charge.failed events ({args.charges} per account, USD and JPY) ...", flush=True)
    open_mark = log.mark()
    started = time.perf_counter()
    with QueueClient.from_connection_string(bs.connection_string, QUEUE) as q:
        for plan in plans:
            for text in plan.messages:
                q.send_message(text)
    drained = wait_drained(bs.connection_string, [QUEUE, EMAIL_QUEUE], args.timeout, progress=True)
    close_mark = log.mark()
    check_outstanding(api, plans)
    window = [r for r in log.window(open_mark, close_mark) if not is_own(r) and r.kind != ("queue", "send", QUEUE)]
    storage = count_kinds(window)
    setup = Setup(total, drained.at - started, storage[("queue", "delete", EMAIL_QUEUE)], storage)
    print(f"every charge outstanding and its emails sent after {setup.seconds:.1f} s ({total / setup.seconds:.1f} "
          f"events/s); settling {len(plans)} accounts one at a time ...", flush=True)

    offsets = bs.log_offsets()
    cpu_before = cpu_seconds(bs.stack)
    results = [settle_one(api, log, bs, plan, args.charges, args.timeout) for plan in plans]
    cpu = cpu_diff(cpu_before, cpu_seconds(bs.stack))
    found = invocations(offsets)
    warn_unexpected(found, ("put_payment_method", "email_outbox", "get_account"))
    server_ms, failed = found.get("put_payment_method", ([], 0))
    return report(args, results, server_ms, failed, cpu, setup)


def report(args: argparse.Namespace, results: list[Result], server_ms: list[float], failed: int,
           cpu: dict[str, float], setup: Setup) -> dict[str, Any]:
    lat = summary([r.latency_ms for r in results])
    follow = summary([r.follow_up_ms for r in results])
    server = summary(server_ms) if server_ms else None
    storage: Counter[tuple[str, str, str]] = Counter()
    for r in results:
        storage.update(r.storage)
    n = len(results)
    gateway_charges = sum(r.gateway_charges for r in results)
    per = {k: v / n for k, v in storage.items()}
    billing = sum(v for (s, _, t), v in per.items() if s in ("table", "queue") and t != "sandboxcharges")
    rows = [
        ("accounts settled", f"{n}", f"one at a time, {args.charges} charges over {args.subscriptions} "
                                     "subscriptions each, USD + JPY"),
        ("latency median", f"{lat['median']:.0f} ms", "PUT payment-method, request to answer"),
        ("latency p95", f"{lat['p95']:.0f} ms", "nearest rank"),
        ("latency min / max", f"{lat['min']:.0f} / {lat['max']:.0f} ms", ""),
    ]
    if server:
        rows.append(("function duration", f"{server['median']:.0f} ms", f"median in the host; p95 "
                                                                        f"{server['p95']:.0f} ms, {failed} failed"))
    rows.append(("emails sent by", f"{follow['median']:.0f} ms", f"median after the answer (p95 "
                                                                 f"{follow['p95']:.0f} ms): {EMAIL_QUEUE} empty again"))
    rows += [
        ("gateway charges", f"{gateway_charges}", f"{gateway_charges / n:.2f} per account (expected "
                                                  f"{len(CURRENCIES)}: one per currency)"),
        ("storage requests", f"{billing:.1f}", "per settlement incl. its emails (the gateway's own table "
                                               "excluded)"),
    ]
    for name, used in sorted(cpu.items(), key=lambda kv: -kv[1]):
        rows.append((f"CPU {name}", f"{used * 1000 / n:.0f} ms/settlement", ""))
    rows += [
        ("setup: events", f"{setup.events / setup.seconds:.1f} events/s", f"{setup.events} in {setup.seconds:.1f} s, "
                                                                          f"{args.charges} in a row per account, "
                                                                          f"with their {setup.emails} emails"),
        ("setup: $batch", f"{setup.per_event('table', 'batch', '$batch'):.2f} per event",
         f"account row reads {setup.per_event('table', 'read', 'billing[account]'):.2f} per event; compare "
         "bench.events --order grouped / round-robin"),
        ("setup: storage requests", f"{sum(setup.storage.values()) / setup.events:.1f} per event", ""),
    ]
    rows.append(("load average", load_average(), f"1/5/15 min at the end, {os.cpu_count()} CPUs: more than "
                                                  "that means other work competed for them"))
    print_table("bench.settlement", rows)
    print("\nstorage requests per settlement, by operation:")
    for (service, op, name), count in sorted(storage.items(), key=lambda kv: -kv[1]):
        print(f"  {service:<5} {op:<10} {name:<28} {count / n:7.2f}")
    problems = [f"{r.account_id}: {p}" for r in results for p in r.problems]
    return {
        "benchmark": "settlement",
        "machine": machine(),
        "args": vars(args),
        "setup": {"events": setup.events, "seconds": round(setup.seconds, 2),
                  "events_per_s": round(setup.events / setup.seconds, 2), "emails_sent": setup.emails,
                  "storage_requests_per_event": round(sum(setup.storage.values()) / setup.events, 2),
                  "storage_requests_by_operation": kinds_json(setup.storage)},
        "latency_ms": lat,
        "latency_ms_each": [round(r.latency_ms, 1) for r in results],
        "emails_sent_after_answer_ms": follow,
        "function_duration_ms": server,
        "function_failures": failed,
        "gateway_charges": gateway_charges,
        "storage_requests_per_settlement": round(billing, 2),
        "storage_requests_by_operation_per_settlement": {k: round(v / n, 2)
                                                         for k, v in kinds_json(storage).items()},
        "cpu_seconds": cpu,
        "problems": problems,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.settlement", description=__doc__.splitlines()[0])
    p.add_argument("--accounts", type=int, default=20, help="accounts to settle (default %(default)s)")
    p.add_argument("--charges", type=int, default=50, help="failed charges per account (default %(default)s)")
    p.add_argument("--subscriptions", type=int, default=10, help="subscriptions per account (default %(default)s)")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for the charges to be outstanding")
    p.add_argument("--timers", action="store_true", help="leave the timer sweeps on (off by default)")
    p.add_argument("--keep-logs", action="store_true", help="keep the stack's logs and Azurite's access log")
    args = p.parse_args(argv)
    if not 1 <= args.accounts <= MAX_ACCOUNTS:
        p.error(f"--accounts must be 1..{MAX_ACCOUNTS}")
    if not 1 <= args.subscriptions <= MAX_SUBSCRIPTIONS:
        p.error(f"--subscriptions must be 1..{MAX_SUBSCRIPTIONS}")
    if not 1 <= args.charges <= MAX_CHARGES:
        p.error(f"--charges must be 1..{MAX_CHARGES}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = run(args)
    except BenchError as exc:
        print(f"bench.settlement failed: {exc}", file=sys.stderr)
        return 1
    path = write_results("settlement", results)
    print(f"\nresults written to {path}")
    if results["problems"]:
        print(f"\n{len(results['problems'])} checks failed:", file=sys.stderr)
        for p in results["problems"][:20]:
            print(f"  {p}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
