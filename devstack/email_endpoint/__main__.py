"""``python -m devstack.email_endpoint``: run the local ACS email endpoint in the foreground."""

from __future__ import annotations

import argparse
import base64
import binascii

from devstack.email_endpoint.server import DEFAULT_ACCESS_KEY, DEFAULT_HOST, DEFAULT_PORT, serve


def _base64_key(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        raise argparse.ArgumentTypeError("the access key must be base64, like an ACS access key") from None
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.email_endpoint",
        description="Local, dev-only Azure Communication Services Email endpoint with an inbox page.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free)")
    parser.add_argument(
        "--access-key",
        type=_base64_key,
        default=DEFAULT_ACCESS_KEY,
        help="base64 access key the SDK signs with (default: the public local development key)",
    )
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.access_key)


if __name__ == "__main__":
    main()
