"""The Azure Storage queue behind a role, for integration tests that read what the product sent."""

from __future__ import annotations

from azure.storage.queue import QueueClient

from shared.adapters.queues.protocol import QueueRole
from shared.adapters.queues.storage import StorageQueues
from shared.bootstrap import Services


def queue(svc: Services, role: QueueRole) -> QueueClient:
    queues = svc.uow.queues
    assert isinstance(queues, StorageQueues)
    return queues.client(role)
