"""The HTTP server behind :mod:`devstack.email_endpoint`: ACS Email protocol, mailbox, inbox page.

Standard library ``ThreadingHTTPServer`` on purpose: the SDK's requests are small and few, and a
server that starts in-process in a few milliseconds on a free port keeps the tests fast and free
of an ASGI stack. See the package docstring for what part of ACS is implemented.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import hashlib
import hmac
import http
import json
import math
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import parse_qs, quote, unquote, urlsplit

import jinja2

from devstack.http_server import LocalHandler, LocalServer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7075
# A made-up development key ("local-dev-key-not-a-secret"), public on purpose.
DEFAULT_ACCESS_KEY = "bG9jYWwtZGV2LWtleS1ub3QtYS1zZWNyZXQ="

# The versions the real service and SDK 1.1.0 know; anything else is an SDK/config mistake.
SUPPORTED_API_VERSIONS = frozenset({"2023-03-31", "2024-07-01-preview", "2025-09-01"})
# Small, so the SDK's poller comes back at once instead of its 30 s default interval.
RETRY_AFTER_MS = 10
# ACS refuses requests whose x-ms-date is too far from its clock; 15 minutes like Azure Storage.
MAX_CLOCK_SKEW = timedelta(minutes=15)
# ACS limits a whole email request, attachments included, to 10 MB.
MAX_SEND_BODY = 10 * 1024 * 1024
MAX_OTHER_BODY = 1024 * 1024

TEMPLATES = Path(__file__).resolve().parent / "templates"
_JINJA = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
# The inbox has no script of its own. Besides the iframe sandbox, forbid scripts and plugins for
# the page and (by inheritance) for the srcdoc frames that show the emails' HTML.
INBOX_CSP = (
    "default-src 'none'; script-src 'none'; object-src 'none'; style-src * 'unsafe-inline'; "
    "img-src * data: blob:; font-src * data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


class ApiError(Exception):
    """An error answered as ACS does: status, ``x-ms-error-code`` and ``{"error": {...}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        target: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target is not None:
            error["target"] = self.target
        return {"error": error}


def _bad_request(message: str, target: str | None = None) -> ApiError:
    return ApiError(400, "BadRequest", message, target)


def _denied(reason: str) -> ApiError:
    # ACS answers "Denied by the resource provider." and nothing more; the reason after it is ours,
    # because a developer fighting a 401 locally deserves to know which part did not match.
    return ApiError(401, "Denied", f"Denied by the resource provider. (local endpoint: {reason})")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------
# Mailbox: stored messages, injected faults, counters. One lock; requests are few and short.
# --------------------------------------------------------------------------------------------


@dataclass
class StoredMessage:
    """One accepted email, as the SDK sent it, plus what the tests need to assert on."""

    operation_id: str
    sender: str
    to: list[dict[str, str | None]]
    cc: list[dict[str, str | None]]
    bcc: list[dict[str, str | None]]
    reply_to: list[dict[str, str | None]]
    subject: str
    plain_text: str | None
    html: str | None
    headers: dict[str, str]
    attachments: list[dict[str, Any]]
    received_at: datetime
    submissions: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "operationId": self.operation_id,
            "messageId": self.operation_id,
            "sender": self.sender,
            "to": self.to,
            "cc": self.cc,
            "bcc": self.bcc,
            "replyTo": self.reply_to,
            "subject": self.subject,
            "plainText": self.plain_text,
            "html": self.html,
            "headers": self.headers,
            "attachments": self.attachments,
            "receivedAt": _rfc3339(self.received_at),
            "submissions": self.submissions,
        }


@dataclass
class Fault:
    """The next ``remaining`` send requests are answered ``status`` and store nothing."""

    status: int
    remaining: int
    retry_after: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "count": self.remaining}
        if self.retry_after is not None:
            out["retryAfter"] = self.retry_after
        return out


# The sliding windows ACS's quotas count in: (JSON name, seconds).
QUOTA_WINDOWS = (("perMinute", 60), ("perHour", 3600))


