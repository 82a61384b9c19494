"""The soak's fault injector: what goes wrong while the events flow, and how often it did.

- `worker_kill`: a queue-worker host process gets SIGKILL in the middle of a batch (messages in
  flight, their visibility timeout running) and is started again.
- `azurite_restart`: Azurite is stopped and started again on the same ports and data folder.
  Azurite writes its data to disk every 5 s and on a graceful stop, so the stop is a SIGTERM:
  a SIGKILL would lose the last seconds of acknowledged writes, which no real storage does.
- `email_429`, `email_500`: the email endpoint answers the next sends with that status.
- `gateway_429`, `gateway_500`: the sandbox gateway answers the next calls with that status.
- `gateway_timeout_after_charge`: the gateway stores the charge, then holds the answer longer
  than the product's client waits (10 s), so the product does not know it charged.

With `--gateway stripe` the gateway faults are the Stripe-compatible sandbox's own hooks (its
`POST /faults`, the sandbox gateway's modes): 429 is Stripe's `rate_limit` error and 500 its
`api_error`, which the `stripe` SDK retries twice under the same Idempotency-Key before the
adapter sees them, so a count of 4 outlasts one call's retries as it outlasts the http adapter's
attempts; a held answer is held past the Stripe adapter's 30 s timeout, and so are the replayed
answers to the SDK's two retries of that charge under its key (`"retries": 2`), so the product
still does not know it charged and reads the PaymentIntent back.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests

from devstack.stack import LocalStack

GATEWAY_TIMEOUT_S = 12  # longer than the product's gateway client waits per attempt
STRIPE_TIMEOUT_S = 32  # longer than the Stripe adapter waits per attempt (StripeGateway's timeout, 30 s)
STRIPE_RETRIES = 2  # the Stripe adapter's `max_network_retries`: the SDK's retries under the same key


@dataclass
class Injector:
    stack: LocalStack
    counts: Counter[str] = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)
    gateway_kind: str = "http"
    """`http`: faults at the sandbox gateway; `stripe`: at the Stripe-compatible sandbox."""

    @property
    def gateway_url(self) -> str:
        return self.stack.stripe_url if self.gateway_kind == "stripe" else self.stack.gateway_url

    def _note(self, name: str, what: str) -> None:
        self.counts[name] += 1
        self.log.append(f"{time.strftime('%H:%M:%S')} {name}: {what}")
        print(f"  fault {name}: {what}", flush=True)

    def worker_kill(self, worker: str = "worker1", down_s: float = 2.0) -> None:
        pid = self.stack.process(worker).pid
        self.stack.restart(worker, kill=True, pause=down_s)
        self._note("worker_kill", f"SIGKILL {worker} (pid {pid}), restarted after {down_s:.0f} s")

    def azurite_restart(self, down_s: float = 3.0) -> None:
        self.stack.restart("azurite", pause=down_s)
        self._note("azurite_restart", f"graceful stop, {down_s:.0f} s down, started on the same data")

    def email_quota(self, per_minute: int | None) -> None:
        """The email endpoint enforces an ACS-like quota (issue 21: 429 with Retry-After beyond
        it), or, with None, no longer."""
        url = f"{self.stack.email_url}/quota"
        if per_minute is None:
            requests.delete(url, timeout=10).raise_for_status()
            return
        requests.put(url, json={"perMinute": per_minute}, timeout=10).raise_for_status()
        self._note("email_quota", f"the email endpoint allows {per_minute} sends a minute, 429 beyond")

    def email(self, status: int, count: int) -> None:
        r = requests.post(f"{self.stack.email_url}/faults", json={"status": status, "count": count}, timeout=10)
        r.raise_for_status()
        self._note(f"email_{status}", f"the next {count} sends answered {status}")

    def gateway(self, status: int, count: int) -> None:
        r = requests.post(f"{self.gateway_url}/faults", json={"mode": "fail_next", "count": count,
                                                               "status": status}, timeout=10)
        r.raise_for_status()
        self._note(f"gateway_{status}", f"the next {count} {self.gateway_kind} gateway calls answered {status}")

    def gateway_timeout_after_charge(self, count: int) -> None:
        """`count` charges are made and their answers held past the client's timeout; with Stripe,
        the answers to the SDK's retries of each as well."""
        stripe = self.gateway_kind == "stripe"
        seconds = STRIPE_TIMEOUT_S if stripe else GATEWAY_TIMEOUT_S
        body: dict[str, Any] = {"mode": "timeout_after_charge", "count": count, "seconds": seconds,
                                **({"retries": STRIPE_RETRIES} if stripe else {})}
        requests.post(f"{self.gateway_url}/faults", json=body, timeout=10).raise_for_status()
        retries = f" (and to their {STRIPE_RETRIES} SDK retries)" if stripe else ""
        self._note("gateway_timeout_after_charge", f"the next {count} charges stored, answers{retries} "
                                                   f"held {seconds} s")

    def email_faults_left(self) -> int:
        faults = requests.get(f"{self.stack.email_url}/faults", timeout=10).json()["faults"]
        return int(sum(f["count"] for f in faults))

    def gateway_faults_left(self) -> int:
        f = requests.get(f"{self.gateway_url}/faults", timeout=10).json()
        return int(f["failNext"]["count"] + f["timeoutAfterCharge"]["count"])
