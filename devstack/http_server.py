"""What every local HTTP server of the dev stack shares (the email endpoint, the OTLP receiver):
a threading server on IPv4 or IPv6, its URL, and serving from a daemon thread it can stop.

A development tool, never deployed (contract §5).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class LocalServer(ThreadingHTTPServer):
    """A threading HTTP server for loopback tools; `thread_name` names its serving thread."""

    daemon_threads = True  # a hung client never keeps the test process alive
    thread_name = "local-server"

    def __init__(self, host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        self._thread: threading.Thread | None = None
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), handler)

    @property
    def authority(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def url(self) -> str:
        """The base URL (plain http)."""
        return f"http://{self.authority}"

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> Self:
        """Serve from a daemon thread; returns self so ``Server(...).start()`` reads well."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"{self.thread_name}-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice or without :meth:`start`."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()

    def __exit__(self, *args: object) -> None:
        self.stop()


class LocalHandler(BaseHTTPRequestHandler):
    """A request handler whose every method goes to `_dispatch`, logging only when the server is
    `verbose`, with the answer helpers the tools share. `_echo_headers` adds headers to every answer."""

    server: LocalServer

    def _dispatch(self) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    def _echo_headers(self) -> Mapping[str, str]:
        return {}

    def _send_json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self._send_bytes(status, data, "application/json; charset=utf-8", headers)

    def _send_empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send_bytes(
        self, status: int, data: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in {**(headers or {}), **self._echo_headers()}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