@dataclass(frozen=True)
class Quota:
    """ACS's per-resource send quotas: at most ``per_minute`` accepted sends in any 60 s and
    ``per_hour`` in any 3,600 s (``None``: no limit)."""

    per_minute: int | None = None
    per_hour: int | None = None

    def limits(self) -> list[tuple[str, int, int]]:
        """``(name, limit, window seconds)`` of each limit in force."""
        values = {"perMinute": self.per_minute, "perHour": self.per_hour}
        return [(name, limit, window) for name, window in QUOTA_WINDOWS if (limit := values[name]) is not None]

    def to_json(self) -> dict[str, int | None]:
        return {"perMinute": self.per_minute, "perHour": self.per_hour}

    def spec(self) -> str:
        """The ``PER_MINUTE[,PER_HOUR]`` text :func:`parse_quota_spec` reads back."""
        minute = "" if self.per_minute is None else str(self.per_minute)
        return minute if self.per_hour is None else f"{minute},{self.per_hour}"

    def describe(self) -> str:
        parts = [f"{limit} {'a minute' if name == 'perMinute' else 'an hour'}" for name, limit, _ in self.limits()]
        return " and ".join(parts) or "none"


class QuotaExceeded(Exception):
    """A send beyond the quota: answered 429 with ``Retry-After: retry_after`` (whole seconds)."""

    def __init__(self, retry_after: int, reason: str) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.reason = reason


