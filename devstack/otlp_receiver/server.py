"""The HTTP server behind :mod:`devstack.otlp_receiver`: OTLP/HTTP intake, JSON routes, trace page.

Standard library ``ThreadingHTTPServer``, like the email endpoint: exports are few and small, and
a server that starts in-process in milliseconds on a free port keeps the tests fast.
"""

from __future__ import annotations

import contextlib
import json
import sys
import traceback
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import jinja2
from google.rpc import status_pb2

from devstack.http_server import LocalHandler, LocalServer
from devstack.otlp_receiver.store import (
    DEFAULT_MAX_LOG_RECORDS,
    DEFAULT_MAX_METRIC_STREAMS,
    DEFAULT_MAX_SPANS,
    SIGNALS,
    OtlpDecodeError,
    TelemetryStore,
    decode_request,
    format_duration,
    key_attributes,
)

DEFAULT_HOST = "127.0.0.1"
# Beside the stack's other helpers (7075 email, 7076 sandbox gateway, 7077 Stripe sandbox); not
# OTLP's 4318, so a collector or Jaeger a developer already runs there is left alone.
DEFAULT_PORT = 7078
# Compressed (as sent) and decompressed limits of one export request.
MAX_BODY = 16 * 1024 * 1024
MAX_DECODED_BODY = 64 * 1024 * 1024
DEFAULT_PAGE_TRACES = 50

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

# gRPC status codes, as OTLP/HTTP puts them in its google.rpc.Status error bodies.
_GRPC_CODES = {400: 3, 413: 8, 415: 3, 411: 3, 500: 13}

