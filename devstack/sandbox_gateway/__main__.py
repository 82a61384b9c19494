"""python -m devstack.sandbox_gateway: run the sandbox payment gateway until interrupted."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from types import FrameType

from devstack.sandbox_gateway import DEFAULT_API_KEY, create_server
from devstack.sandbox_gateway.store import TABLE_NAME


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.sandbox_gateway",
        description="Local sandbox payment gateway (development only; charges kept in Table Storage).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7076)
    parser.add_argument(
        "--storage-connection-string",
        default=os.environ.get("AzureWebJobsStorage", ""),  # noqa: SIM112 - the Functions name
        help="Azure Storage connection string (default: env AzureWebJobsStorage)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("PAYMENT_GATEWAY_API_KEY", DEFAULT_API_KEY),
        help="the Bearer key /v1 routes require (default: env PAYMENT_GATEWAY_API_KEY or %(default)s)",
    )
    parser.add_argument("--table", default=TABLE_NAME, help="charges table (default: %(default)s)")
    parser.add_argument(
        "--charge-latency-ms",
        type=int,
        default=int(os.environ.get("SANDBOX_CHARGE_LATENCY_MS", "0")),
        help="milliseconds each charge takes, as a real processor's (default: env SANDBOX_CHARGE_LATENCY_MS or 0)",
    )
    args = parser.parse_args(argv)
    if not args.storage_connection_string:
        parser.error(
            "no storage connection string: pass --storage-connection-string or set AzureWebJobsStorage"
        )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The storage SDK logs every request at INFO; keep the sandbox's own lines readable.
    logging.getLogger("azure").setLevel(logging.WARNING)

    server = create_server(
        args.storage_connection_string,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        table_name=args.table,
        charge_latency=args.charge_latency_ms / 1000,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    logging.getLogger("devstack.sandbox_gateway").info("sandbox gateway listening on %s", server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stopping.set()
        server.server_close()
        server.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
