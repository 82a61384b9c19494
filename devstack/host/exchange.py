"""The host's own view of one HTTP exchange, free of ASGI details.

The ASGI adapter (`http.py`) reads a request into `Request` and writes a `Reply` back; the
handlers (user routes, admin, Event Grid) only deal with these two small values, which keeps
each of them readable on its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote


@dataclass(frozen=True)
class Request:
    """A fully read request: path is percent-decoded, raw_path as sent (still encoded; empty:
    the same as path), url is what the client asked for."""

    method: str
    path: str
    url: str
    query_string: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_path: str = ""

    def route_path(self) -> str:
        """The path split where the client wrote `/`, each segment decoded, then `%` and `/`
        inside a segment written back as `%25` and `%2F`: so routing sees the client's segments,
        as the Functions host routes, and `routing.segment_value` decodes a matched value."""
        raw = self.raw_path or self.path
        return "/".join(unquote(seg).replace("%", "%25").replace("/", "%2F") for seg in raw.split("/"))

    def header(self, name: str) -> str | None:
        """Header value, duplicates joined with ', ' as the Functions host joins them."""
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def header_dict(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for k, v in self.headers:
            key = k.lower()
            merged[key] = f"{merged[key]}, {v}" if key in merged else v
        return merged

    def query(self) -> dict[str, str]:
        """Query parameters; a repeated name gives its values joined by ',' (as the host does)."""
        merged: dict[str, str] = {}
        for k, v in parse_qsl(self.query_string, keep_blank_values=True):
            merged[k] = f"{merged[k]},{v}" if k in merged else v
        return merged


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def text(cls, status: int, text: str, headers: list[tuple[str, str]] | None = None) -> Reply:
        return cls(status, text.encode(), [("content-type", "text/plain; charset=utf-8"), *(headers or [])])

    @classmethod
    def json(cls, status: int, value: Any) -> Reply:
        return cls(status, json.dumps(value).encode(), [("content-type", "application/json; charset=utf-8")])

    @classmethod
    def empty(cls, status: int, headers: list[tuple[str, str]] | None = None) -> Reply:
        return cls(status, b"", headers or [])
