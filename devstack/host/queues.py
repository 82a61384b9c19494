"""Queue triggers: poll a storage queue (Azurite locally) the way the Functions host does.

The semantics a billing app relies on are the host's, so they are reproduced rather than
simplified: fetch `batchSize` messages whenever no more than `newBatchThreshold` are in flight;
back off exponentially (100 ms up to `maxPollingInterval`) while the queue is empty; decode per
`messageEncoding` (an invalid base64 message goes straight to poison, as in the real host);
delete on success; on failure make the message visible again after `visibilityTimeout`, or,
once it has been dequeued `maxDequeueCount` times, copy it to `<queue>-poison` and delete it.
A message is held invisible for 5 minutes (`DEVSTACK_QUEUE_LEASE_SECONDS` changes that, for the
soak) and that lease is renewed while the function runs.
At shutdown the host stops polling, lets running functions finish for its grace period, then
`hand_back()` returns the messages whose function is still running to the queue as a failed
attempt would (visible again after `visibilityTimeout`), as the Functions host releases them:
a message is deleted only after its function succeeded, never unprocessed.
Nothing a single message or a storage outage does may stop the loop: it logs and carries on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import logging
import os
import re
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from azure.core.exceptions import ResourceExistsError
from azure.core.pipeline.transport import RequestsTransport
from azure.functions.queue import QueueMessage
from azure.storage.queue import LinearRetry, QueueClient
from azure.storage.queue import QueueMessage as StorageMessage

from .aio import pause
from .invoker import Invoker
from .loader import FunctionSpec
from .settings import ConfigError, QueueOptions

log = logging.getLogger("devstack.host")
R = TypeVar("R")

MIN_POLL = 0.1
LEASE_SECONDS = int(os.environ.get("DEVSTACK_QUEUE_LEASE_SECONDS", "") or 300)
RENEW_EVERY = LEASE_SECONDS / 3


def resolve_connection(name: str | None) -> str:
    """The connection string a binding's `connection` names, looked up like the host does:
    the setting itself, then `AzureWebJobs<name>`; no name means `AzureWebJobsStorage`."""
    name = name or "AzureWebJobsStorage"
    for candidate in (name, f"AzureWebJobs{name}"):
        value = os.environ.get(candidate)
        if value:
            return value
    raise ConfigError(f"storage connection setting {name!r} is not set (checked {name} and AzureWebJobs{name})")


_QUEUE_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")


def check_queue_name(name: str) -> None:
    """Storage's naming rule, checked at startup: otherwise every poll fails with a 400."""
    if not _QUEUE_NAME.match(name) or len(name) > 63 - len("-poison"):
        raise ConfigError(
            f"invalid queue name {name!r}: 3-56 characters (room for '-poison'), lowercase letters, "
            "digits and single hyphens, starting and ending with a letter or digit"
        )


def storage_client(connection_string: str, queue: str) -> QueueClient:
    """A client that fails fast: the polling loop retries, so the SDK's 15 s backoffs only hurt.
    Its HTTP reads no environment per request (no netrc or proxy walk: the host talks to its own
    storage, as `shared.adapters.store.clients` does for the app)."""
    return QueueClient.from_connection_string(
        connection_string,
        queue,
        transport=RequestsTransport(use_env_settings=False),
        retry_policy=LinearRetry(backoff=1, retry_total=1, random_jitter_range=0),
        connection_timeout=5,
        read_timeout=30,
    )


def decode_body(text: str, encoding: str) -> bytes:
    """The message body as the function sees it; ValueError if base64 is expected but absent."""
    if encoding == "none":
        return text.encode("utf-8")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"message is not valid base64: {exc}") from exc


def manual_message(body: str) -> QueueMessage:
    """A message for a run through the admin endpoint: the input is the body as is."""
    now = datetime.now(UTC)
    return QueueMessage(  # type: ignore[no-untyped-call]
        id=str(uuid.uuid4()),
        body=body.encode("utf-8"),
        dequeue_count=1,
        insertion_time=now,
        expiration_time=now + timedelta(days=7),
        time_next_visible=now,
        pop_receipt=None,
    )


