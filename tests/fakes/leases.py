"""`Leases` within one process: the twin of `shared.adapters.store.leases.AccountLeases`."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from shared.adapters.store.leases import LeaseBusy


class InMemoryLeases:
    """One holder per account at a time, waiting up to `wait` seconds as the real lease does."""

    def __init__(self) -> None:
        self._held: dict[str, str] = {}  # account -> its holder
        self._lock = threading.Condition()

    def renew(self, account_id: str, holder: str) -> bool:
        with self._lock:
            return self._held.get(account_id) == holder

    @contextmanager
    def hold(self, account_id: str, *, wait: float = 20.0, poll: float = 0.05) -> Iterator[str]:
        with self._lock:
            if not self._lock.wait_for(lambda: account_id not in self._held, timeout=wait):
                raise LeaseBusy(account_id)
            holder = self._held[account_id] = uuid.uuid4().hex
        try:
            yield holder
        finally:
            with self._lock:
                if self._held.get(account_id) == holder:
                    del self._held[account_id]
                self._lock.notify_all()
