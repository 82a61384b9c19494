"""``python -m devstack.email_endpoint``: run the local ACS email endpoint in the foreground."""

from __future__ import annotations

import argparse
import base64
import binascii

from devstack.email_endpoint.server import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_HOST,
    DEFAULT_PORT,
    Quota,
    parse_quota_spec,
    serve,
)


def _base64_key(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        raise argparse.ArgumentTypeError("the access key must be base64, like an ACS access key") from None
    return value


def quota_argument(value: str) -> Quota:
    """argparse type for ``PER_MINUTE[,PER_HOUR]`` (``30``, ``30,100``, ``,100``)."""
    try:
        return parse_quota_spec(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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
    parser.add_argument(
        "--quota",
        type=quota_argument,
        metavar="PER_MINUTE[,PER_HOUR]",
        help="start with a send quota, as PUT /quota sets it (e.g. 30,100; ,100 = per hour only)",
    )
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.access_key, args.quota)


if __name__ == "__main__":
    main()