class QueueListener:
    """Feeds one queue-triggered function; `run()` returns once stopped and drained."""

    def __init__(
        self,
        spec: FunctionSpec,
        connection_string: str,
        options: QueueOptions,
        invoker: Invoker,
        io: Executor,
        stopping: asyncio.Event,
    ) -> None:
        self.spec = spec
        self.queue = str(spec.binding["queueName"])
        self.poison_queue = f"{self.queue}-poison"
        self._options = options
        self._invoker = invoker
        self._io_pool = io
        self._stopping = stopping
        self._client = storage_client(connection_string, self.queue)
        self._poison_client = storage_client(connection_string, self.poison_queue)
        self._running: dict[str, str | None] = {}
        """Messages whose function is running: id -> the pop receipt that settles the message."""

    async def _io(self, call: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Blocking SDK calls run on the storage pool, never on the loop or the function pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io_pool, functools.partial(call, *args, **kwargs))

    def _create_queues(self) -> None:
        for client in (self._client, self._poison_client):
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()

    def _receive(self, count: int) -> list[StorageMessage]:
        pages = self._client.receive_messages(messages_per_page=count, visibility_timeout=LEASE_SECONDS).by_page()
        try:
            return list(next(pages))
        except StopIteration:
            return []

    async def run(self) -> None:
        opts = self._options
        max_poll = max(opts.max_polling_interval, MIN_POLL)
        delay = MIN_POLL
        ready = failing = False
        in_flight: set[asyncio.Task[None]] = set()
        while not self._stopping.is_set():
            if len(in_flight) > opts.new_batch_threshold:
                await asyncio.wait(in_flight, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                if not ready:
                    await self._io(self._create_queues)
                    ready = True
                messages = await self._io(self._receive, opts.batch_size)
            except Exception as exc:
                # Log the first failure loudly and the rest quietly; re-create the queues after,
                # since an in-memory Azurite that restarted has lost them.
                level = logging.DEBUG if failing else logging.WARNING
                log.log(level, "Queue %s: storage error (%s: %s); retrying", self.queue, type(exc).__name__, exc)
                ready, failing = False, True
                await pause(self._stopping, max(delay, 1.0))
                delay = min(delay * 2, max_poll)
                continue
            if failing:
                log.info("Queue %s: storage reachable again", self.queue)
                failing = False
            if not messages:
                await pause(self._stopping, delay)
                delay = min(delay * 2, max_poll)
                continue
            delay = MIN_POLL
            for message in messages:
                task = asyncio.create_task(self._process(message))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight)

    async def _process(self, message: StorageMessage) -> None:
        """One message, start to finish; every storage failure here is logged, never raised."""
        try:
            await self._process_unguarded(message)
        except Exception:
            log.exception("Queue %s: message %s could not be settled; it will reappear", self.queue, message.id)

    async def _process_unguarded(self, message: StorageMessage) -> None:
        opts = self._options
        count = int(message.dequeue_count or 1)
        try:
            body = decode_body(message.content or "", opts.message_encoding)
        except ValueError as exc:
            log.error("Queue %s: message %s moved to %s: %s", self.queue, message.id, self.poison_queue, exc)
            await self._to_poison(message, message.pop_receipt)
            return
        if count > opts.max_dequeue_count:
            log.error(
                "Queue %s: message %s was dequeued %d times; moved to %s",
                self.queue,
                message.id,
                count,
                self.poison_queue,
            )
            await self._to_poison(message, message.pop_receipt)
            return
        value = QueueMessage(  # type: ignore[no-untyped-call]
            id=message.id,
            body=body,
            dequeue_count=count,
            insertion_time=message.inserted_on,
            expiration_time=message.expires_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        reason = f"(queue {self.queue}, message {message.id}, dequeue count {count})"
        invocation = asyncio.create_task(self._invoker.invoke(self.spec, value, reason))
        receipt = message.pop_receipt
        self._running[message.id] = receipt
        try:
            while not invocation.done():
                await asyncio.wait({invocation}, timeout=RENEW_EVERY)
                if not invocation.done() and message.id in self._running:  # keep the message ours
                    receipt = self._running[message.id] = await self._renew(message.id, receipt)
            if message.id not in self._running:
                return  # handed back at shutdown: the next delivery settles it
        finally:
            self._running.pop(message.id, None)
        outcome = invocation.result()
        if outcome.ok:
            await self._io(self._client.delete_message, message.id, receipt)
        elif count >= opts.max_dequeue_count:
            log.error(
                "Queue %s: message %s failed %d times; moved to %s",
                self.queue,
                message.id,
                count,
                self.poison_queue,
            )
            await self._to_poison(message, receipt)
        else:
            retry_in = round(opts.visibility_timeout)
            await self._io(self._client.update_message, message.id, receipt, visibility_timeout=retry_in)

    async def _renew(self, message_id: str, receipt: str | None) -> str | None:
        try:
            updated = await self._io(self._client.update_message, message_id, receipt, visibility_timeout=LEASE_SECONDS)
        except Exception as exc:
            log.warning(
                "Queue %s: could not extend message %s (%s); it may be redelivered",
                self.queue,
                message_id,
                exc,
            )
            return receipt
        return updated.pop_receipt

    async def _to_poison(self, message: StorageMessage, receipt: str | None) -> None:
        """Copy the original text to the poison queue, then delete it here (at-least-once)."""
        await self._io(self._poison_client.send_message, message.content or "")
        await self._io(self._client.delete_message, message.id, receipt)

    async def hand_back(self) -> int:
        """Shutdown, after the grace period: every message whose function is still running goes
        back to the queue, visible again after `visibilityTimeout`, as after a failed attempt (its
        dequeue count already counts this delivery). Returns how many were handed back; one that
        cannot be (storage gone) stays invisible until its lease runs out, then reappears."""
        running, self._running = dict(self._running), {}
        retry_in = round(self._options.visibility_timeout)
        handed = 0
        for message_id, receipt in running.items():
            try:
                await self._io(self._client.update_message, message_id, receipt, visibility_timeout=retry_in)
            except Exception as exc:
                log.warning(
                    "Queue %s: message %s not handed back (%s); it reappears when its lease runs out",
                    self.queue,
                    message_id,
                    exc,
                )
                continue
            handed += 1
            log.info("Queue %s: message %s handed back unfinished; it will be delivered again", self.queue, message_id)
        return handed

    def close(self) -> None:
        self._client.close()
        self._poison_client.close()
