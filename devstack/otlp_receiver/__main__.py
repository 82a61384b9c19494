"""``python -m devstack.otlp_receiver``: run the local OTLP/HTTP receiver in the foreground."""

from __future__ import annotations

import argparse

from devstack.otlp_receiver.server import DEFAULT_HOST, DEFAULT_PORT, serve
from devstack.otlp_receiver.store import DEFAULT_MAX_LOG_RECORDS, DEFAULT_MAX_METRIC_STREAMS, DEFAULT_MAX_SPANS


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.otlp_receiver",
        description="Local, dev-only OTLP/HTTP receiver (traces, metrics, logs) with a page of trace trees.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free)")
    parser.add_argument("--max-spans", type=_positive, default=DEFAULT_MAX_SPANS,
                        help=f"spans kept, newest first (default {DEFAULT_MAX_SPANS})")
    parser.add_argument("--max-log-records", type=_positive, default=DEFAULT_MAX_LOG_RECORDS,
                        help=f"log records kept (default {DEFAULT_MAX_LOG_RECORDS})")
    parser.add_argument("--max-metric-streams", type=_positive, default=DEFAULT_MAX_METRIC_STREAMS,
                        help=f"metric streams kept (default {DEFAULT_MAX_METRIC_STREAMS})")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    serve(args.host, args.port, verbose=not args.quiet, max_spans=args.max_spans,
          max_log_records=args.max_log_records, max_metric_streams=args.max_metric_streams)


if __name__ == "__main__":
    main()
