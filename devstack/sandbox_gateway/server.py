"""The sandbox payment gateway: a small Stripe-like REST server for the local stack and the tests.

Routes (JSON in, JSON out):
  POST /v1/cards                      {"token"} -> 200 card | 400 invalid_token
  POST /v1/charges                    Idempotency-Key header; {"amount","currency","token","accountId",
                                      "description"} -> 200 succeeded | 402 declined | 400 | 409
  GET  /v1/charges/{idempotencyKey}   -> 200 charge | 404
  GET  /charges[?accountId=]          every charge, oldest first (no auth: dev inspection)
  POST /faults, GET /faults, DELETE /faults    fault injection for tests:
      {"mode": "fail_next", "count", "status" (400-599), "code",   the next /v1 requests (of that
       "route" (optional, e.g. "POST /v1/charges")}                route) answer that error, before
                                                                   doing anything
      {"mode": "timeout_after_charge", "count", "seconds"}         charge, then answer late
      {"mode": "decline_next", "count", "declineCode"}             the next new charges decline so
      {"mode": "malformed_next", "count", "afterCharge"}           the next charge answers are not
                                                                   JSON (stored first if afterCharge)
  GET  /requests                      the newest 1,000 /v1 requests: route, `traceparent`, `tracestate`,
                                      `idempotencyKey` and when (the W3C trace headers a caller sent;
                                      nothing else of a request is kept); DELETE /requests clears them
  GET  /stats, GET /health
/v1 routes need `Authorization: Bearer <api key>`. Card tokens are never logged.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from devstack.sandbox_gateway.cards import (
    SANDBOX_CARDS,
    amount_problem,
    idempotency_key_problem,
    new_charge_id,
)
from devstack.sandbox_gateway.store import ChargeStore, StoredCharge, iso_utc
from shared.domain.money import Money, MoneyError, is_currency
from shared.inbound.card_data import mask_card_numbers

log = logging.getLogger("devstack.sandbox_gateway")

DEFAULT_API_KEY = "sandbox-local-key"
MAX_BODY_BYTES = 64 * 1024
MAX_TEXT = {"accountId": 255, "description": 1000}

_CARD_LIKE = re.compile(r"(?<!\d)\d(?:[ -]?\d){11,18}(?!\d)")
_TOKEN_LIKE = re.compile(r"tok_\w+")
_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_V1_ROUTES = ("POST /v1/cards", "POST /v1/charges", "GET /v1/charges/{idempotencyKey}")


def redact(text: str) -> str:
    """Take card tokens and anything shaped like a card number out of a log line: long digit runs,
    and whatever the product's one detector calls a card number (`4111.1111.1111.1111`, ...)."""
    return _TOKEN_LIKE.sub("tok_[redacted]", mask_card_numbers(_CARD_LIKE.sub("[redacted]", text)))


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Faults:
    """Injected failures, consumed one request at a time."""

    fail_next: int = 0
    fail_status: int = 503
    fail_code: str = "injected_fault"
    fail_route: str | None = None
    timeout_after_charge: int = 0
    timeout_seconds: float = 3.0
    decline_next: int = 0
    decline_code: str = "card_declined"
    malformed_next: int = 0
    malformed_after_charge: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_failure(self, route: str) -> tuple[int, str] | None:
        with self.lock:
            if self.fail_next <= 0 or self.fail_route not in (None, route):
                return None
            self.fail_next -= 1
            return self.fail_status, self.fail_code

    def take_timeout(self) -> float | None:
        with self.lock:
            if self.timeout_after_charge <= 0:
                return None
            self.timeout_after_charge -= 1
            return self.timeout_seconds

    def take_decline(self) -> str | None:
        with self.lock:
            if self.decline_next <= 0:
                return None
            self.decline_next -= 1
            return self.decline_code

    def take_malformed(self) -> bool | None:
        """None: answer properly; else whether to store the charge before the garbled answer."""
        with self.lock:
            if self.malformed_next <= 0:
                return None
            self.malformed_next -= 1
            return self.malformed_after_charge

    def to_json(self) -> dict[str, Any]:
        with self.lock:
            return {
                "failNext": {"count": self.fail_next, "status": self.fail_status, "code": self.fail_code,
                             "route": self.fail_route},
                "timeoutAfterCharge": {"count": self.timeout_after_charge, "seconds": self.timeout_seconds},
                "declineNext": {"count": self.decline_next, "declineCode": self.decline_code},
                "malformedNext": {"count": self.malformed_next, "afterCharge": self.malformed_after_charge},
            }

    def set(self, body: dict[str, Any]) -> None:
        mode, count = body.get("mode"), body.get("count", 1)
        if not _is_int(count) or count < 0:
            raise ApiError(400, "invalid_fault", "count must be a non-negative integer")
        if mode == "fail_next":
            status, code = body.get("status", 503), body.get("code", "injected_fault")
            if not _is_int(status) or not 400 <= status <= 599:
                raise ApiError(400, "invalid_fault", "status must be an HTTP error status (400-599)")
            if not isinstance(code, str) or not _CODE.fullmatch(code):
                raise ApiError(400, "invalid_fault", "code must be a short snake_case word")
            route = body.get("route")
            if route not in (None, *_V1_ROUTES):
                raise ApiError(400, "invalid_fault", f"route must be one of {', '.join(_V1_ROUTES)}")
            with self.lock:
                self.fail_next, self.fail_status, self.fail_code, self.fail_route = count, status, code, route
        elif mode == "timeout_after_charge":
            seconds = body.get("seconds", 3)
            if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not 0 < seconds <= 120:
                raise ApiError(400, "invalid_fault", "seconds must be a number in (0, 120]")
            with self.lock:
                self.timeout_after_charge, self.timeout_seconds = count, float(seconds)
        elif mode == "decline_next":
            code = body.get("declineCode", "card_declined")
            if not isinstance(code, str) or not _CODE.fullmatch(code):
                raise ApiError(400, "invalid_fault", "declineCode must be a short snake_case word")
            with self.lock:
                self.decline_next, self.decline_code = count, code
        elif mode == "malformed_next":
            after = body.get("afterCharge", True)
            if not isinstance(after, bool):
                raise ApiError(400, "invalid_fault", "afterCharge must be true or false")
            with self.lock:
                self.malformed_next, self.malformed_after_charge = count, after
        else:
            raise ApiError(400, "invalid_fault", 'mode must be "fail_next", "timeout_after_charge", '
                                                 '"decline_next" or "malformed_next"')

    def clear(self) -> None:
        with self.lock:
            self.fail_next = self.timeout_after_charge = self.decline_next = self.malformed_next = 0


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    routes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1000))
    """The W3C trace headers of the newest /v1 requests (`GET /requests`)."""

    def request(self, route: str) -> None:
        with self.lock:
            self.routes[route] += 1

    def seen(self, route: str, headers: Any) -> None:
        with self.lock:
            self.recent.append({"route": route, "traceparent": headers.get("traceparent"),
                                "tracestate": headers.get("tracestate"),
                                "idempotencyKey": headers.get("Idempotency-Key"),
                                "at": datetime.now(UTC).isoformat()})

    def answered(self, status: int) -> None:
        with self.lock:
            self.statuses[str(status)] += 1

    def event(self, name: str) -> None:
        with self.lock:
            self.events[name] += 1

    def to_json(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": sum(self.routes.values()),
                "byRoute": dict(self.routes),
                "byStatus": dict(self.statuses),
                "chargesCreated": self.events["charge_created"],
                "chargesReplayed": self.events["charge_replayed"],
                "faultsInjected": self.events["fault_injected"],
            }


class SandboxGatewayServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # listen backlog: bursts of concurrent clients must not be reset

    def __init__(self, address: tuple[str, int], store: ChargeStore, api_key: str) -> None:
        super().__init__(address, SandboxHandler)
        self.store = store
        self.api_key = api_key
        self.faults = Faults()
        self.stats = Stats()
        self.stopping = threading.Event()
        self.charge_latency = 0.0  # seconds each charge takes, as a real processor's round trip does

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class SandboxHandler(BaseHTTPRequestHandler):
    server: SandboxGatewayServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # a reply written in pieces would otherwise wait ~40 ms for a delayed ACK
    server_version = "SandboxGateway/1"

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- plumbing -------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        route = _route_name(method, path)
        self.server.stats.request(route)
        if path.startswith("/v1/"):
            self.server.stats.seen(route, self.headers)
        try:
            self._raw = self._read_body()
            status, body, headers = self._handle(method, path, query)
        except ApiError as err:
            status, body, headers = err.status, _error(err.code, err.message), {}
        except Exception:
            log.exception("sandbox gateway: %s failed", route)
            status, body, headers = 500, _error("internal_error", "the sandbox gateway failed"), {}
        self._send(status, body, headers)

    def _handle(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        srv = self.server
        if path.startswith("/v1/"):
            failure = srv.faults.take_failure(_route_name(method, path))
            if failure is not None:
                srv.stats.event("fault_injected")
                status, code = failure
                return status, _error(code, "fault injected by POST /faults"), {}
            self._authenticate()
            if (method, path) == ("POST", "/v1/cards"):
                return self._save_card()
            if (method, path) == ("POST", "/v1/charges"):
                return self._charge()
            if method == "GET" and path.startswith("/v1/charges/"):
                return self._find_charge(unquote(path.removeprefix("/v1/charges/")))
        elif (method, path) == ("GET", "/charges"):
            account = query.get("accountId", [None])[0]
            return 200, [c.to_json() for c in srv.store.list(account)], {}
        elif path == "/faults":
            if method == "POST":
                srv.faults.set(self._json_body())
                return 200, srv.faults.to_json(), {}
            if method == "DELETE":
                srv.faults.clear()
                return 200, srv.faults.to_json(), {}
            if method == "GET":
                return 200, srv.faults.to_json(), {}
        elif path == "/requests" and method in ("GET", "DELETE"):
            with srv.stats.lock:
                recent = list(srv.stats.recent)
                if method == "DELETE":
                    srv.stats.recent.clear()
            return 200, recent, {}
        elif (method, path) == ("GET", "/stats"):
            return 200, srv.stats.to_json(), {}
        elif (method, path) == ("GET", "/health"):
            return 200, {"status": "ok"}, {}
        raise ApiError(404, "not_found", "no such route")

    def _authenticate(self) -> None:
        header = self.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            key.strip().encode(), self.server.api_key.encode()
        ):
            raise ApiError(401, "unauthorized", "a valid `Authorization: Bearer <api key>` is required")

    def _read_body(self) -> bytes:
        """Read the whole (bounded) body up front, so that the connection stays usable whatever
        the answer."""
        self._raw = b""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise ApiError(400, "invalid_request", "bad Content-Length") from None
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiError(413, "request_too_large", f"bodies are limited to {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self._raw or b"null", parse_float=_keep_float_marker)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_json", "the body must be a JSON object")
        return body

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
        self.server.stats.answered(status)
        payload = (body.text if isinstance(body, _Garbled) else json.dumps(body)).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts)
            self.close_connection = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = unquote(urlsplit(self.path).path)  # `4111%201111...` is a card number too
        log.info(redact(f"{self.command} {path} -> {code}"))

    def log_message(self, format: str, *args: Any) -> None:
        log.info(redact(format % args))

    # -- the API --------------------------------------------------------------------------------

    def _save_card(self) -> tuple[int, Any, dict[str, str]]:
        token = self._json_body().get("token")
        sandbox = SANDBOX_CARDS.get(token) if isinstance(token, str) else None
        if sandbox is None:
            raise ApiError(400, "invalid_token", "No such token: the card token is unknown or invalid.")
        card = sandbox.card
        return (
            200,
            {"brand": card.brand, "last4": card.last4, "expMonth": card.exp_month, "expYear": card.exp_year},
            {},
        )

    def _charge(self) -> tuple[int, Any, dict[str, str]]:
        srv = self.server
        srv.stopping.wait(srv.charge_latency)
        key = self.headers.get("Idempotency-Key", "")
        problem = idempotency_key_problem(key)
        if problem:
            code = "missing_idempotency_key" if not key else "invalid_idempotency_key"
            raise ApiError(400, code, problem)
        body = self._json_body()
        amount = _parse_amount(body.get("amount"), body.get("currency"))
        token = body.get("token")
        sandbox = SANDBOX_CARDS.get(token) if isinstance(token, str) else None
        if sandbox is None:
            raise ApiError(400, "invalid_token", "No such token: the card token is unknown or invalid.")
        account_id = _text(body, "accountId", required=True)
        description = _text(body, "description", required=False)
        malformed = srv.faults.take_malformed()
        if malformed is False:
            srv.stats.event("fault_injected")
            return 200, _GARBLED, {}
        decline_code = srv.faults.take_decline() or sandbox.decline_code
        decided = StoredCharge(
            id=new_charge_id(),
            idempotency_key=key,
            status="declined" if decline_code else "succeeded",
            amount=amount.to_str(),
            currency=amount.currency,
            account_id=account_id,
            description=description,
            decline_code=decline_code,
            created_at=iso_utc(datetime.now(UTC)),
        )
        stored, inserted = srv.store.insert_if_absent(decided)
        headers: dict[str, str] = {}
        if inserted:
            srv.stats.event("charge_created")
            log.info("charge %s %s %s %s", stored.id, stored.status, stored.amount, stored.currency)
        else:
            if Money.parse(stored.amount, stored.currency) != amount:
                raise ApiError(
                    409,
                    "idempotency_conflict",
                    "This Idempotency-Key was already used with a different amount or currency.",
                )
            srv.stats.event("charge_replayed")
            headers["Idempotent-Replayed"] = "true"
        delay = srv.faults.take_timeout()
        if delay is not None:
            srv.stats.event("fault_injected")
            srv.stopping.wait(delay)  # the charge is stored; the answer is "lost"
        if malformed:
            srv.stats.event("fault_injected")
            return 200, _GARBLED, {}
        return (402 if stored.status == "declined" else 200), stored.to_json(), headers

    def _find_charge(self, key: str) -> tuple[int, Any, dict[str, str]]:
        charge = self.server.store.get(key) if key else None
        if charge is None:
            raise ApiError(404, "charge_not_found", "no charge was made under this Idempotency-Key")
        return 200, charge.to_json(), {}


