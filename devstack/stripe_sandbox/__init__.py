"""A local Stripe-compatible sandbox: a development tool, never deployed (see .funcignore).

It speaks the part of Stripe's REST API a Stripe adapter uses (Customers, PaymentMethods,
PaymentIntents with confirm/off_session, list and search), so the official `stripe` SDK pointed
at it reads it; it sends signed webhooks and serves a 3-D Secure page. State is in memory: a
restart forgets everything, like a fresh test-mode account.

    python -m devstack.stripe_sandbox [--host 127.0.0.1] [--port 7077]
        [--webhook-url http://127.0.0.1:7071/api/webhooks/stripe] [--webhook-secret whsec_...]
        [--search-lag-ms 1000] [--charge-latency-ms 0] [--rate-limit N]

In tests, start one in-process on a free port:

    sandbox = start_in_thread(webhook_url=..., webhook_secret=...)      # port=0: a free port
    client = stripe.StripeClient(sandbox.api_key, base_addresses={"api": sandbox.url})
    ...
    sandbox.shutdown()                                                   # or use it as a context manager

Wiring into `python -m devstack.stack --gateway stripe` (not done here; devstack/stack.py is
edited by others): a `stripe` port in StackPorts (7077, or free), then in LocalStack.start()
    self._spawn("stripe", [py, "-m", "devstack.stripe_sandbox", "--port", str(self.ports.stripe),
                           "--webhook-url", f"{self.functions_url}/api/webhooks/stripe",
                           "--webhook-secret", STRIPE_WEBHOOK_SECRET])
with `f"http://127.0.0.1:{port}/health"` among the readiness checks; app_env() adds
PAYMENT_GATEWAY=stripe, STRIPE_API_KEY=sk_test_<anything>, STRIPE_API_BASE=<its url> and the same
STRIPE_WEBHOOK_SECRET; main() prints `stripe sandbox: http://127.0.0.1:7077`. For the settlement
model test and the soak, its /faults routes take the sandbox gateway's JSON, and /charges answers
in the sandbox gateway's shape (idempotencyKey from metadata[idempotencyKey] when the adapter sets
it, else the Idempotency-Key header the PaymentIntent was created with).
"""

from __future__ import annotations

import threading
from types import TracebackType

from devstack.stripe_sandbox.server import DEFAULT_API_KEY, StripeSandboxServer
from devstack.stripe_sandbox.state import DEFAULT_API_VERSION
from devstack.stripe_sandbox.webhooks import DEFAULT_SECRET, WebhookSettings, sign

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_API_VERSION",
    "DEFAULT_PORT",
    "DEFAULT_SECRET",
    "RunningStripeSandbox",
    "StripeSandboxServer",
    "create_server",
    "sign",
    "start_in_thread",
]

DEFAULT_PORT = 7077


def create_server(
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    webhook_url: str | None = None,
    webhook_secret: str = DEFAULT_SECRET,
    search_lag: float = 1.0,
    charge_latency: float = 0.0,
    rate_limit: int | None = None,
    public_url: str | None = None,
) -> StripeSandboxServer:
    """Bind the server; call serve_forever() to run it. `search_lag`: seconds before a change
    shows in search results (Stripe's search is eventually consistent, "under a minute", usually
    about a second); `charge_latency`: seconds every charge takes; `rate_limit`: requests per
    second beyond which Stripe's 429 answers (None: unlimited); `public_url`: the base URL
    browsers reach it at, for the 3-D Secure page (default: its own address)."""
    if not webhook_secret:
        raise ValueError("the webhook secret must not be empty")
    server = StripeSandboxServer(
        (host, port), webhook=WebhookSettings(url=webhook_url, secret=webhook_secret), public_url=public_url
    )
    server.store.search_lag = search_lag
    server.charge_latency = charge_latency
    server.rate_limiter.per_second = rate_limit
    return server


class RunningStripeSandbox:
    """A Stripe sandbox serving on a background thread."""

    api_key = DEFAULT_API_KEY

    def __init__(self, server: StripeSandboxServer) -> None:
        self.server = server
        self.url = server.url
        self.port = int(server.server_address[1])
        self.webhook_secret = server.webhooks.settings.secret
        self._thread = threading.Thread(target=server.serve_forever, name="stripe-sandbox", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self.server.stopping.set()  # wake requests sleeping in a timeout fault
        self.server.shutdown()
        self.server.server_close()
        self.server.webhooks.stop()
        self._thread.join(timeout=10)

    def __enter__(self) -> RunningStripeSandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()


def start_in_thread(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    webhook_url: str | None = None,
    webhook_secret: str = DEFAULT_SECRET,
    search_lag: float = 1.0,
    charge_latency: float = 0.0,
    rate_limit: int | None = None,
) -> RunningStripeSandbox:
    """Start a Stripe sandbox in this process; port 0 picks a free port (see `.url`)."""
    server = create_server(host=host, port=port, webhook_url=webhook_url, webhook_secret=webhook_secret,
                           search_lag=search_lag, charge_latency=charge_latency, rate_limit=rate_limit)
    return RunningStripeSandbox(server)
