"""The host itself: load the app, start HTTP and the trigger listeners, stop them gracefully.

Everything runs on one asyncio loop: uvicorn serves HTTP on it, each queue and timer listener is
a task on it, sync functions run on the invoker's thread pool and blocking storage calls on a
separate small pool (so busy functions can never starve polling or message settlement).
We bind the listening socket ourselves so a busy port is an ordinary OSError rather than
uvicorn's `sys.exit`, and we own SIGINT/SIGTERM: the first one drains (stop polling, stop
HTTP, let in-flight invocations finish for `grace` seconds, then hand the queue messages whose
function still runs back to their queue), a second one exits at once. Shutdown is bounded: what
is still running after that (a function's thread, a storage call) is abandoned, and
`python -m devstack.host` exits 0 without waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import uvicorn

from . import settings
from .admin import Admin
from .eventgrid import EventGridWebhook
from .http import Cors, HttpApp, build_router, function_route
from .invoker import Invoker
from .keys import HostKeys
from .leases import Lease, NoLease, TableLease, host_id
from .loader import EVENT_GRID, HTTP, QUEUE, TIMER, FunctionSpec, LoadError, import_app, load_functions
from .logs import configure_logging
from .queues import QueueListener, check_queue_name, resolve_connection
from .timers import TimerListener, parse_schedule

log = logging.getLogger("devstack.host")

DEFAULT_PORT = 7071
DEFAULT_GRACE = 5.0
HAND_BACK_TIMEOUT = 5.0
"""Seconds, after the grace period, to return unfinished queue messages to their queues."""
THREADS_TIMEOUT = 2.0
"""Seconds, at the very end, for the storage threads to finish their calls before they are abandoned."""


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the Host decides when HTTP stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Host:
    """A local Functions host for one app directory.

    `load()` (called by `run()` if needed) applies local.settings.json, imports the app and
    validates it, raising LoadError/ConfigError/RouteError/ValueError on anything unsupported.
    `await run()` serves until `stop()` or a signal. `http=False` runs only queue and timer
    triggers (a pure worker: several can share one storage account); `triggers=False` only HTTP.
    """

    def __init__(
        self,
        app_dir: str | Path = ".",
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        http: bool = True,
        triggers: bool = True,
        grace: float = DEFAULT_GRACE,
        access_log: bool = False,
        keys: HostKeys | None = None,
    ) -> None:
        self.app_dir = Path(app_dir).resolve()
        self.keys = keys
        self.bind_host = host
        self.requested_port = port
        self.http = http
        self.triggers = triggers
        self.grace = grace
        self.access_log = access_log
        self.port: int | None = None
        self.functions: list[FunctionSpec] = []
        self.abandoned = 0
        """Invocations still running when the host stopped (their threads cannot be stopped)."""
        self.stuck_threads = False
        """Storage calls still running when the host stopped."""
        self.started = threading.Event()
        self._loaded = False
        self._local = settings.LocalSettings()
        self._host_json = settings.HostSettings()
        self._connections: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._signals = 0

    # -- loading -------------------------------------------------------------------------------

    def load(self) -> list[FunctionSpec]:
        """Apply settings, import and validate the app; idempotent. Returns the functions."""
        if self._loaded:
            return self.functions
        self._local = settings.load_local_settings(self.app_dir)
        applied = settings.apply_values(self._local.values)
        kept = sorted(set(self._local.values) - set(applied))
        if kept:
            log.info("local.settings.json: already set in the environment, kept: %s", ", ".join(kept))
        self._host_json = settings.load_host_json(self.app_dir)
        if self.keys is None:
            try:
                self.keys = HostKeys.from_settings(os.environ)
            except ValueError as exc:
                raise settings.ConfigError(str(exc)) from exc
        self.functions = load_functions(import_app(self.app_dir))
        build_router(s for s in self.functions if s.trigger == HTTP)  # RouteError now, not at first request
        if self.triggers:
            for spec in self.functions:
                if spec.trigger == QUEUE:
                    check_queue_name(str(spec.binding.get("queueName")))
                    self._connections[spec.name] = resolve_connection(spec.binding.get("connection"))
                if spec.trigger == TIMER:
                    try:
                        parse_schedule(str(spec.binding["schedule"]))
                    except ValueError as exc:
                        raise LoadError(f"function {spec.name}: {exc}") from exc
        self._loaded = True
        return self.functions

    def _port(self) -> int:
        if self.requested_port is not None:
            return self.requested_port
        return self._local.http_port or DEFAULT_PORT

    def _describe(self, spec: FunctionSpec) -> str:
        if spec.trigger == HTTP:
            methods = ",".join(spec.binding.get("methods") or ["ALL"])
            prefix = f"/{self._host_json.route_prefix}" if self._host_json.route_prefix else ""
            path = f"{prefix}/{function_route(spec).strip('/')}"
            if not self.http:
                return f"[{methods}] {path} (not served: --no-http)"
            return f"[{methods}] http://{self.bind_host}:{self.port}{path}"
        text = spec.describe()
        if spec.trigger == EVENT_GRID and self.http:
            text += f" (POST http://{self.bind_host}:{self.port}/runtime/webhooks/eventgrid?functionName={spec.name})"
        if not self.triggers and spec.trigger in (QUEUE, TIMER):
            text += " (not running: --no-triggers)"
        return text

    # -- running -------------------------------------------------------------------------------

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.bind_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.bind_host, self._port()))
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(True)
        self.port = int(sock.getsockname()[1])
        return sock

    def _lease(self, spec: FunctionSpec, io: ThreadPoolExecutor) -> Lease:
        conn = os.environ.get("AzureWebJobsStorage")  # noqa: SIM112 (exact name)
        if not conn:
            log.warning("AzureWebJobsStorage is not set: timer %s runs without a lock (one worker only!)", spec.name)
            return NoLease()
        return TableLease(conn, host_id(self.app_dir), spec.name, io)

    def stop(self) -> None:
        """Ask a running host to shut down gracefully; safe from any thread."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    def _on_signal(self) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("Second signal: exiting without waiting")
            os._exit(130)
        log.info("Shutting down gracefully (signal again to force)")
        assert self._stopping is not None
        self._stopping.set()

    def _install_signals(self) -> list[signal.Signals]:
        if threading.current_thread() is not threading.main_thread():
            return []
        assert self._loop is not None
        sigs = [signal.SIGINT, signal.SIGTERM]
        for sig in sigs:
            self._loop.add_signal_handler(sig, self._on_signal)
        return sigs

    async def run(self) -> None:
        """Serve until stopped; returns after the graceful shutdown."""
        self.load()
        self._loop = asyncio.get_running_loop()
        self._stopping = stopping = asyncio.Event()
        sock = self._bind() if self.http else None
        io = ThreadPoolExecutor(16, thread_name_prefix="storage")
        invoker = Invoker(str(self.app_dir))
        by_name = {s.name: s for s in self.functions}
        tasks: list[asyncio.Task[Any]] = []
        queues: list[QueueListener] = []
        server: _Server | None = None
        installed = self._install_signals()
        try:
            log.info("Functions in %s:", self.app_dir)
            for spec in self.functions:
                log.info("    %s: %s", spec.name, self._describe(spec))
            if self.triggers:
                for spec in self.functions:
                    if spec.trigger == QUEUE:
                        listener = QueueListener(
                            spec, self._connections[spec.name], self._host_json.queues, invoker, io, stopping
                        )
                        queues.append(listener)
                        tasks.append(self._watch(listener.run(), f"queue listener {spec.name}"))
                    elif spec.trigger == TIMER:
                        timer = TimerListener(spec, invoker, self._lease(spec, io), stopping)
                        tasks.append(self._watch(timer.run(), f"timer {spec.name}"))
            if sock is not None:
                app = HttpApp(
                    [s for s in self.functions if s.trigger == HTTP],
                    self._host_json.route_prefix,
                    invoker,
                    Admin(by_name, invoker),
                    EventGridWebhook({n: s for n, s in by_name.items() if s.trigger == EVENT_GRID}, invoker),
                    Cors(self._local.cors, self._local.cors_credentials),
                    self.keys,
                )
                config = uvicorn.Config(
                    app,
                    lifespan="off",
                    log_config=None,
                    access_log=self.access_log,
                    http="h11",
                    ws="none",
                    timeout_graceful_shutdown=max(1, int(self.grace)),
                )
                server = _Server(config)
                server_task = asyncio.create_task(server.serve(sockets=[sock]), name="http")
                while not server.started and not server_task.done():
                    await asyncio.sleep(0.02)
                if server_task.done():
                    server_task.result()
                    raise RuntimeError("HTTP server stopped during startup")
                server_task.add_done_callback(self._unexpected_end("HTTP server"))
                tasks.append(server_task)
                log.info(
                    "Host started: http://%s:%s (%d functions; %s)",
                    self.bind_host,
                    self.port,
                    len(self.functions),
                    "function keys enforced" if self.keys and self.keys.enforced else "no keys checked",
                )
            else:
                log.info("Host started without HTTP (%d functions)", len(self.functions))
            self.started.set()
            await stopping.wait()
        finally:
            stopping.set()
            if server is not None:
                server.should_exit = True
            await self._drain(tasks, invoker, queues)
            for listener in queues:
                listener.close()
            invoker.close(wait=self.abandoned == 0)
            self.stuck_threads = not _shut_down(io, THREADS_TIMEOUT)
            for sig in installed:
                self._loop.remove_signal_handler(sig)
            self.started.clear()
            log.info("Host stopped")

    def _unexpected_end(self, what: str) -> Callable[[asyncio.Task[Any]], None]:
        """A listener ending on its own is a bug or a dead server: log it, and stop the host
        rather than keep running half-deaf."""

        def done(task: asyncio.Task[Any]) -> None:
            if self._stopping is None or self._stopping.is_set() or task.cancelled():
                return
            exc = task.exception()
            log.error("%s ended unexpectedly: %r; stopping the host", what, exc, exc_info=exc)
            self._stopping.set()

        return done

    def _watch(self, coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=what)
        task.add_done_callback(self._unexpected_end(what))
        return task

    async def _drain(self, tasks: list[asyncio.Task[Any]], invoker: Invoker, queues: list[QueueListener]) -> None:
        """Give listeners, HTTP and in-flight invocations `grace` seconds, hand back the queue
        messages still being processed, then move on."""
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.grace)
            if pending and queues:
                hand_backs = asyncio.gather(*(q.hand_back() for q in queues), return_exceptions=True)
                try:
                    await asyncio.wait_for(hand_backs, HAND_BACK_TIMEOUT)
                except TimeoutError:
                    log.warning("Could not hand every unfinished queue message back within %.0fs", HAND_BACK_TIMEOUT)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if not await invoker.wait_idle(timeout=1.0 if tasks else self.grace):
            self.abandoned = invoker.in_flight
            log.warning("%d invocation(s) still running after %.0fs: abandoned", self.abandoned, self.grace)


def _shut_down(pool: ThreadPoolExecutor, timeout: float) -> bool:
    """Shut `pool` down, waiting at most `timeout` seconds for its running calls; True if none is
    left. (`shutdown(wait=False)` alone is not enough: the interpreter joins pool threads at exit.)"""
    pool.shutdown(wait=False, cancel_futures=True)
    waiter = threading.Thread(target=pool.shutdown, kwargs={"wait": True}, daemon=True)
    waiter.start()
    waiter.join(timeout)
    return not waiter.is_alive()


def serve(
    app_dir: str | Path = ".",
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    http: bool = True,
    triggers: bool = True,
    grace: float = DEFAULT_GRACE,
) -> Host:
    """Run a host in this process until SIGINT/SIGTERM; returns the stopped Host."""
    if not logging.getLogger().handlers:
        configure_logging()
    h = Host(app_dir, host=host, port=port, http=http, triggers=triggers, grace=grace)
    h.load()
    asyncio.run(h.run())
    return h


__all__ = ["DEFAULT_PORT", "Host", "LoadError", "serve"]