class FieldProblem(Exception):
    """A bad body on a helper route that answers RFC 9457 problem details (``PUT /quota``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "type": "about:blank",
            "title": "Invalid request",
            "status": 400,
            "detail": f"{self.field}: {self.message}",
            "errors": [{"field": self.field, "message": self.message}],
        }


def _quota_value(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FieldProblem(name, "must be null or a whole number of emails >= 0")
    return value


def parse_quota(body: bytes) -> Quota:
    """The body of ``PUT /quota``: ``{"perMinute": N, "perHour": M}``, each null (or absent) for no
    limit; anything else is a :class:`FieldProblem` naming the field."""
    try:
        spec = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise FieldProblem("body", 'must be JSON like {"perMinute": 30, "perHour": 100}') from None
    if not isinstance(spec, dict):
        raise FieldProblem("body", 'must be a JSON object like {"perMinute": 30, "perHour": 100}')
    for key in spec:
        if key not in ("perMinute", "perHour"):
            raise FieldProblem(key, "is not a quota field; use perMinute and perHour")
    return Quota(_quota_value("perMinute", spec.get("perMinute")), _quota_value("perHour", spec.get("perHour")))


def parse_quota_spec(text: str) -> Quota:
    """``PER_MINUTE[,PER_HOUR]`` from a command line (``30``, ``30,100``, ``,100``); ValueError else."""
    parts = text.split(",")
    if len(parts) > 2:
        raise ValueError("a quota is PER_MINUTE[,PER_HOUR]")
    values: list[int | None] = []
    for part in (*parts, "")[:2]:
        part = part.strip()
        if not part:
            values.append(None)
        elif part.isascii() and part.isdigit():
            values.append(int(part))
        else:
            raise ValueError(f"{part!r} is not a whole number of emails >= 0")
    if values == [None, None]:
        raise ValueError("a quota is PER_MINUTE[,PER_HOUR]")
    return Quota(values[0], values[1])


@dataclass
class Stats:
    """Request counters, so tests can prove how many requests the SDK really made."""

    send_requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    faulted: int = 0
    invalid: int = 0
    unauthorized: int = 0
    operation_polls: int = 0
    throttled: int = 0


@dataclass
class Mailbox:
    """In-memory state shared by the handler threads; every access goes through ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    messages: dict[str, StoredMessage] = field(default_factory=dict)  # insertion = arrival order
    faults: deque[Fault] = field(default_factory=deque)
    stats: Stats = field(default_factory=Stats)
    quota: Quota = field(default_factory=Quota)
    clock: Callable[[], float] = time.monotonic
    """Seconds, never going back; what the quota windows count in (tests pass a fake one)."""
    sent_at: list[float] = field(default_factory=list)
    """``clock()`` of each accepted send of the last hour, oldest first."""

    def submit(self, message: StoredMessage) -> StoredMessage:
        """Store ``message`` unless its operation is known; then only count the resubmission.

        A new message beyond the quota raises :class:`QuotaExceeded` and stores nothing. A
        resubmitted operation is not a new email: it is answered as before, quota or not.
        """
        with self.lock:
            existing = self.messages.get(message.operation_id)
            if existing is not None:
                existing.submissions += 1
                self.stats.duplicates += 1
                return existing
            now = self.clock()
            del self.sent_at[: bisect.bisect_right(self.sent_at, now - QUOTA_WINDOWS[-1][1])]
            refusal = self._over_quota(now)
            if refusal is not None:
                self.stats.throttled += 1
                raise refusal
            self.sent_at.append(now)
            self.messages[message.operation_id] = message
            self.stats.accepted += 1
            return message

    def _over_quota(self, now: float) -> QuotaExceeded | None:
        """The refusal for a send at ``now``, or None. A send is accepted when fewer than each limit
        were accepted in the window before it; else it would be accepted once enough of them have
        left the window: that wait, rounded up to whole seconds, is the Retry-After."""
        wait, reasons = 0.0, []
        for name, limit, window in self.quota.limits():
            first = bisect.bisect_right(self.sent_at, now - window)  # the sends still in the window
            in_window = len(self.sent_at) - first
            if in_window < limit:
                continue
            # With limit 0 no send is ever accepted: answer with the whole window.
            leaves = self.sent_at[first + in_window - limit] + window if limit else now + window
            wait = max(wait, leaves - now)
            per = "a minute" if name == "perMinute" else "an hour"
            reasons.append(f"{in_window} of {limit} emails {per} sent")
        if not reasons:
            return None
        retry_after = max(1, math.ceil(wait - 1e-9))
        return QuotaExceeded(retry_after, "; ".join(reasons))

    def set_quota(self, quota: Quota) -> None:
        """The windows keep the sends already accepted: a new quota counts them, as ACS would."""
        with self.lock:
            self.quota = quota

    def take_fault(self) -> Fault | None:
        """Consume one injected fault answer, if any is pending (oldest rule first)."""
        with self.lock:
            if not self.faults:
                return None
            fault = self.faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                self.faults.popleft()
            self.stats.faulted += 1
            return Fault(fault.status, 1, fault.retry_after)

    def count(self, counter: str) -> None:
        with self.lock:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)

    def snapshot(self) -> list[StoredMessage]:
        with self.lock:
            return list(self.messages.values())

    def get(self, operation_id: str) -> StoredMessage | None:
        with self.lock:
            return self.messages.get(operation_id)

    def clear_messages(self) -> None:
        """Forget messages, operations, counters and the sends the quota windows count (not faults
        nor the quota itself): a clean slate for a test."""
        with self.lock:
            self.messages.clear()
            self.sent_at.clear()
            self.stats = Stats()

    def stats_json(self) -> dict[str, int]:
        with self.lock:
            s = self.stats
            return {
                "sendRequests": s.send_requests,
                "accepted": s.accepted,
                "duplicates": s.duplicates,
                "faulted": s.faulted,
                "invalid": s.invalid,
                "unauthorized": s.unauthorized,
                "operationPolls": s.operation_polls,
                "throttled": s.throttled,
                "messages": len(self.messages),
            }


# --------------------------------------------------------------------------------------------
# Message validation: the minimum ACS itself refuses, so the product cannot pass locally with a
# message Azure would reject.
# --------------------------------------------------------------------------------------------


def _addresses(value: Any, target: str, *, required: bool) -> list[dict[str, str | None]]:
    if value is None:
        if required:
            raise _bad_request(f"{target} is required and must contain at least one recipient.", target)
        return []
    if not isinstance(value, list):
        raise _bad_request(f"{target} must be an array of email addresses.", target)
    if required and not value:
        raise _bad_request(f"{target} must contain at least one recipient.", target)
    out: list[dict[str, str | None]] = []
    for i, item in enumerate(value):
        where = f"{target}[{i}]"
        if not isinstance(item, dict):
            raise _bad_request(f"{where} must be an object with an address.", where)
        address = item.get("address")
        if not isinstance(address, str) or not _looks_like_address(address):
            raise _bad_request(f"{where}.address is missing or not a valid email address.", f"{where}.address")
        display = item.get("displayName")
        if display is not None and not isinstance(display, str):
            raise _bad_request(f"{where}.displayName must be a string.", f"{where}.displayName")
        out.append({"address": address, "displayName": display})
    return out


