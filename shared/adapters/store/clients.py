"""Every storage client is built here, from a connection string (Azurite) or an account name
with `DefaultAzureCredential` (Azure, managed identity): one place to change either way."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.queue import QueueClient, QueueServiceClient

from shared.adapters.store.storable import StorableTableClient
from shared.settings import Settings

RequestHook = Callable[[Any], None]


ServiceT = TypeVar("ServiceT", TableServiceClient, QueueServiceClient)


def _service(cls: type[ServiceT], kind: str, settings: Settings, hook: RequestHook | None) -> ServiceT:
    kwargs: dict[str, Any] = {"raw_request_hook": hook} if hook else {}
    if settings.storage_connection_string:
        return cls.from_connection_string(settings.storage_connection_string, **kwargs)
    from azure.identity import DefaultAzureCredential

    return cls(f"https://{settings.storage_account_name}.{kind}.core.windows.net",
               credential=DefaultAzureCredential(), **kwargs)


def table_service(settings: Settings, hook: RequestHook | None = None) -> TableServiceClient:
    return _service(TableServiceClient, "table", settings, hook)


def queue_service(settings: Settings, hook: RequestHook | None = None) -> QueueServiceClient:
    return _service(QueueServiceClient, "queue", settings, hook)


def ensure_table(service: TableServiceClient, name: str) -> TableClient:
    """The table `name`, created if missing; its client sends only what Table Storage can hold
    (`shared.adapters.store.storable`: text made storable on writes, nothing found for text no row can hold)."""
    with contextlib.suppress(ResourceExistsError):
        service.create_table(name)
    return StorableTableClient.wrapping(service.get_table_client(name))


def ensure_queue(service: QueueServiceClient, name: str) -> QueueClient:
    client = service.get_queue_client(name)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client
