"""The Stripe-compatible sandbox's HTTP server: Stripe's REST API (the part a Stripe adapter uses)
under /v1, and development routes beside it.

Stripe's API (form-encoded bodies, `Authorization: Bearer sk_test_...`, Stripe's error objects):
  POST /v1/customers                            metadata, email, name, payment_method, invoice_settings
  GET  /v1/customers/search?query=metadata['accountId']:'acc-1'
  GET  /v1/customers/{id};  POST /v1/customers/{id}   invoice_settings[default_payment_method]=pm_...
  POST /v1/payment_methods                      type=card&card[token]=tok_visa -> a new PaymentMethod
  GET  /v1/payment_methods/{id};  POST /v1/payment_methods/{id}/attach   customer=cus_...
  POST /v1/payment_intents                      amount, currency, customer, payment_method, confirm,
                                                off_session, metadata[...], return_url, ...
  GET  /v1/payment_intents?customer=&limit=&starting_after=&ending_before=
  GET  /v1/payment_intents/search?query=metadata['idempotencyKey']:'...'   (lags by the search lag)
  GET  /v1/payment_intents/{id};  POST /v1/payment_intents/{id}/confirm
Development routes (no key):
  GET  /health, /stats
  GET  /payment_intents[?customer=&accountId=], /customers, /events     what it holds, oldest first
  GET  /charges[?accountId=]     every charge attempt in the sandbox gateway's shape (idempotencyKey,
                                 amount as a decimal string, currency, status, accountId, createdAt)
  GET/POST/DELETE /faults        the sandbox gateway's fault modes (fail_next, timeout_after_charge,
                                 decline_next, malformed_next), same JSON; and drop_after_charge
                                 (the charge is made, the connection closed without an answer).
                                 The after-charge modes act on a replayed answer to a charge too;
                                 timeout_after_charge's "retries": N also holds the next N replays
                                 under each held charge's Idempotency-Key (an SDK's retries).
  GET/PUT /settings              searchLagSeconds, chargeLatencySeconds, rateLimitPerSecond,
                                 validateOnAttach, webhook {url, secret, delaySeconds, repeat, retries,
                                 retryBackoffSeconds, types}
  GET/POST/DELETE /clock         {"advanceSeconds": N} moves the sandbox's clock forward
  GET  /webhooks/deliveries      every delivery attempt and its answer
  GET  /3ds/{intent}             the bank's 3-D Secure page: "Complete" and "Fail" buttons, which
                                 then redirect to the return_url with payment_intent=...&redirect_status=...
Card data never enters it: raw card numbers are refused, as Stripe refuses them by default.
"""

from __future__ import annotations

import copy
import html
import json
import logging
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from devstack.stripe_sandbox import currency, forms
from devstack.stripe_sandbox.errors import StripeError, invalid_request, rate_limited
from devstack.stripe_sandbox.state import (
    DEFAULT_API_VERSION,
    Clock,
    IdempotencyKeys,
    Json,
    RequestContext,
    Store,
    check_params,
    expand_paths,
    new_id,
)
from devstack.stripe_sandbox.webhooks import WebhookSender, WebhookSettings

log = logging.getLogger("devstack.stripe_sandbox")

DEFAULT_API_KEY = "sk_test_sandbox_local_only"
MAX_BODY_BYTES = 64 * 1024
_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")

