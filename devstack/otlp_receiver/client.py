"""Reading a running receiver over HTTP, for the stack's ``--story`` and the e2e tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests


def fetch_trace(
    base_url: str,
    trace_id: str,
    *,
    min_spans: int = 1,
    settle: float = 1.0,
    timeout: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any] | None:
    """``GET /traces/{trace_id}`` once the trace has at least ``min_spans`` spans and no new span
    arrived for ``settle`` seconds (exporters batch, so the spans of a trace come in several
    exports); the last tree seen (or None) when ``timeout`` runs out first."""
    deadline = time.monotonic() + timeout
    tree: dict[str, Any] | None = None
    seen, stable_since = -1, time.monotonic()
    while True:
        response = requests.get(f"{base_url.rstrip('/')}/traces/{trace_id}", timeout=10)
        if response.status_code == 200:
            tree = response.json()
        elif response.status_code != 404:
            response.raise_for_status()
        count = tree["spanCount"] if tree else 0
        now = time.monotonic()
        if count != seen:
            seen, stable_since = count, now
        elif count >= min_spans and now - stable_since >= settle:
            return tree
        if now >= deadline:
            return tree
        sleep(min(0.1, max(0.0, deadline - now)))