TEMPLATES = Path(__file__).resolve().parent / "templates"
_JINJA = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
# The page has no script; forbid any, and anything else a telemetry value could try to load.
PAGE_CSP = (
    "default-src 'none'; script-src 'none'; object-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class HttpError(Exception):
    """An error answer: on the OTLP paths a ``google.rpc.Status`` in the request's encoding,
    elsewhere RFC 9457 problem details."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def decompress(body: bytes, encoding: str | None, limit: int = MAX_DECODED_BODY) -> bytes:
    """``body`` undone of its ``Content-Encoding`` (gzip, deflate, identity/none), at most ``limit``
    bytes; :class:`HttpError` 400/413/415 otherwise."""
    coding = (encoding or "identity").strip().lower()
    if coding in ("", "identity", "none"):
        return body
    if coding in ("gzip", "x-gzip"):
        attempts = [16 + zlib.MAX_WBITS]
    elif coding == "deflate":
        attempts = [zlib.MAX_WBITS, -zlib.MAX_WBITS]  # zlib-wrapped as HTTP says; raw as some send
    else:
        raise HttpError(415, f"Content-Encoding {coding!r} is not supported; use gzip, deflate or none.")
    error: zlib.error | None = None
    for wbits in attempts:
        inflater = zlib.decompressobj(wbits)
        try:
            data = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            error = exc
            continue
        if len(data) > limit:
            raise HttpError(413, f"The decompressed body exceeds {limit} bytes.")
        if not inflater.eof:
            raise HttpError(400, f"The {coding} body is truncated.")
        return data
    raise HttpError(400, f"The body is not valid {coding}: {error}")


class _Handler(LocalHandler):
    """Routes one request; all state lives on ``self.server`` (an :class:`OtlpReceiver`)."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the exporters' requests sessions expect
    # Headers and body go out in two writes: without TCP_NODELAY a kept-alive client waits for
    # its delayed ACK, about 40 ms per export.
    disable_nagle_algorithm = True
    server_version = "LocalOtlpReceiver/1.0"
    server: OtlpReceiver

    _ROUTES: ClassVar[dict[str, tuple[str, ...]]] = {
        **{path: ("POST",) for path in SIGNALS},
        "/traces": ("GET",),
        "/metrics": ("GET",),
        "/logs": ("GET",),
        "/stats": ("GET",),
        "/data": ("DELETE",),
        "/": ("GET",),
    }

    # -- plumbing ------------------------------------------------------------------------

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        try:
            body = self._read_body(MAX_BODY if path in SIGNALS else 1024 * 1024)
            self._route(path, query, body)
        except HttpError as error:
            self._answer_error(path, error)
        except Exception as exc:  # a bug here: answer 500 instead of dropping the socket
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            self._answer_error(path, HttpError(500, f"Local OTLP receiver bug: {exc!r}"))

    def _read_body(self, limit: int) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked(limit)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise HttpError(400, "Content-Length is not a number.") from None
        if length > limit or length < 0:
            self.close_connection = True  # not read, so the connection cannot be reused
            raise HttpError(413, f"The request body exceeds {limit} bytes.")
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self, limit: int) -> bytes:
        """A ``Transfer-Encoding: chunked`` body (some OTLP exporters stream theirs)."""
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1026)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise HttpError(400, "Malformed chunked body.") from None
            if size == 0:
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > limit:
                self.close_connection = True
                raise HttpError(413, f"The request body exceeds {limit} bytes.")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(3)

    def _route(self, path: str, query: dict[str, list[str]], body: bytes) -> None:
        method = "GET" if self.command == "HEAD" else self.command
        if path.startswith("/traces/") or path.startswith("/metrics/"):
            allowed: tuple[str, ...] = ("GET",)
        else:
            allowed = self._ROUTES.get(path, ())
        if not allowed:
            raise HttpError(404, f"No such resource: {path}")
        if method not in allowed:
            raise HttpError(405, f"{self.command} is not allowed on {path}", {"Allow": ", ".join(allowed)})

        store = self.server.store
        if path in SIGNALS:
            self._export(path, body)
        elif path == "/traces":
            self._send_json(200, {"traces": store.traces(_int_param(query, "limit"))})
        elif path.startswith("/traces/"):
            tree = store.trace(path.removeprefix("/traces/"))
            if tree is None:
                raise HttpError(404, "No span of that trace was received (or it was cleared or dropped).")
            self._send_json(200, tree)
        elif path == "/metrics":
            self._send_json(200, {"metrics": store.metrics()})
        elif path.startswith("/metrics/"):
            wanted = {key: values[-1] for key, values in query.items()}
            found = store.metric(path.removeprefix("/metrics/"), wanted)
            if found is None:
                raise HttpError(404, "No such metric was received.")
            self._send_json(200, found)
        elif path == "/logs":
            trace_id = query.get("traceId", [None])[-1]
            span_id = query.get("spanId", [None])[-1]
            self._send_json(200, {"logs": store.logs(trace_id, span_id)})
        elif path == "/stats":
            self._send_json(200, store.stats())
        elif path == "/data":
            store.clear()
            self._send_empty(204)
        else:
            self._page(query)

    # -- OTLP/HTTP -------------------------------------------------------------------------

    def _export(self, path: str, body: bytes) -> None:
        media = _media_type(self.headers.get("Content-Type"))
        if media not in (PROTOBUF, JSON):
            self.server.store.count_rejected()
            raise HttpError(415, f"Content-Type {media or '(none)'!r} is not OTLP; use {PROTOBUF} or {JSON}.")
        try:
            data = decompress(body, self.headers.get("Content-Encoding"))
            request = decode_request(path, data, json_body=media == JSON)
        except OtlpDecodeError as error:
            self.server.store.count_rejected()
            raise HttpError(400, str(error)) from None
        except HttpError:
            self.server.store.count_rejected()
            raise
        signal, _, response_type = SIGNALS[path]
        count = self.server.store.add(signal, request)
        if self.server.verbose:
            self.log_message("%s: %d received", signal, count)
        if media == JSON:
            self._send_bytes(200, b"{}", JSON)
        else:
            self._send_bytes(200, response_type().SerializeToString(), PROTOBUF)

    # -- answers ---------------------------------------------------------------------------

    def _answer_error(self, path: str, error: HttpError) -> None:
        if path in SIGNALS:
            code = _GRPC_CODES.get(error.status, 3 if error.status < 500 else 13)
            if _media_type(self.headers.get("Content-Type")) == PROTOBUF:
                data = status_pb2.Status(code=code, message=error.message).SerializeToString()
                self._send_bytes(error.status, data, PROTOBUF, error.headers)
            else:
                self._send_json(error.status, {"code": code, "message": error.message}, error.headers)
            return
        problem = {"type": "about:blank", "title": error.message, "status": error.status, "detail": error.message}
        data = json.dumps(problem, ensure_ascii=False).encode("utf-8")
        self._send_bytes(error.status, data, "application/problem+json; charset=utf-8", error.headers)

    # -- the page --------------------------------------------------------------------------

    def _page(self, query: dict[str, list[str]]) -> None:
        store = self.server.store
        wanted = query.get("trace", [None])[-1]
        limit = _int_param(query, "limit") or DEFAULT_PAGE_TRACES
        found = [store.trace(wanted)] if wanted else [store.trace(t["traceId"]) for t in store.traces(limit)]
        trees = [tree for tree in found if tree is not None]
        logs_by_span: dict[str | None, list[dict[str, Any]]] = {}
        for tree in trees:
            for record in store.logs(tree["traceId"]):
                logs_by_span.setdefault(record["spanId"], []).append(record)
        refresh = _int_param(query, "refresh")
        page = _JINJA.get_template("traces.html").render(
            traces=[page_view(t, logs_by_span) for t in trees],
            stats=store.stats(),
            missing_id=wanted if wanted and not trees else None,
            single=bool(wanted),
            limit=limit,
            refresh=refresh if refresh and 0 < refresh <= 3600 else None,
            endpoint=self.server.url,
        )
        self._send_bytes(
            404 if wanted and not trees else 200,
            page.encode("utf-8"),
            "text/html; charset=utf-8",
            {"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )


def _int_param(query: dict[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    if not values:
        return None
    try:
        return int(values[-1])
    except ValueError:
        raise HttpError(400, f"{name} must be a whole number.") from None


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def page_view(tree: Mapping[str, Any], logs_by_span: Mapping[str | None, list[dict[str, Any]]]) -> dict[str, Any]:
    """What the page shows of one trace tree: plain values only, the template escapes every one."""
    spans_start = [n for n in _walk(tree.get("roots") or []) if n.get("startTimeUnixNano")]
    start = min((n["startTimeUnixNano"] for n in spans_start), default=0)
    end = max((n.get("endTimeUnixNano") or 0 for n in spans_start), default=0)
    total = max(end - start, 1)

    def node(span: Mapping[str, Any], parent_service: Any) -> dict[str, Any]:
        begin = span.get("startTimeUnixNano") or start
        finish = span.get("endTimeUnixNano") or begin
        status = span.get("status") or {}
        service = span.get("serviceName")
        return {
            "name": span.get("name") or "(unnamed)",
            "span_id": span.get("spanId"),
            "kind": (span.get("kind") or "").lower(),
            "service": service if service and service != parent_service else None,
            "duration": format_duration(span.get("durationMs")),
            "error": status.get("code") == "ERROR",
            "status_message": status.get("message"),
            "missing_parent": bool(span.get("missingParent")),
            "key_attributes": key_attributes(span),
            "attributes": sorted((k, _value_text(v)) for k, v in (span.get("attributes") or {}).items()),
            "resource": sorted((k, _value_text(v)) for k, v in (span.get("resource") or {}).items()),
            "events": [
                {"name": e["name"], "time": e["time"],
                 "attributes": sorted((k, _value_text(v)) for k, v in e["attributes"].items())}
                for e in span.get("events") or []
            ],
            "logs": [
                {"time": r["time"], "severity": r["severityText"] or r["severity"], "body": _value_text(r["body"])}
                for r in logs_by_span.get(span.get("spanId"), [])
            ],
            "offset": round(100 * (begin - start) / total, 2),
            "width": max(round(100 * (finish - begin) / total, 2), 0.3),
            "children": [node(child, service) for child in span.get("children") or []],
        }

    return {
        "trace_id": tree.get("traceId"),
        "root_name": tree.get("rootName") or "(unnamed)",
        "span_count": tree.get("spanCount", 0),
        "services": ", ".join(tree.get("services") or []),
        "start": tree.get("start"),
        "duration": format_duration(tree.get("durationMs")),
        "errors": tree.get("errors", 0),
        "roots": [node(root, None) for root in tree.get("roots") or []],
        "orphan_logs": len(logs_by_span.get(None, [])),
    }


def _walk(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for n in nodes:
        yield n
        yield from _walk(n.get("children") or [])


class OtlpReceiver(LocalServer):
    """The local OTLP/HTTP receiver: a threading HTTP server holding one :class:`TelemetryStore`."""

    thread_name = "otlp-receiver"

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        verbose: bool = False,
        max_spans: int = DEFAULT_MAX_SPANS,
        max_log_records: int = DEFAULT_MAX_LOG_RECORDS,
        max_metric_streams: int = DEFAULT_MAX_METRIC_STREAMS,
    ) -> None:
        self.verbose = verbose
        self.store = TelemetryStore(max_spans, max_log_records, max_metric_streams)
        super().__init__(host, port, _Handler)



def start_in_thread(
    port: int = 0,
    host: str = DEFAULT_HOST,
    *,
    verbose: bool = False,
    max_spans: int = DEFAULT_MAX_SPANS,
    max_log_records: int = DEFAULT_MAX_LOG_RECORDS,
    max_metric_streams: int = DEFAULT_MAX_METRIC_STREAMS,
) -> tuple[OtlpReceiver, str]:
    """Start a receiver in this process (port 0 = a free one); returns ``(server, base_url)``.
    Call ``server.stop()`` when done (or use :func:`running`)."""
    server = OtlpReceiver(
        host, port, verbose=verbose, max_spans=max_spans, max_log_records=max_log_records,
        max_metric_streams=max_metric_streams,
    ).start()
    return server, server.url


@contextlib.contextmanager
def running(
    port: int = 0,
    host: str = DEFAULT_HOST,
    *,
    verbose: bool = False,
    max_spans: int = DEFAULT_MAX_SPANS,
    max_log_records: int = DEFAULT_MAX_LOG_RECORDS,
    max_metric_streams: int = DEFAULT_MAX_METRIC_STREAMS,
) -> Iterator[OtlpReceiver]:
    """``with running() as server:`` – an in-process receiver on a free port, stopped afterwards."""
    server, _ = start_in_thread(
        port, host, verbose=verbose, max_spans=max_spans, max_log_records=max_log_records,
        max_metric_streams=max_metric_streams,
    )
    try:
        yield server
    finally:
        server.stop()


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    verbose: bool = True,
    max_spans: int = DEFAULT_MAX_SPANS,
    max_log_records: int = DEFAULT_MAX_LOG_RECORDS,
    max_metric_streams: int = DEFAULT_MAX_METRIC_STREAMS,
) -> None:
    """Run in the foreground until Ctrl-C (the CLI)."""
    server = OtlpReceiver(
        host, port, verbose=verbose, max_spans=max_spans, max_log_records=max_log_records,
        max_metric_streams=max_metric_streams,
    )
    print(
        f"Local OTLP/HTTP receiver (dev only) on {server.url}\n"
        f"  traces page: {server.url}/\n"
        f"  JSON:        {server.url}/traces  /traces/{{traceId}}  /metrics  /metrics/{{name}}?attr=value  /logs\n"
        f"  exporters:   OTEL_EXPORTER_OTLP_ENDPOINT={server.url} OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
