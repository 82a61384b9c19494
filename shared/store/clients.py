"""Every storage client is built here, from a connection string (Azurite) or an account name
with `DefaultAzureCredential` (Azure, managed identity): one place to change either way."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.queue import QueueClient, QueueServiceClient

from shared.settings import Settings

RequestHook = Callable[[Any], None]


def table_service(settings: Settings, hook: RequestHook | None = None) -> TableServiceClient:
    kwargs: dict[str, Any] = {"raw_request_hook": hook} if hook else {}
    if settings.storage_connection_string:
        return TableServiceClient.from_connection_string(settings.storage_connection_string, **kwargs)
    from azure.identity import DefaultAzureCredential

    return TableServiceClient(f"https://{settings.storage_account_name}.table.core.windows.net",
                              credential=DefaultAzureCredential(), **kwargs)


def queue_service(settings: Settings, hook: RequestHook | None = None) -> QueueServiceClient:
    kwargs: dict[str, Any] = {"raw_request_hook": hook} if hook else {}
    if settings.storage_connection_string:
        return QueueServiceClient.from_connection_string(settings.storage_connection_string, **kwargs)
    from azure.identity import DefaultAzureCredential

    return QueueServiceClient(f"https://{settings.storage_account_name}.queue.core.windows.net",
                              credential=DefaultAzureCredential(), **kwargs)


def ensure_table(service: TableServiceClient, name: str) -> TableClient:
    with contextlib.suppress(ResourceExistsError):
        service.create_table(name)
    return service.get_table_client(name)


def ensure_queue(service: QueueServiceClient, name: str) -> QueueClient:
    client = service.get_queue_client(name)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client