class _Garbled:
    """An answer body that is not JSON, as a broken proxy might send."""

    text = "<html><body>502 Bad Gateway</body></html>"


_GARBLED = _Garbled()


class _FloatMarker:
    """A JSON number with a fraction or exponent: money must never arrive as a float."""


def _keep_float_marker(_text: str) -> _FloatMarker:
    return _FloatMarker()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_amount(amount: Any, currency: Any) -> Money:
    if not isinstance(currency, str) or not is_currency(currency):
        raise ApiError(400, "invalid_currency", 'currency must be an ISO 4217 code such as "USD"')
    if not isinstance(amount, str):
        raise ApiError(400, "invalid_amount", 'amount must be a decimal string such as "12.34"')
    try:
        money = Money.parse(amount, currency)
    except MoneyError as exc:
        raise ApiError(400, "invalid_amount", str(exc)) from None
    problem = amount_problem(money)
    if problem:
        raise ApiError(400, "invalid_amount", problem)
    return money


def _text(body: dict[str, Any], name: str, *, required: bool) -> str:
    value = body.get(name, None if required else "")
    if value is None:
        value = ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ApiError(400, "invalid_request", f"{name} must be a{' non-empty' if required else ''} string")
    if len(value) > MAX_TEXT[name] or not value.isprintable():
        raise ApiError(400, "invalid_request", f"{name} must be printable, at most {MAX_TEXT[name]} chars")
    return value


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _route_name(method: str, path: str) -> str:
    if path.startswith("/v1/charges/"):
        path = "/v1/charges/{idempotencyKey}"
    return f"{method} {path}"
