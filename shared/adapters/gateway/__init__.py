"""The payment gateway: its port (`protocol.py`) and adapters (`http.py` for the product's own
protocol, `stripe.py` for Stripe, `capped.py` bounding charges in flight). The in-memory twin is
the sandbox's card model (`devstack/sandbox_gateway/cards.py`), a development tool."""