def _looks_like_address(address: str) -> bool:
    local, at, domain = address.strip().rpartition("@")
    return bool(at and local and domain) and " " not in address.strip()


def parse_message(payload: Any, operation_id: str, received_at: datetime) -> StoredMessage:
    """Validate an EmailMessage JSON like ACS does (minimally) and turn it into a StoredMessage."""
    if not isinstance(payload, dict):
        raise _bad_request("The request body must be a JSON object (EmailMessage).")
    sender = payload.get("senderAddress")
    if not isinstance(sender, str) or not _looks_like_address(sender):
        raise _bad_request("senderAddress is required and must be a valid email address.", "senderAddress")

    recipients = payload.get("recipients")
    if not isinstance(recipients, dict):
        raise _bad_request("recipients is required.", "recipients")
    to = _addresses(recipients.get("to"), "recipients.to", required=True)
    cc = _addresses(recipients.get("cc"), "recipients.cc", required=False)
    bcc = _addresses(recipients.get("bcc"), "recipients.bcc", required=False)
    reply_to = _addresses(payload.get("replyTo"), "replyTo", required=False)

    content = payload.get("content")
    if not isinstance(content, dict):
        raise _bad_request("content is required.", "content")
    subject = content.get("subject")
    if not isinstance(subject, str) or not subject.strip():
        raise _bad_request("content.subject is required.", "content.subject")
    plain_text = content.get("plainText")
    html = content.get("html")
    for name, value in (("plainText", plain_text), ("html", html)):
        if value is not None and not isinstance(value, str):
            raise _bad_request(f"content.{name} must be a string.", f"content.{name}")
    if not plain_text and not html:
        raise _bad_request("Either content.plainText or content.html is required.", "content")

    headers = payload.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise _bad_request("headers must be an object of string values.", "headers")

    attachments: list[dict[str, Any]] = []
    raw_attachments = payload.get("attachments") or []
    if not isinstance(raw_attachments, list):
        raise _bad_request("attachments must be an array.", "attachments")
    for i, item in enumerate(raw_attachments):
        where = f"attachments[{i}]"
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) and item.get(k) for k in ("name", "contentType", "contentInBase64")
        ):
            raise _bad_request(f"{where} needs name, contentType and contentInBase64.", where)
        try:
            size = len(base64.b64decode(item["contentInBase64"], validate=True))
        except binascii.Error:
            raise _bad_request(f"{where}.contentInBase64 is not valid base64.", f"{where}.contentInBase64") from None
        attachment: dict[str, Any] = {"name": item["name"], "contentType": item["contentType"], "size": size}
        if isinstance(item.get("contentId"), str):
            attachment["contentId"] = item["contentId"]
        attachments.append(attachment)

    return StoredMessage(
        operation_id=operation_id,
        sender=sender,
        to=to,
        cc=cc,
        bcc=bcc,
        reply_to=reply_to,
        subject=subject,
        plain_text=plain_text,
        html=html,
        headers=dict(headers),
        attachments=attachments,
        received_at=received_at,
    )


# --------------------------------------------------------------------------------------------
# HMAC verification, the server side of azure.communication.email._shared.policy.
# --------------------------------------------------------------------------------------------


class HeaderLookup(Protocol):
    """Case-insensitive header access: ``http.client.HTTPMessage`` (or a dict in unit tests)."""

    def get(self, name: str, /) -> str | None: ...


