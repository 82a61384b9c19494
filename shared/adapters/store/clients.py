"""Every storage client is built here, from a connection string (Azurite) or an account name
with `DefaultAzureCredential` (Azure, managed identity): one place to change either way."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from azure.core.exceptions import ResourceExistsError
from azure.core.pipeline.transport import RequestsTransport
from azure.core.utils import parse_connection_string
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.queue import QueueClient, QueueServiceClient
from requests.utils import get_environ_proxies

from shared.adapters.store.storable import StorableTableClient
from shared.settings import Settings

RequestHook = Callable[[Any], None]


ServiceT = TypeVar("ServiceT", TableServiceClient, QueueServiceClient)


def _endpoint(kind: str, settings: Settings) -> str:
    """The service's URL, from the connection string (`TableEndpoint`, `QueueEndpoint`, or the
    account and its suffix) or the account name."""
    if not settings.storage_connection_string:
        return f"https://{settings.storage_account_name}.{kind}.core.windows.net"
    parts = parse_connection_string(settings.storage_connection_string, case_sensitive_keys=False)
    account, suffix = parts.get("accountname", ""), parts.get("endpointsuffix", "core.windows.net")
    return str(parts.get(f"{kind}endpoint") or f"https://{account}.{kind}.{suffix}")


def _transport_options(kind: str, settings: Settings) -> dict[str, Any]:
    """HTTP that reads the environment once, not on every request.

    `requests` otherwise looks for `~/.netrc` and walks every environment variable for proxy
    settings on each request (about 6 % of the functions host's CPU per payment event, issue 26).
    Storage requests are signed by the SDK, never by netrc; the proxy settings (`HTTPS_PROXY`,
    `NO_PROXY`, ...) are read here, once, for this service's URL."""
    proxies = get_environ_proxies(_endpoint(kind, settings))
    return {"transport": RequestsTransport(use_env_settings=False), **({"proxies": proxies} if proxies else {})}


def _service(cls: type[ServiceT], kind: str, settings: Settings, hook: RequestHook | None) -> ServiceT:
    kwargs: dict[str, Any] = {"raw_request_hook": hook} if hook else {}
    kwargs |= _transport_options(kind, settings)
    if settings.storage_connection_string:
        return cls.from_connection_string(settings.storage_connection_string, **kwargs)
    from azure.identity import DefaultAzureCredential

    return cls(_endpoint(kind, settings), credential=DefaultAzureCredential(), **kwargs)


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
