"""`Queues` on Azure Storage queues (`azure-storage-queue`), one client per role."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from azure.storage.queue import QueueClient

from shared.adapters.queues.protocol import QueueRole


class StorageQueues:
    def __init__(self, clients: Mapping[QueueRole, QueueClient]) -> None:
        self.clients = dict(clients)

    def send(self, role: QueueRole, text: str, *, visible_in: timedelta | None = None) -> None:
        timeout = int(visible_in.total_seconds()) if visible_in else None
        self.clients[role].send_message(text, visibility_timeout=timeout)

    def client(self, role: QueueRole) -> QueueClient:
        """The SDK client of one queue (for development tools and tests that read it)."""
        return self.clients[role]