def content_hash(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def compute_signature(secret: bytes, string_to_sign: str) -> str:
    digest = hmac.new(secret, string_to_sign.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_hmac(
    *,
    secret: bytes,
    method: str,
    path_and_query: str,
    headers: HeaderLookup,
    body: bytes,
    now: datetime,
    max_skew: timedelta | None = MAX_CLOCK_SKEW,
) -> None:
    """Raise a 401 :class:`ApiError` unless the request carries ACS's HMAC-SHA256 signature.

    ``headers`` must look up case-insensitively (``http.client.HTTPMessage`` does). The host that
    was signed is the ``Host`` header, i.e. the endpoint's host with its port, as the SDK signs it.
    """
    authorization = headers.get("Authorization")
    if not authorization:
        raise _denied("no Authorization header; sign with AzureKeyCredential (HMAC-SHA256)")
    scheme, _, params = authorization.partition(" ")
    if scheme != "HMAC-SHA256":
        raise _denied(f"Authorization scheme {scheme!r} is not supported here, only HMAC-SHA256")
    fields: dict[str, str] = {}
    for part in params.strip().split("&"):
        name, _, value = part.partition("=")
        fields[name.strip()] = value.strip()
    signed_headers = [h.strip().lower() for h in fields.get("SignedHeaders", "").split(";") if h.strip()]
    signature = fields.get("Signature", "")
    if not signature or not signed_headers:
        raise _denied("Authorization needs SignedHeaders=...&Signature=...")
    for needed in ("x-ms-date", "host", "x-ms-content-sha256"):
        if needed not in signed_headers:
            raise _denied(f"{needed} must be among the SignedHeaders")

    values: list[str] = []
    for name in signed_headers:
        header = headers.get(name)
        if header is None:
            raise _denied(f"signed header {name} is missing from the request")
        values.append(header)

    if headers.get("x-ms-content-sha256") != content_hash(body):
        raise _denied("x-ms-content-sha256 does not match the SHA-256 of the body")

    try:
        signed_at = parsedate_to_datetime(headers.get("x-ms-date") or "")
    except (TypeError, ValueError):
        raise _denied("x-ms-date is not an RFC 1123 date") from None
    if signed_at.tzinfo is None:
        signed_at = signed_at.replace(tzinfo=UTC)
    if max_skew is not None and abs(now - signed_at) > max_skew:
        raise _denied(f"x-ms-date {headers.get('x-ms-date')} is more than {max_skew} away from the server clock")

    string_to_sign = f"{method.upper()}\n{path_and_query}\n{';'.join(values)}"
    expected = compute_signature(secret, string_to_sign)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii", "replace")):
        raise _denied("signature mismatch: wrong access key, or the host/path/date/body signed differ")


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


class _Handler(LocalHandler):
    """Routes one request; all state lives on ``self.server`` (an :class:`EmailEndpoint`)."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's requests session expects
    # Headers and body go out in two writes: without TCP_NODELAY the body waits for the client's
    # delayed ACK, about 40 ms a request on a kept-alive connection (300 sends took 13 s).
    disable_nagle_algorithm = True
    server_version = "LocalAcsEmail/1.0"
    server: EmailEndpoint

    _ROUTES: ClassVar[dict[str, tuple[str, ...]]] = {
        "/emails:send": ("POST",),
        "/messages": ("GET", "DELETE"),
        "/faults": ("GET", "POST", "DELETE"),
        "/quota": ("GET", "PUT", "DELETE"),
        "/stats": ("GET",),
        "/": ("GET",),
    }

    # -- plumbing ------------------------------------------------------------------------

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        try:
            body = self._read_body(MAX_SEND_BODY if path == "/emails:send" else MAX_OTHER_BODY)
            self._route(path, query, body)
        except ApiError as error:
            self._send_json(error.status, error.body(), {"x-ms-error-code": error.code, **error.headers})
        except FieldProblem as problem:
            data = json.dumps(problem.body(), ensure_ascii=False).encode("utf-8")
            self._send_bytes(400, data, "application/problem+json; charset=utf-8")
        except Exception as exc:  # a bug here: answer like a server error instead of dropping the socket
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            bug = ApiError(500, "InternalServerError", f"Local endpoint bug: {exc!r}")
            self._send_json(bug.status, bug.body(), {"x-ms-error-code": bug.code})

    def _read_body(self, limit: int) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise ApiError(411, "LengthRequired", "Send a Content-Length; chunked bodies are not supported.")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise _bad_request("Content-Length is not a number.") from None
        if length > limit:
            self.close_connection = True  # we do not read it, so the connection cannot be reused
            raise ApiError(413, "RequestEntityTooLarge", f"The request body exceeds {limit} bytes.")
        return self.rfile.read(length) if length > 0 else b""

    def _route(self, path: str, query: dict[str, list[str]], body: bytes) -> None:
        method = self.command
        if path.startswith("/emails/operations/"):
            allowed: tuple[str, ...] = ("GET",)
        elif path.startswith("/messages/"):
            allowed = ("GET",)
        else:
            allowed = self._ROUTES.get(path, ())
        if not allowed:
            raise ApiError(404, "NotFound", f"No such resource: {path}")
        if method not in allowed:
            raise ApiError(
                405,
                "MethodNotAllowed",
                f"{method} is not allowed on {path}",
                headers={"Allow": ", ".join(allowed)},
            )

        if path == "/emails:send":
            self._send_email(query, body)
        elif path.startswith("/emails/operations/"):
            self._get_operation(path.removeprefix("/emails/operations/"), query, body)
        elif path == "/messages":
            if method == "GET":
                # `?bodies=false` leaves out the HTML and text: a soak lists tens of thousands.
                bodies = query.get("bodies", ["true"])[0] != "false"
                self._send_json(200, [_listed(m.to_json(), bodies) for m in self.server.mailbox.snapshot()])
            else:
                self.server.mailbox.clear_messages()
                self._send_empty(204)
        elif path.startswith("/messages/"):
            message = self.server.mailbox.get(path.removeprefix("/messages/"))
            if message is None:
                raise ApiError(404, "NotFound", "No message with that id.")
            self._send_json(200, message.to_json())
        elif path == "/faults":
            self._faults(method, body)
        elif path == "/quota":
            self._quota(method, body)
        elif path == "/stats":
            self._send_json(200, self.server.mailbox.stats_json())
        else:
            self._inbox(query)

    def _echo_headers(self) -> Mapping[str, str]:
        # azure-core logs the request id it asked to get back; echo it like ACS does.
        request_id = self.headers.get("x-ms-client-request-id")
        return {"x-ms-client-request-id": request_id} if request_id else {}

    def _base_url(self) -> str:
        host = self.headers.get("Host") or self.server.authority
        return f"http://{host}"

    def _verify(self, body: bytes) -> None:
        try:
            verify_hmac(
                secret=self.server.secret,
                method=self.command,
                path_and_query=self.path,
                headers=self.headers,
                body=body,
                now=_utcnow(),
                max_skew=self.server.max_clock_skew,
            )
        except ApiError:
            self.server.mailbox.count("unauthorized")
            raise

    @staticmethod
    def _api_version(query: dict[str, list[str]]) -> str:
        versions = query.get("api-version")
        if not versions:
            raise ApiError(400, "MissingApiVersionParameter", "The api-version query parameter is required.")
        if versions[0] not in SUPPORTED_API_VERSIONS:
            raise ApiError(
                400,
                "UnsupportedApiVersion",
                f"api-version {versions[0]} is not supported; use one of {sorted(SUPPORTED_API_VERSIONS)}.",
            )
        return versions[0]

    # -- ACS Email -------------------------------------------------------------------------

    def _send_email(self, query: dict[str, list[str]], body: bytes) -> None:
        mailbox = self.server.mailbox
        mailbox.count("send_requests")
        self._verify(body)
        fault = mailbox.take_fault()
        if fault is not None:
            self._answer_fault(fault)
            return
        try:
            api_version = self._api_version(query)
            operation_id = self._operation_id()
            try:
                payload = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise _bad_request(f"The request body is not valid JSON: {error}") from None
            message = parse_message(payload, operation_id, _utcnow())
        except ApiError:
            mailbox.count("invalid")
            raise
        try:
            stored = mailbox.submit(message)
        except QuotaExceeded as refusal:
            if self.server.verbose:
                self.log_message("email %s refused: quota (%s), Retry-After %d", operation_id, refusal.reason,
                                 refusal.retry_after)
            raise ApiError(
                429,
                "TooManyRequests",
                f"The email sending quota of this resource is used up ({refusal.reason}); "
                f"retry after {refusal.retry_after} seconds.",
                headers={"Retry-After": str(refusal.retry_after)},
            ) from None
        if self.server.verbose:
            to = ", ".join(r["address"] or "" for r in stored.to)
            note = "stored" if stored is message else f"duplicate #{stored.submissions}, not stored again"
            self.log_message("email %s to %s %r: %s", operation_id, to, stored.subject, note)
        location = f"{self._base_url()}/emails/operations/{quote(operation_id, safe='')}?api-version={api_version}"
        self._send_json(
            202,
            {"id": operation_id, "status": "Running"},
            {"Operation-Location": location, "retry-after-ms": str(RETRY_AFTER_MS)},
        )

    def _operation_id(self) -> str:
        given = self.headers.get("Operation-Id")
        if given is None:
            return str(uuid.uuid4())
        try:
            # The ACS spec declares Operation-Id `format: uuid`: refuse what Azure would refuse.
            return str(uuid.UUID(given.strip()))
        except ValueError:
            raise ApiError(
                400, "InvalidOperationId", "The Operation-Id header must be a UUID.", "Operation-Id"
            ) from None

    def _answer_fault(self, fault: Fault) -> None:
        headers = {}
        if fault.retry_after is not None:
            value = fault.retry_after
            headers["Retry-After"] = str(int(value)) if float(value).is_integer() else str(value)
        phrase = http.HTTPStatus(fault.status).phrase if fault.status in http.HTTPStatus._value2member_map_ else "Error"
        error = ApiError(
            fault.status,
            phrase.replace(" ", ""),
            f"Injected fault: {fault.status} {phrase}.",
            headers=headers,
        )
        self._send_json(error.status, error.body(), {"x-ms-error-code": error.code, **error.headers})

    def _get_operation(self, raw_id: str, query: dict[str, list[str]], body: bytes) -> None:
        self.server.mailbox.count("operation_polls")
        self._verify(body)
        self._api_version(query)
        message = self.server.mailbox.get(raw_id)
        if message is None:
            raise ApiError(404, "NotFound", f"Operation {raw_id} was not found.")
        self._send_json(200, {"id": message.operation_id, "status": "Succeeded"})

    # -- test helpers ----------------------------------------------------------------------

    def _faults(self, method: str, body: bytes) -> None:
        mailbox = self.server.mailbox
        if method == "POST":
            mailbox_fault = _parse_fault(body)
            with mailbox.lock:
                mailbox.faults.append(mailbox_fault)
        elif method == "DELETE":
            with mailbox.lock:
                mailbox.faults.clear()
            self._send_empty(204)
            return
        with mailbox.lock:
            pending = [f.to_json() for f in mailbox.faults]
        self._send_json(200, {"faults": pending})

    def _quota(self, method: str, body: bytes) -> None:
        mailbox = self.server.mailbox
        if method == "PUT":
            mailbox.set_quota(parse_quota(body))
        elif method == "DELETE":
            mailbox.set_quota(Quota())
            self._send_empty(204)
            return
        with mailbox.lock:
            quota = mailbox.quota
        self._send_json(200, quota.to_json())

    # -- inbox page ------------------------------------------------------------------------

    def _inbox(self, query: dict[str, list[str]]) -> None:
        messages = list(reversed(self.server.mailbox.snapshot()))  # newest first
        wanted = query["id"][0] if query.get("id") else None
        selected = next((m for m in messages if m.operation_id == wanted), None) if wanted else None
        missing = wanted is not None and selected is None
        if selected is None and not missing and messages:
            selected = messages[0]
        page = _JINJA.get_template("inbox.html").render(
            messages=[_view(m) for m in messages],
            selected=_view(selected) if selected else None,
            missing_id=wanted if missing else None,
            endpoint=self._base_url(),
        )
        self._send_bytes(
            404 if missing else 200,
            page.encode("utf-8"),
            "text/html; charset=utf-8",
            {
                "Content-Security-Policy": INBOX_CSP,
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )


def _listed(message: dict[str, Any], bodies: bool) -> dict[str, Any]:
    return message if bodies else {k: v for k, v in message.items() if k not in ("html", "plainText")}


def _parse_fault(body: bytes) -> Fault:
    try:
        spec = json.loads(body.decode("utf-8") or "null")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _bad_request('The fault must be JSON like {"status": 429, "count": 2, "retryAfter": 1}.') from None
    if not isinstance(spec, dict):
        raise _bad_request("The fault must be a JSON object.")
    status, count, retry_after = spec.get("status"), spec.get("count", 1), spec.get("retryAfter")
    if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
        raise _bad_request("status must be an HTTP error status (400-599).", "status")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise _bad_request("count must be a positive integer.", "count")
    if retry_after is not None and (
        not isinstance(retry_after, int | float) or isinstance(retry_after, bool) or retry_after < 0
    ):
        raise _bad_request("retryAfter must be a number of seconds >= 0.", "retryAfter")
    return Fault(status=status, remaining=count, retry_after=retry_after)


def _address_text(address: Mapping[str, str | None]) -> str:
    name = address.get("displayName")
    return f"{name} <{address['address']}>" if name else str(address["address"])


def _view(message: StoredMessage) -> dict[str, Any]:
    """What the template shows; plain values only, the template escapes every one of them."""
    return {
        "id": message.operation_id,
        "received": message.received_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "received_iso": _rfc3339(message.received_at),
        "sender": message.sender,
        "to": ", ".join(_address_text(a) for a in message.to),
        "cc": ", ".join(_address_text(a) for a in message.cc),
        "bcc": ", ".join(_address_text(a) for a in message.bcc),
        "reply_to": ", ".join(_address_text(a) for a in message.reply_to),
        "subject": message.subject,
        "plain_text": message.plain_text,
        "html": message.html,
        "headers": message.headers,
        "attachments": message.attachments,
        "submissions": message.submissions,
    }


class EmailEndpoint(LocalServer):
    """The local ACS Email endpoint: a threading HTTP server holding one in-memory mailbox."""

    thread_name = "email-endpoint"

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        access_key: str = DEFAULT_ACCESS_KEY,
        *,
        verbose: bool = False,
        max_clock_skew: timedelta | None = MAX_CLOCK_SKEW,
        quota: Quota | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            self.secret = base64.b64decode(access_key, validate=True)
        except binascii.Error:
            raise ValueError("access_key must be base64, like an ACS access key") from None
        self.access_key = access_key
        self.verbose = verbose
        self.max_clock_skew = max_clock_skew
        self.mailbox = Mailbox(quota=quota or Quota(), clock=clock)
        super().__init__(host, port, _Handler)



def start_in_thread(
    port: int = 0,
    host: str = DEFAULT_HOST,
    access_key: str = DEFAULT_ACCESS_KEY,
    *,
    verbose: bool = False,
    quota: Quota | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[EmailEndpoint, str]:
    """Start an endpoint in this process (port 0 = a free one); returns ``(server, base_url)``.

    ``clock`` (seconds, monotonic) is what the quota windows count in; tests pass a fake one.
    Call ``server.stop()`` when done (or use :func:`running`).
    """
    server = EmailEndpoint(host, port, access_key, verbose=verbose, quota=quota, clock=clock).start()
    return server, server.url


@contextlib.contextmanager
def running(
    port: int = 0,
    host: str = DEFAULT_HOST,
    access_key: str = DEFAULT_ACCESS_KEY,
    *,
    verbose: bool = False,
    quota: Quota | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[EmailEndpoint]:
    """``with running() as server:`` – an in-process endpoint on a free port, stopped afterwards."""
    server, _ = start_in_thread(port, host, access_key, verbose=verbose, quota=quota, clock=clock)
    try:
        yield server
    finally:
        server.stop()


def serve(host: str, port: int, access_key: str, quota: Quota | None = None) -> None:
    """Run in the foreground until Ctrl-C (the CLI)."""
    server = EmailEndpoint(host, port, access_key, verbose=True, quota=quota)
    print(
        f"Local ACS email endpoint (dev only) on {server.url}\n"
        f"  inbox:     {server.url}/\n"
        f"  quota:     {server.mailbox.quota.describe()} (GET/PUT/DELETE {server.url}/quota)\n"
        f"  SDK:       EmailClient({server.url!r}, AzureKeyCredential({access_key!r}))\n"
        f"  (a connection string would be rewritten to https by the SDK; pass the endpoint as above)",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
