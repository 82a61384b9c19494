"""The admin endpoints Core Tools offers: run a non-HTTP function by hand, and a status probe.

`POST /admin/functions/{name}` with `{"input": "..."}` answers 202 at once and runs the function
in the background, as the real host does; its outcome is only in the log (the invoker logs
every failure with its traceback). The input is the queue message body, the Event Grid event
as JSON, or ignored for a timer (which gets `past_due=False`).
`GET /admin/host/status` lets a launcher or a test wait until the host is up.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from . import eventgrid, queues, timers
from .exchange import Reply, Request
from .invoker import Invoker
from .loader import EVENT_GRID, HTTP, QUEUE, TIMER, FunctionSpec


class Admin:
    """Handles `/admin/...`; keeps its background tasks referenced until they finish."""

    def __init__(self, functions: Mapping[str, FunctionSpec], invoker: Invoker) -> None:
        self._functions = {name.lower(): spec for name, spec in functions.items()}
        self._invoker = invoker
        self._tasks: set[asyncio.Task[Any]] = set()

    async def handle(self, request: Request) -> Reply | None:
        """The reply for an admin path, or None when the path is not an admin one."""
        parts = [unquote(p) for p in request.route_path().strip("/").split("/")]
        if len(parts) == 3 and parts[0].lower() == "admin" and parts[1].lower() == "functions":
            if request.method != "POST":
                return Reply.empty(405, [("allow", "POST")])
            return self._run(parts[2], request.body)
        if [p.lower() for p in parts] == ["admin", "host", "status"]:
            if request.method not in ("GET", "HEAD"):
                return Reply.empty(405, [("allow", "GET, HEAD")])
            return Reply.json(200, {"state": "Running", "functions": sorted(s.name for s in self._functions.values())})
        return None

    def _run(self, name: str, body: bytes) -> Reply:
        spec = self._functions.get(name.lower())
        if spec is None:
            return Reply.text(404, f"no function named {name!r}")
        if spec.trigger == HTTP:
            return Reply.text(400, f"{spec.name} is an HTTP function: call its route instead")
        try:
            payload = json.loads(body) if body.strip() else {}
        except (ValueError, RecursionError):  # not JSON, not UTF-8, a huge number, deep nesting
            return Reply.text(400, 'body must be JSON like {"input": "..."}')
        raw = payload.get("input", "") if isinstance(payload, dict) else None
        if raw is not None and not isinstance(raw, str):
            raw = json.dumps(raw)
        if raw is None:
            return Reply.text(400, 'body must be JSON like {"input": "..."}')
        try:
            value = self._trigger_value(spec, raw)
        except ValueError as exc:
            return Reply.text(400, f"bad input for {spec.name}: {exc}")
        task = asyncio.create_task(self._invoker.invoke(spec, value, "(manual run via admin endpoint)"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return Reply.empty(202)

    @staticmethod
    def _trigger_value(spec: FunctionSpec, raw: str) -> Any:
        if spec.trigger == QUEUE:
            return queues.manual_message(raw)
        if spec.trigger == TIMER:
            return timers.timer_request(past_due=False)
        if spec.trigger == EVENT_GRID:
            try:
                event = json.loads(raw)
            except (ValueError, RecursionError) as exc:
                raise ValueError(f"input is not an Event Grid event as JSON: {exc}") from exc
            if not isinstance(event, dict):
                raise ValueError("input must be one event (a JSON object)")
            return eventgrid.build_event(event)
        raise ValueError(f"trigger {spec.trigger} cannot be run by hand")
