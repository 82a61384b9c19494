"""Signed webhook deliveries, as Stripe sends them.

Each event is POSTed as JSON to the configured URL with
`Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<payload>" keyed with the secret>`,
which `stripe.Webhook.construct_event(payload, header, secret)` verifies. The signature's time is
the real time (a receiver checks it against its own clock, 300 s tolerance), never the sandbox's
moved clock. Knobs: `delay` seconds before the first delivery, `repeat` extra deliveries of every
event (as Stripe may deliver twice), `types` (the event types sent; Stripe sends what an endpoint
subscribes to), and a failed delivery (no answer or not 2xx) is retried up to `retries` times with
doubling back-off.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

log = logging.getLogger("devstack.stripe_sandbox.webhooks")

DEFAULT_SECRET = "whsec_sandbox_local_only_not_a_secret"
DEFAULT_TYPES = ("payment_intent.succeeded", "payment_intent.payment_failed")


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header for `payload`."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode("utf-8"), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


@dataclass
class WebhookSettings:
    url: str | None = None
    secret: str = DEFAULT_SECRET
    delay: float = 0.0
    repeat: int = 0
    retries: int = 3
    retry_backoff: float = 1.0
    types: tuple[str, ...] = DEFAULT_TYPES

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "delaySeconds": self.delay, "repeat": self.repeat, "retries": self.retries,
                "retryBackoffSeconds": self.retry_backoff, "types": list(self.types),
                "secretSet": bool(self.secret)}


@dataclass
class Delivery:
    event_id: str
    event_type: str
    attempt: int
    at: float
    status: int | None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"eventId": self.event_id, "type": self.event_type, "attempt": self.attempt, "at": self.at,
                "status": self.status, "error": self.error}


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    event: dict[str, Any] = field(compare=False)
    attempt: int = field(compare=False, default=1)


class WebhookSender:
    """A thread that delivers events when they are due."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self.deliveries: list[Delivery] = []
        self._jobs: list[_Job] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="stripe-sandbox-webhooks", daemon=True)
        self._thread.start()

    def enqueue(self, event: dict[str, Any]) -> None:
        s = self.settings
        if not s.url or event["type"] not in s.types:
            return
        with self._cond:
            for _ in range(1 + s.repeat):
                heapq.heappush(self._jobs, _Job(time.monotonic() + s.delay, next(self._seq), event))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._jobs)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout=10)
        self._session.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (not self._jobs or self._jobs[0].due > time.monotonic()):
                    self._cond.wait(None if not self._jobs else max(0.0, self._jobs[0].due - time.monotonic()))
                if self._stopping:
                    return
                job = heapq.heappop(self._jobs)
            self._deliver(job)

    def _deliver(self, job: _Job) -> None:
        s = self.settings
        if not s.url:
            return
        payload = json.dumps(job.event, indent=2)
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                   "Stripe-Signature": sign(payload, s.secret)}
        status: int | None = None
        error: str | None = None
        try:
            response = self._session.post(s.url, data=payload.encode("utf-8"), headers=headers, timeout=10)
            status = response.status_code
        except requests.RequestException as exc:
            error = type(exc).__name__
        with self._cond:
            self.deliveries.append(Delivery(job.event["id"], job.event["type"], job.attempt, time.time(), status,
                                            error))
            if (status is None or not 200 <= status < 300) and job.attempt <= s.retries:
                due = time.monotonic() + s.retry_backoff * 2 ** (job.attempt - 1)
                heapq.heappush(self._jobs, _Job(due, next(self._seq), job.event, job.attempt + 1))
        log.info("webhook %s %s -> %s", job.event["type"], job.event["id"], status or error)
