"""The local sandbox payment gateway: a development tool, never deployed (see .funcignore).

    python -m devstack.sandbox_gateway [--host 127.0.0.1] [--port 7076]
        [--storage-connection-string CS] [--api-key KEY] [--table sandboxcharges]

In tests, start one in-process on a free port:

    sandbox = start_in_thread(storage_connection_string)   # port=0: a free port
    gateway = HttpPaymentGateway(sandbox.url, sandbox.api_key)
    ...
    sandbox.shutdown()                                       # or use it as a context manager
"""

from __future__ import annotations

import threading
from types import TracebackType

from devstack.sandbox_gateway.server import DEFAULT_API_KEY, SandboxGatewayServer, redact
from devstack.sandbox_gateway.store import TABLE_NAME, ChargeStore

__all__ = [
    "DEFAULT_API_KEY",
    "RunningSandbox",
    "SandboxGatewayServer",
    "create_server",
    "redact",
    "start_in_thread",
]


def create_server(
    connection_string: str,
    *,
    host: str = "127.0.0.1",
    port: int = 7076,
    api_key: str = DEFAULT_API_KEY,
    table_name: str = TABLE_NAME,
    charge_latency: float = 0.0,
) -> SandboxGatewayServer:
    """Bind the server (creating the charges table if missing); call serve_forever() to run it.
    `charge_latency`: seconds every charge takes, like a real processor's (300 ms is typical)."""
    if not connection_string:
        raise ValueError("a storage connection string is required (AzureWebJobsStorage)")
    store = ChargeStore(connection_string, table_name)
    server = SandboxGatewayServer((host, port), store, api_key)
    server.charge_latency = charge_latency
    return server


class RunningSandbox:
    """A sandbox gateway serving on a background thread."""

    def __init__(self, server: SandboxGatewayServer) -> None:
        self.server = server
        self.url = server.url
        self.port = int(server.server_address[1])
        self.api_key = server.api_key
        self._thread = threading.Thread(target=server.serve_forever, name="sandbox-gateway", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self.server.stopping.set()  # wake requests sleeping in a timeout fault
        self.server.shutdown()
        self.server.server_close()
        self.server.store.close()
        self._thread.join(timeout=10)

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()


def start_in_thread(
    connection_string: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str = DEFAULT_API_KEY,
    table_name: str = TABLE_NAME,
) -> RunningSandbox:
    """Start a sandbox gateway in this process; port 0 picks a free port (see `.url`)."""
    server = create_server(connection_string, host=host, port=port, api_key=api_key, table_name=table_name)
    return RunningSandbox(server)
