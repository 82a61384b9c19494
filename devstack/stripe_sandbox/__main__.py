"""python -m devstack.stripe_sandbox: run the Stripe-compatible sandbox until interrupted."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from types import FrameType

from devstack.stripe_sandbox import DEFAULT_PORT, DEFAULT_SECRET, create_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.stripe_sandbox",
        description="Local Stripe-compatible sandbox (development only; state in memory).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--webhook-url", default=os.environ.get("STRIPE_SANDBOX_WEBHOOK_URL") or None,
                        help="where signed events are POSTed (default: env STRIPE_SANDBOX_WEBHOOK_URL; none: no "
                             "webhooks)")
    parser.add_argument("--webhook-secret", default=os.environ.get("STRIPE_WEBHOOK_SECRET", DEFAULT_SECRET),
                        help="the whsec_... secret events are signed with (default: env STRIPE_WEBHOOK_SECRET)")
    parser.add_argument("--webhook-delay-ms", type=int, default=0, help="hold every delivery this long")
    parser.add_argument("--webhook-repeat", type=int, default=0, help="deliver every event this many extra times")
    parser.add_argument("--search-lag-ms", type=int, default=1000,
                        help="milliseconds before a change shows in search results (default: %(default)s)")
    parser.add_argument("--charge-latency-ms", type=int, default=int(os.environ.get("SANDBOX_CHARGE_LATENCY_MS", "0")),
                        help="milliseconds each charge takes (default: env SANDBOX_CHARGE_LATENCY_MS or 0)")
    parser.add_argument("--rate-limit", type=int, default=None,
                        help="requests per second beyond which it answers Stripe's 429 (default: unlimited)")
    parser.add_argument("--public-url", default=None, help="base URL browsers reach it at (3-D Secure page)")
    args = parser.parse_args(argv)
    if args.webhook_secret and not args.webhook_secret.startswith("whsec_"):
        parser.error("--webhook-secret must start with whsec_, as Stripe's signing secrets do")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = create_server(
        host=args.host,
        port=args.port,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        search_lag=args.search_lag_ms / 1000,
        charge_latency=args.charge_latency_ms / 1000,
        rate_limit=args.rate_limit,
        public_url=args.public_url,
    )
    server.webhooks.settings.delay = args.webhook_delay_ms / 1000
    server.webhooks.settings.repeat = args.webhook_repeat

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    logging.getLogger("devstack.stripe_sandbox").info("stripe sandbox listening on %s", server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stopping.set()
        server.server_close()
        server.webhooks.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
