"""A lease per account in Table Storage: one charge attempt in flight per account, across instances.

The lease row lives in the account's own partition. It expires, so a holder that crashed does
not block the account forever. Expiry is measured on the system clock, not the business clock:
a frozen test clock must not make a lease eternal.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

LEASE_ROW = "lease"


class LeaseBusy(Exception):
    """Another holder has the account's lease and did not release it in time."""


class Leases(Protocol):
    def hold(self, account_id: str, *, wait: float = 20.0, poll: float = 0.05) -> AbstractContextManager[str]:
        """Hold the account's lease for a block, waiting up to `wait` seconds; raises `LeaseBusy`.
        Yields the holder's id."""
        ...

    def renew(self, account_id: str, holder: str) -> bool:
        """Extend a held lease by its full time to live; False if it expired and was taken over."""
        ...


class AccountLeases:
    def __init__(self, table: TableClient, ttl: timedelta = timedelta(seconds=60)) -> None:
        self.table = table
        self.ttl = ttl
        self._etags: dict[str, str] = {}  # holder -> the lease row's ETag as it last wrote it

    def try_acquire(self, account_id: str, holder: str) -> str | None:
        """The lease's ETag when taken, else None."""
        now = datetime.now(UTC)
        entity = {"PartitionKey": account_id, "RowKey": LEASE_ROW, "holder": holder,
                  "expiresAt": (now + self.ttl).isoformat()}
        try:
            return str(self.table.create_entity(entity)["etag"])
        except ResourceExistsError:
            pass
        try:
            current = self.table.get_entity(account_id, LEASE_ROW)
        except ResourceNotFoundError:
            return None  # released between our two calls: the caller tries again
        if datetime.fromisoformat(current["expiresAt"]) > now:
            return None
        try:
            meta = self.table.update_entity(entity, mode=UpdateMode.REPLACE, etag=current.metadata["etag"],
                                            match_condition=MatchConditions.IfNotModified)
        except HttpResponseError:
            return None  # someone else took over the expired lease first
        return str(meta["etag"])

    def renew(self, account_id: str, holder: str) -> bool:
        etag = self._etags.get(holder)
        if etag is None:
            return False
        entity = {"PartitionKey": account_id, "RowKey": LEASE_ROW, "holder": holder,
                  "expiresAt": (datetime.now(UTC) + self.ttl).isoformat()}
        try:
            meta = self.table.update_entity(entity, mode=UpdateMode.REPLACE, etag=etag,
                                            match_condition=MatchConditions.IfNotModified)
        except HttpResponseError:
            return False  # expired and taken over: it is not ours any more
        self._etags[holder] = str(meta["etag"])
        return True

    def release(self, account_id: str, etag: str) -> None:
        # Expired and taken over, or already gone: then it is not ours to delete.
        with contextlib.suppress(ResourceNotFoundError, HttpResponseError):
            self.table.delete_entity(account_id, LEASE_ROW, etag=etag, match_condition=MatchConditions.IfNotModified)

    @contextmanager
    def hold(self, account_id: str, *, wait: float = 20.0, poll: float = 0.05) -> Iterator[str]:
        """Hold the account's lease for the block, waiting up to `wait` seconds for it."""
        holder = uuid.uuid4().hex
        deadline = time.monotonic() + wait
        while (etag := self.try_acquire(account_id, holder)) is None:
            if time.monotonic() > deadline:
                raise LeaseBusy(account_id)
            time.sleep(poll)
            poll = min(poll * 1.5, 0.5)
        self._etags[holder] = etag
        try:
            yield holder
        finally:
            self.release(account_id, self._etags.pop(holder, etag))