# (method, pattern, route name) in match order: `search` before `{id}`.
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(p), f"{m} {n}")
    for m, p, n in [
        ("POST", r"/v1/customers", "/v1/customers"),
        ("GET", r"/v1/customers/search", "/v1/customers/search"),
        ("GET", r"/v1/customers/(?P<id>[^/]+)", "/v1/customers/{customer}"),
        ("POST", r"/v1/customers/(?P<id>[^/]+)", "/v1/customers/{customer}"),
        ("POST", r"/v1/payment_methods", "/v1/payment_methods"),
        ("GET", r"/v1/payment_methods/(?P<id>[^/]+)", "/v1/payment_methods/{payment_method}"),
        ("POST", r"/v1/payment_methods/(?P<id>[^/]+)/attach", "/v1/payment_methods/{payment_method}/attach"),
        ("POST", r"/v1/payment_intents", "/v1/payment_intents"),
        ("GET", r"/v1/payment_intents", "/v1/payment_intents"),
        ("GET", r"/v1/payment_intents/search", "/v1/payment_intents/search"),
        ("GET", r"/v1/payment_intents/(?P<id>[^/]+)", "/v1/payment_intents/{intent}"),
        ("POST", r"/v1/payment_intents/(?P<id>[^/]+)/confirm", "/v1/payment_intents/{intent}/confirm"),
    ]
]
ROUTE_NAMES = tuple(dict.fromkeys(name for _, _, name in _ROUTES))
CHARGE_ROUTES = ("POST /v1/payment_intents", "POST /v1/payment_intents/{intent}/confirm")


