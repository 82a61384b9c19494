"""A singleton lock for timer triggers, shared through storage, so N workers fire a timer once.

The real host holds a blob lease per timer function; whichever instance holds it runs the
schedule, the others keep trying to take it over. We do the same with one Azure Table entity
per function (azure-data-tables is already a dependency; Azurite serves tables), taken and
renewed with optimistic concurrency: create it, or replace it only if it expired or is ours,
conditional on its ETag. A holder that dies stops renewing, and another takes over when the
lease expires (`DURATION`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import uuid
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from .aio import pause

log = logging.getLogger("devstack.host")

TABLE = "devstackhostlocks"
DURATION = timedelta(seconds=15)
RENEW_EVERY = 5.0


def host_id(app_dir: Path) -> str:
    """Workers of one app share locks; `AzureFunctionsWebHost__hostid` sets it as in Azure."""
    explicit = os.environ.get("AzureFunctionsWebHost__hostid")  # noqa: SIM112 (exact name)
    if explicit:
        return "".join(c for c in explicit if c.isalnum() or c in "-_")[:64]
    return "app-" + hashlib.sha256(str(app_dir.resolve()).encode()).hexdigest()[:16]


class Lease(Protocol):
    """What a timer needs from its lock: is it ours, and a background keeper to run."""

    @property
    def held(self) -> bool: ...

    async def wait_held(self, stopping: asyncio.Event) -> bool: ...

    async def keep(self, stopping: asyncio.Event) -> None: ...


class NoLease:
    """For a host without storage: the timer runs here, unguarded (and says so at startup)."""

    held = True

    async def wait_held(self, stopping: asyncio.Event) -> bool:
        return not stopping.is_set()

    async def keep(self, stopping: asyncio.Event) -> None:
        await stopping.wait()


class TableLease:
    """One named lease in the lock table; `keep()` acquires and renews it until stopped."""

    def __init__(self, connection_string: str, partition: str, name: str, io: Executor) -> None:
        self._client = TableClient.from_connection_string(
            connection_string, TABLE, connection_timeout=5, read_timeout=10
        )
        self._partition = partition
        self._name = name
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._io_pool = io
        self._held = asyncio.Event()
        self._table_ready = False

    @property
    def held(self) -> bool:
        return self._held.is_set()

    async def wait_held(self, stopping: asyncio.Event) -> bool:
        """Wait until the lease is ours (True) or the host stops (False)."""
        if not self.held:
            stop = asyncio.ensure_future(stopping.wait())
            got = asyncio.ensure_future(self._held.wait())
            await asyncio.wait({stop, got}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            got.cancel()
        return self.held and not stopping.is_set()

    async def keep(self, stopping: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        failing = False
        while not stopping.is_set():
            try:
                ours = await loop.run_in_executor(self._io_pool, self._try_acquire)
                failing = False
            except Exception as exc:
                ours = False
                self._table_ready = False  # a restarted in-memory Azurite has lost the table
                if not failing:
                    why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    log.warning("Timer lock %s: storage error (%s); retrying", self._name, why)
                failing = True
            if ours and not self.held:
                log.info("Timer lock %s acquired by %s", self._name, self._owner)
            elif self.held and not ours:
                log.warning("Timer lock %s lost", self._name)
            (self._held.set if ours else self._held.clear)()
            await pause(stopping, RENEW_EVERY)
        if self.held:
            self._held.clear()
            await loop.run_in_executor(self._io_pool, self._release)
        self._client.close()

    def _try_acquire(self) -> bool:
        if not self._table_ready:
            with contextlib.suppress(ResourceExistsError):
                self._client.create_table()
            self._table_ready = True
        now = datetime.now(UTC)
        entity = {
            "PartitionKey": self._partition,
            "RowKey": self._name,
            "Owner": self._owner,
            "ExpiresAt": now + DURATION,
        }
        try:
            current = self._client.get_entity(self._partition, self._name)
        except ResourceNotFoundError:
            try:
                self._client.create_entity(entity)
            except ResourceExistsError:
                return False
            return True
        if current.get("Owner") != self._owner and current["ExpiresAt"] > now:
            return False
        try:
            self._client.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=current.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    def _release(self) -> None:
        """Give the lease up at shutdown so another worker need not wait for it to expire."""
        try:
            current = self._client.get_entity(self._partition, self._name)
            if current.get("Owner") == self._owner:
                self._client.delete_entity(
                    self._partition,
                    self._name,
                    etag=current.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
        except Exception as exc:
            log.info("Timer lock %s not released (%s); it expires by itself", self._name, exc)
