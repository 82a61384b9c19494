"""Calling a user function the way the Python worker does, and logging each invocation once.

Sync functions run on a thread pool (the worker's `PYTHON_THREADPOOL_THREAD_COUNT` sizes it) so
a slow one never blocks HTTP or polling; `async def` functions run on the event loop, where, as
in the worker, blocking calls would stall everything. A parameter named `context` receives a
`func.Context`. Every invocation gets a fresh id and exactly one log line with its outcome and
duration; a failure logs its traceback too, and never escapes to the caller as an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from azure.functions import _abc as abc

from .loader import FunctionSpec

log = logging.getLogger("devstack.host")

_thread_local = threading.local()


class _TraceContext(abc.TraceContext):
    """No distributed tracing locally: empty W3C fields, as the worker gives without a parent."""

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(abc.RetryContext):
    """Retry policies are not run locally: always the first try."""

    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class Context(abc.Context):
    """The `context` argument a function may declare: mostly for its invocation id in logs."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return _thread_local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> abc.TraceContext:
        return _TraceContext()

    @property
    def retry_context(self) -> abc.RetryContext:
        return _RetryContext()


@dataclass(frozen=True)
class Outcome:
    """What a trigger needs to know afterwards: success, the return value, or the exception."""

    invocation_id: str
    ok: bool
    result: Any = None
    error: BaseException | None = None


def _thread_count() -> int | None:
    raw = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "").strip()
    return int(raw) if re.fullmatch(r"[0-9]{1,4}", raw) and int(raw) > 0 else None  # isdigit takes any script


def _call_in_thread(fn: Callable[..., Any], kwargs: dict[str, Any], invocation_id: str) -> Any:
    _thread_local.invocation_id = invocation_id
    try:
        return fn(**kwargs)
    finally:
        _thread_local.invocation_id = None


class Invoker:
    """Runs invocations and counts the ones in flight, so shutdown can wait for them."""

    def __init__(self, function_directory: str, max_workers: int | None = None) -> None:
        self._directory = function_directory
        self._pool = ThreadPoolExecutor(max_workers or _thread_count(), thread_name_prefix="function")
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def invoke(self, spec: FunctionSpec, value: Any, reason: str) -> Outcome:
        """Call `spec` with its trigger value; log one line; return the outcome, never raise."""
        invocation_id = str(uuid.uuid4())
        kwargs: dict[str, Any] = {spec.arg_name: value}
        if spec.wants_context:
            kwargs["context"] = Context(invocation_id, spec.name, self._directory)
        started = time.perf_counter()
        try:
            if spec.is_async:
                self._begin()
                try:
                    result = await spec.user_function(**kwargs)
                finally:
                    self._end()
            else:
                result = await self._in_thread(spec, kwargs, invocation_id)
        except Exception as exc:
            ms = (time.perf_counter() - started) * 1000
            log.error(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms) %s: %s: %s",
                spec.name,
                invocation_id,
                ms,
                reason,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
            return Outcome(invocation_id, ok=False, error=exc)
        ms = (time.perf_counter() - started) * 1000
        log.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%.0fms) %s",
            spec.name,
            invocation_id,
            ms,
            reason,
        )
        return Outcome(invocation_id, ok=True, result=result)

    def _begin(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def _end(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    async def _in_thread(self, spec: FunctionSpec, kwargs: dict[str, Any], invocation_id: str) -> Any:
        """A sync function on the pool. It counts as in flight until its thread returns, even when
        the task awaiting it is cancelled (a shutdown, a dropped HTTP request): a thread cannot be
        stopped, so shutdown must see it to wait for it or to abandon it knowingly."""
        loop = asyncio.get_running_loop()
        call = functools.partial(_call_in_thread, spec.user_function, kwargs, invocation_id)
        self._begin()
        try:
            future = self._pool.submit(contextvars.copy_context().run, call)
        except BaseException:
            self._end()
            raise

        def finished(_: Future[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the host has stopped
                loop.call_soon_threadsafe(self._end)

        future.add_done_callback(finished)
        return await asyncio.wrap_future(future)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is running, at most `timeout` seconds; True if idle."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def close(self, wait: bool) -> None:
        """Release the pool; without `wait`, abandoned sync invocations keep their threads."""
        self._pool.shutdown(wait=wait, cancel_futures=True)