def route_of(method: str, path: str) -> tuple[str, str | None] | None:
    for m, pattern, name in _ROUTES:
        if m == method:
            match = pattern.fullmatch(path)
            if match is not None:
                return name, match.groupdict().get("id")
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_seconds(value: Any, high: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= high


class DevError(Exception):
    """A development route's error (plain JSON, not Stripe's shape)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Faults:
    """Injected failures, consumed one request at a time: the sandbox gateway's modes."""

    fail_next: int = 0
    fail_status: int = 503
    fail_code: str = "injected_fault"
    fail_route: str | None = None
    timeout_after_charge: int = 0
    timeout_seconds: float = 3.0
    timeout_retries: int = 0
    held_keys: dict[str, int] = field(default_factory=dict)  # Idempotency-Key -> replays still to hold
    decline_next: int = 0
    decline_code: str = "card_declined"
    malformed_next: int = 0
    malformed_after_charge: bool = True
    drop_after_charge: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_failure(self, route: str) -> tuple[int, str] | None:
        with self.lock:
            if self.fail_next <= 0 or self.fail_route not in (None, route):
                return None
            self.fail_next -= 1
            return self.fail_status, self.fail_code

    def take_timeout(self, key: str | None = None, replay: bool = False) -> float | None:
        """Seconds to hold this answer to a charge request, or None. With `retries`, the replayed
        answers to the next requests under a held charge's Idempotency-Key are held too (a client
        retrying the same request over the same broken network), without counting against `count`."""
        with self.lock:
            if replay and key is not None and self.held_keys.get(key, 0) > 0:
                self.held_keys[key] -= 1
                return self.timeout_seconds
            if self.timeout_after_charge <= 0:
                return None
            self.timeout_after_charge -= 1
            if key is not None and not replay and self.timeout_retries:
                self.held_keys[key] = self.timeout_retries
            return self.timeout_seconds

    def take_decline(self) -> str | None:
        with self.lock:
            if self.decline_next <= 0:
                return None
            self.decline_next -= 1
            return self.decline_code

    def take_drop(self) -> bool:
        with self.lock:
            if self.drop_after_charge <= 0:
                return False
            self.drop_after_charge -= 1
            return True

    def take_malformed(self) -> bool | None:
        with self.lock:
            if self.malformed_next <= 0:
                return None
            self.malformed_next -= 1
            return self.malformed_after_charge

    def to_json(self) -> Json:
        with self.lock:
            return {
                "failNext": {"count": self.fail_next, "status": self.fail_status, "code": self.fail_code,
                             "route": self.fail_route},
                "timeoutAfterCharge": {"count": self.timeout_after_charge, "seconds": self.timeout_seconds,
                                       "retries": self.timeout_retries},
                "declineNext": {"count": self.decline_next, "declineCode": self.decline_code},
                "malformedNext": {"count": self.malformed_next, "afterCharge": self.malformed_after_charge},
                "dropAfterCharge": {"count": self.drop_after_charge},
            }

    def set(self, body: Json) -> None:
        mode, count = body.get("mode"), body.get("count", 1)
        if not _is_int(count) or count < 0:
            raise DevError(400, "invalid_fault", "count must be a non-negative integer")
        if mode == "fail_next":
            status, code = body.get("status", 503), body.get("code")
            if not _is_int(status) or not 400 <= status <= 599:
                raise DevError(400, "invalid_fault", "status must be an HTTP error status (400-599)")
            if code is None:
                code = "rate_limit" if status == 429 else "injected_fault"
            if not isinstance(code, str) or not _CODE.fullmatch(code):
                raise DevError(400, "invalid_fault", "code must be a short snake_case word")
            route = body.get("route")
            if route not in (None, *ROUTE_NAMES):
                raise DevError(400, "invalid_fault", f"route must be one of {', '.join(ROUTE_NAMES)}")
            with self.lock:
                self.fail_next, self.fail_status, self.fail_code, self.fail_route = count, status, code, route
        elif mode == "timeout_after_charge":
            seconds, retries = body.get("seconds", 3), body.get("retries", 0)
            if not _is_seconds(seconds, 120) or seconds == 0:
                raise DevError(400, "invalid_fault", "seconds must be a number in (0, 120]")
            if not _is_int(retries) or not 0 <= retries <= 10:
                raise DevError(400, "invalid_fault", "retries must be an integer in [0, 10]")
            with self.lock:
                self.timeout_after_charge, self.timeout_seconds = count, float(seconds)
                self.timeout_retries = retries
        elif mode == "decline_next":
            code = body.get("declineCode", "card_declined")
            if not isinstance(code, str) or not _CODE.fullmatch(code):
                raise DevError(400, "invalid_fault", "declineCode must be a short snake_case word")
            with self.lock:
                self.decline_next, self.decline_code = count, code
        elif mode == "malformed_next":
            after = body.get("afterCharge", True)
            if not isinstance(after, bool):
                raise DevError(400, "invalid_fault", "afterCharge must be true or false")
            with self.lock:
                self.malformed_next, self.malformed_after_charge = count, after
        elif mode == "drop_after_charge":
            with self.lock:
                self.drop_after_charge = count
        else:
            raise DevError(400, "invalid_fault", 'mode must be "fail_next", "timeout_after_charge", '
                                                 '"decline_next", "malformed_next" or "drop_after_charge"')

    def clear(self) -> None:
        with self.lock:
            self.fail_next = self.timeout_after_charge = self.decline_next = self.malformed_next = 0
            self.drop_after_charge = self.timeout_retries = 0
            self.held_keys.clear()

    def error_for(self, status: int, code: str) -> StripeError:
        """An injected failure in Stripe's shape."""
        if status == 429:
            err = rate_limited()
            err.body["code"] = code
            return err
        if status == 401:
            return StripeError(401, "invalid_request_error", "Invalid API Key provided (fault injected).")
        if status == 402:
            return StripeError(402, "card_error", "Your card was declined. (fault injected)", code="card_declined",
                               decline_code="generic_decline")
        if status >= 500:
            return StripeError(status, "api_error", "An unknown error occurred (fault injected by POST /faults).",
                               code=code)
        return invalid_request("Fault injected by POST /faults.", code=code, status=status)


class RateLimiter:
    """At most `per_second` /v1 requests in any second (Stripe's test mode allows 25); None: off."""

    def __init__(self) -> None:
        self.per_second: int | None = None
        self._times: list[float] = []
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            if self.per_second is None:
                return True
            now = time.monotonic()
            self._times = [t for t in self._times if now - t < 1.0]
            if len(self._times) >= self.per_second:
                return False
            self._times.append(now)
            return True


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    routes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)

    def request(self, route: str) -> None:
        with self.lock:
            self.routes[route] += 1

    def answered(self, status: int) -> None:
        with self.lock:
            self.statuses[str(status)] += 1

    def event(self, name: str) -> None:
        with self.lock:
            self.events[name] += 1

    def to_json(self) -> Json:
        with self.lock:
            return {"requests": sum(self.routes.values()), "byRoute": dict(self.routes),
                    "byStatus": dict(self.statuses), "events": dict(self.events)}


class StripeSandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], *, webhook: WebhookSettings | None = None,
                 public_url: str | None = None) -> None:
        super().__init__(address, StripeSandboxHandler)
        self.clock = Clock()
        self.store = Store(self.clock)
        self.keys = IdempotencyKeys(self.clock)
        self.faults = Faults()
        self.stats = Stats()
        self.rate_limiter = RateLimiter()
        self.stopping = threading.Event()
        self.charge_latency = 0.0
        self.webhooks = WebhookSender(webhook or WebhookSettings())
        self.store.on_event = self.webhooks.enqueue
        self._public_url = public_url

    @property
    def url(self) -> str:
        if self._public_url:
            return self._public_url.rstrip("/")
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def settings_json(self) -> Json:
        return {
            "searchLagSeconds": self.store.search_lag,
            "chargeLatencySeconds": self.charge_latency,
            "rateLimitPerSecond": self.rate_limiter.per_second,
            "validateOnAttach": self.store.validate_on_attach,
            "webhook": self.webhooks.settings.to_json(),
        }

    def update_settings(self, body: Json) -> None:
        known = {"searchLagSeconds", "chargeLatencySeconds", "rateLimitPerSecond", "validateOnAttach", "webhook"}
        for name in body:
            if name not in known:
                raise DevError(400, "invalid_settings", f"unknown setting {name!r}; known: {sorted(known)}")
        if "searchLagSeconds" in body and not _is_seconds(body["searchLagSeconds"], 3600):
            raise DevError(400, "invalid_settings", "searchLagSeconds must be a number in [0, 3600]")
        if "chargeLatencySeconds" in body and not _is_seconds(body["chargeLatencySeconds"], 60):
            raise DevError(400, "invalid_settings", "chargeLatencySeconds must be a number in [0, 60]")
        rate = body.get("rateLimitPerSecond")
        if rate is not None and (not _is_int(rate) or rate < 1):
            raise DevError(400, "invalid_settings", "rateLimitPerSecond must be a positive integer or null")
        if "validateOnAttach" in body and not isinstance(body["validateOnAttach"], bool):
            raise DevError(400, "invalid_settings", "validateOnAttach must be true or false")
        hook = body.get("webhook", {})
        if not isinstance(hook, dict):
            raise DevError(400, "invalid_settings", "webhook must be an object")
        new = copy.copy(self.webhooks.settings)
        for name, value in hook.items():
            if name == "url" and (value is None or (isinstance(value, str) and value.startswith("http"))):
                new.url = value
            elif name == "secret" and isinstance(value, str) and value:
                new.secret = value
            elif name == "delaySeconds" and _is_seconds(value, 3600):
                new.delay = float(value)
            elif name == "repeat" and _is_int(value) and 0 <= value <= 10:
                new.repeat = value
            elif name == "retries" and _is_int(value) and 0 <= value <= 10:
                new.retries = value
            elif name == "retryBackoffSeconds" and _is_seconds(value, 600):
                new.retry_backoff = float(value)
            elif name == "types" and isinstance(value, list) and all(isinstance(t, str) for t in value):
                new.types = tuple(value)
            else:
                raise DevError(400, "invalid_settings", f"webhook.{name} has an invalid value")
        if "searchLagSeconds" in body:
            self.store.search_lag = float(body["searchLagSeconds"])
        if "chargeLatencySeconds" in body:
            self.charge_latency = float(body["chargeLatencySeconds"])
        if "rateLimitPerSecond" in body:
            self.rate_limiter.per_second = rate
        if "validateOnAttach" in body:
            self.store.validate_on_attach = body["validateOnAttach"]
        self.webhooks.settings = new

    def charges_json(self, account: str | None) -> list[Json]:
        """Every charge attempt, in the sandbox gateway's `GET /charges` shape."""
        with self.store.lock:
            out = []
            for ident, pi in self.store.intents.items():
                notes = self.store.notes[ident]
                if notes.attempts == 0:
                    continue
                meta = pi["metadata"]
                if account is not None and meta.get("accountId") != account:
                    continue
                error = pi["last_payment_error"] or {}
                status = {"succeeded": "succeeded", "requires_action": "requires_action"}.get(
                    pi["status"], "declined" if error else pi["status"])
                out.append({
                    "id": ident,
                    "idempotencyKey": meta.get("idempotencyKey") or notes.idempotency_key,
                    "status": status,
                    "amount": currency.to_decimal_string(pi["amount"], pi["currency"]),
                    "currency": pi["currency"].upper(),
                    "accountId": meta.get("accountId", ""),
                    "customer": pi["customer"],
                    "description": pi["description"] or "",
                    "declineCode": error.get("decline_code") or error.get("code"),
                    "attempts": notes.attempts,
                    "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(notes.created_precise))
                    + f".{int(notes.created_precise % 1 * 1_000_000):06d}Z",
                })
            out.sort(key=lambda c: (c["createdAt"], c["id"]))
            return out


class _Garbled:
    """An answer body that is not JSON, as a broken proxy might send."""

    text = "<html><body>502 Bad Gateway</body></html>"


class _Dropped:
    """No answer at all: the connection is closed once the request was handled, as when the network
    fails on the way back."""


class StripeSandboxHandler(BaseHTTPRequestHandler):
    server: StripeSandboxServer
    protocol_version = "HTTP/1.1"
    server_version = "StripeSandbox/1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: without it a kept-alive
    # connection waits for the client's delayed ACK (about 40 ms) on every answer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- plumbing ------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        self._request_id = new_id("req_", 14)
        extra: dict[str, str] = {}
        try:
            self._raw = self._read_body()
            if path.startswith("/v1/"):
                status, body, extra = self._stripe(method, path, parts.query)
            else:
                self.server.stats.request(f"{method} {path.split('/')[1] if '/' in path else path}")
                status, body, extra = self._dev(method, path, parts.query)
        except StripeError as err:
            status, body, extra = err.status, err.to_json(), err.headers
        except DevError as err:
            status, body = err.status, {"error": {"code": err.code, "message": err.message}}
        except Exception:
            log.exception("stripe sandbox: %s %s failed", method, path)
            status, body = 500, StripeError(500, "api_error", "The Stripe sandbox failed.").to_json()
        if isinstance(body, _Dropped):
            self.server.stats.answered(0)
            self.close_connection = True  # the handler returns, the socket closes: the client reads nothing
        elif not isinstance(body, _Sent):
            self._send(status, body, extra)

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise invalid_request("Bad Content-Length.") from None
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            raise invalid_request(f"Request bodies are limited to {MAX_BODY_BYTES} bytes.", status=413)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: Any, headers: dict[str, str], *, content_type: str = "application/json",
              raw: bytes | None = None) -> None:
        self.server.stats.answered(status)
        if raw is not None:
            payload = raw
        elif isinstance(body, _Garbled):
            payload, content_type = body.text.encode(), "text/html"
        elif isinstance(body, str):
            payload = body.encode("utf-8")
        else:
            payload = json.dumps(body, indent=2).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Request-Id", self._request_id)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.info("%s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:
        log.info(format, *args)

    # -- Stripe's API --------------------------------------------------------------------------

    def _stripe(self, method: str, path: str, query: str) -> tuple[int, Any, dict[str, str]]:
        srv = self.server
        found = route_of(method, path)
        route = found[0] if found else f"{method} {path}"
        srv.stats.request(route)
        version = self.headers.get("Stripe-Version") or DEFAULT_API_VERSION
        headers = {"Stripe-Version": version}
        failure = srv.faults.take_failure(route)
        if failure is not None:
            srv.stats.event("fault_injected")
            raise srv.faults.error_for(*failure)
        self._authenticate()
        if not srv.rate_limiter.allow():
            srv.stats.event("rate_limited")
            raise rate_limited()
        if found is None:
            raise invalid_request(
                f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help "
                "at https://support.stripe.com/.", status=404)
        name, ident = found
        try:
            params = forms.parse(self._raw.decode("utf-8") if method == "POST" else query)
        except (forms.FormError, UnicodeDecodeError) as exc:
            raise invalid_request(str(exc), param=getattr(exc, "param", None)) from None
        key = self.headers.get("Idempotency-Key") if method == "POST" else None
        ctx = RequestContext(self._request_id, key, version, srv.url)
        charging = name in CHARGE_ROUTES and (name.endswith("/confirm") or params.get("confirm") == "true")
        malformed = srv.faults.take_malformed() if charging else None
        if malformed is False:
            srv.stats.event("fault_injected")
            return 200, _Garbled(), headers
        if key is None:
            try:
                status, body = self._execute(name, ident, params, ctx, charging)
            except StripeError as err:
                instead = self._after_charge(charging, malformed) if err.status == 402 else None
                if instead is not None:
                    return 200, instead, headers
                raise
            return self._answer(status, body, headers, self._after_charge(charging, malformed))
        if len(key) > 255:
            raise invalid_request("Idempotency-Key must be at most 255 characters.", param="Idempotency-Key")
        headers["Idempotency-Key"] = key
        replay = srv.keys.begin(key, name, params)
        if replay is not None:
            srv.stats.event("idempotent_replay")
            replayed = {**replay.headers, "Idempotent-Replayed": "true"}
            instead = self._after_charge(charging, malformed, key, replay=True)
            return self._answer(replay.status, json.loads(replay.body), replayed, instead)
        try:
            status, body = self._execute(name, ident, params, ctx, charging)
        except StripeError as err:
            if err.status == 402 or err.status >= 500:  # the endpoint ran: Stripe keeps its answer
                srv.keys.finish(key, err.status, json.dumps(err.to_json()).encode(), {**headers, **err.headers})
                instead = self._after_charge(charging, malformed, key) if err.status == 402 else None
                if instead is not None:
                    return 200, instead, headers
            else:
                srv.keys.forget(key)
            raise
        except BaseException:
            srv.keys.forget(key)
            raise
        srv.keys.finish(key, status, json.dumps(body).encode(), headers)
        return self._answer(status, body, headers, self._after_charge(charging, malformed, key))

    @staticmethod
    def _answer(status: int, body: Any, headers: dict[str, str],
                instead: _Garbled | _Dropped | None) -> tuple[int, Any, dict[str, str]]:
        return (200, instead, headers) if instead is not None else (status, body, headers)

    def _after_charge(self, charging: bool, malformed: bool | None, key: str | None = None,
                      replay: bool = False) -> _Garbled | _Dropped | None:
        """The fault modes that act once a charge was made or declined, on the first answer and on
        a replayed one alike (an SDK's retry under the same Idempotency-Key can lose its answer the
        same way): a held answer (`timeout_after_charge`), then a connection closed without an
        answer (`drop_after_charge`) or a garbled body (`malformed_next` with afterCharge).
        Returns what to send instead of the answer, if anything."""
        srv = self.server
        if not charging:
            return None
        delay = srv.faults.take_timeout(key, replay)
        if delay is not None:
            srv.stats.event("fault_injected")
            srv.stopping.wait(delay)
        if srv.faults.take_drop():
            srv.stats.event("fault_injected")
            return _Dropped()
        if malformed:
            srv.stats.event("fault_injected")
            return _Garbled()
        return None

    def _execute(self, name: str, ident: str | None, params: Json, ctx: RequestContext,
                 charging: bool) -> tuple[int, Json]:
        srv, store = self.server, self.server.store
        expand = expand_paths(params)
        if charging:
            srv.stopping.wait(srv.charge_latency)
            srv.stats.event("charge_attempt")
        decline = srv.faults.take_decline
        if name == "POST /v1/customers":
            obj = store.create_customer(params)
        elif name == "GET /v1/customers/search":
            obj = store.search("customer", params)
        elif name == "GET /v1/customers/{customer}":
            check_params(params, {"expand"})
            obj = store.get_customer(ident or "", param="customer")
        elif name == "POST /v1/customers/{customer}":
            obj = store.update_customer(ident or "", params)
        elif name == "POST /v1/payment_methods":
            obj = store.create_payment_method(params)
        elif name == "GET /v1/payment_methods/{payment_method}":
            check_params(params, {"expand"})
            obj = store.materialise(ident or "", "payment_method", status=404)
        elif name == "POST /v1/payment_methods/{payment_method}/attach":
            obj = store.attach(ident or "", params)
        elif name == "POST /v1/payment_intents":
            obj = store.create_intent(params, ctx, decline)
        elif name == "GET /v1/payment_intents":
            obj = store.list_intents(params)
        elif name == "GET /v1/payment_intents/search":
            obj = store.search("payment_intent", params)
        elif name == "GET /v1/payment_intents/{intent}":
            check_params(params, {"expand", "client_secret"})
            obj = store.get_intent(ident or "")
        elif name == "POST /v1/payment_intents/{intent}/confirm":
            obj = store.confirm_intent(ident or "", params, ctx, decline)
        else:  # pragma: no cover - every route is handled above
            raise invalid_request("Unrecognized request URL.", status=404)
        return 200, store.expand(copy.deepcopy(obj), expand)

    def _authenticate(self) -> None:
        header = self.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        key = credential.strip()
        if scheme.lower() == "basic":
            import base64
            import binascii

            try:
                key = base64.b64decode(key).decode("utf-8").partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                key = ""
        elif scheme.lower() != "bearer":
            key = ""
        if not key:
            raise StripeError(
                401, "invalid_request_error",
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api"
                "#authentication for details, or we can help at https://support.stripe.com/.")
        if not key.startswith("sk_test_"):
            shown = key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else "*" * len(key)
            raise StripeError(401, "invalid_request_error",
                              f"Invalid API Key provided: {shown}. The Stripe sandbox takes test-mode secret "
                              "keys only (sk_test_...).")

    # -- development routes --------------------------------------------------------------------

    def _json_body(self) -> Json:
        try:
            body = json.loads(self._raw or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise DevError(400, "invalid_json", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise DevError(400, "invalid_json", "the body must be a JSON object")
        return body

    def _dev(self, method: str, path: str, query: str) -> tuple[int, Any, dict[str, str]]:
        srv, store = self.server, self.server.store
        args = dict(parse_qsl(query))
        if (method, path) == ("GET", "/health"):
            return 200, {"status": "ok"}, {}
        if (method, path) == ("GET", "/stats"):
            return 200, {**srv.stats.to_json(), "idempotencyKeys": srv.keys.count(),
                         "webhooksPending": srv.webhooks.pending()}, {}
        if (method, path) == ("GET", "/payment_intents"):
            with store.lock:
                rows = [copy.deepcopy(pi) for pi in store.intents.values()
                        if args.get("customer") in (None, pi["customer"])
                        and args.get("accountId") in (None, pi["metadata"].get("accountId"))]
            return 200, rows, {}
        if (method, path) == ("GET", "/customers"):
            with store.lock:
                return 200, [copy.deepcopy(c) for c in store.customers.values()], {}
        if (method, path) == ("GET", "/charges"):
            return 200, srv.charges_json(args.get("accountId")), {}
        if (method, path) == ("GET", "/events"):
            with store.lock:
                return 200, [e for e in store.events if args.get("type") in (None, e["type"])], {}
        if (method, path) == ("GET", "/webhooks/deliveries"):
            return 200, [d.to_json() for d in list(srv.webhooks.deliveries)], {}
        if path == "/faults":
            if method == "POST":
                srv.faults.set(self._json_body())
            elif method == "DELETE":
                srv.faults.clear()
            elif method != "GET":
                raise DevError(405, "method_not_allowed", "GET, POST or DELETE")
            return 200, srv.faults.to_json(), {}
        if path == "/settings":
            if method == "PUT":
                srv.update_settings(self._json_body())
            elif method != "GET":
                raise DevError(405, "method_not_allowed", "GET or PUT")
            return 200, srv.settings_json(), {}
        if path == "/clock":
            if method == "POST":
                seconds = self._json_body().get("advanceSeconds")
                if not isinstance(seconds, int | float) or not _is_seconds(seconds, 10 * 365 * 86400):
                    raise DevError(400, "invalid_clock", "advanceSeconds must be a non-negative number")
                srv.clock.advance(float(seconds))
            elif method == "DELETE":
                srv.clock.reset()
            elif method != "GET":
                raise DevError(405, "method_not_allowed", "GET, POST or DELETE")
            return 200, srv.clock.to_json(), {}
        match = re.fullmatch(r"/3ds/([^/]+)(?:/(complete|fail))?", path)
        if match is not None:
            return self._three_d_secure(method, match.group(1), match.group(2))
        raise DevError(404, "not_found", "no such route")

    def _three_d_secure(self, method: str, ident: str, action: str | None) -> tuple[int, Any, dict[str, str]]:
        store = self.server.store
        with store.lock:
            pi = store.intents.get(ident)
        if pi is None:
            raise DevError(404, "not_found", f"no PaymentIntent {ident}")
        if action is None and method == "GET":
            amount = currency.to_decimal_string(pi["amount"], pi["currency"])
            page = _PAGE.format(ident=html.escape(ident), amount=html.escape(amount),
                                currency=html.escape(pi["currency"].upper()), status=html.escape(pi["status"]))
            self._send(200, page, {}, content_type="text/html; charset=utf-8")
            return _SENT
        if action is None or method != "POST":
            raise DevError(405, "method_not_allowed", "POST /3ds/{intent}/complete or /fail")
        updated, return_url = store.authenticate(ident, action == "complete", self.server.url)
        status = "succeeded" if updated["status"] == "succeeded" else "failed"
        if not return_url:
            self._send(200, f"<!doctype html><title>3-D Secure</title><p id=result>Authentication {status}.</p>",
                       {}, content_type="text/html; charset=utf-8")
            return _SENT
        parts = urlsplit(return_url)
        extra = urlencode({"payment_intent": ident, "payment_intent_client_secret": updated["client_secret"],
                           "redirect_status": status})
        target = urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))
        self._send(303, "", {"Location": target}, content_type="text/plain")
        return _SENT


class _Sent:
    """The page was written already."""


_SENT: tuple[int, Any, dict[str, str]] = (0, _Sent(), {})

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>3-D Secure test page</title>
<style>body{{font-family:sans-serif;max-width:32rem;margin:3rem auto}}button{{font-size:1.1rem;margin:.5rem}}</style>
</head><body>
<h1>3-D Secure authentication</h1>
<p>Stripe sandbox: the bank asks the customer to authenticate this payment of
<strong id="amount">{amount} {currency}</strong> (PaymentIntent <code id="intent">{ident}</code>, {status}).</p>
<form method="post" action="/3ds/{ident}/complete"><button id="complete" type="submit">Complete</button></form>
<form method="post" action="/3ds/{ident}/fail"><button id="fail" type="submit">Fail</button></form>
</body></html>
"""

