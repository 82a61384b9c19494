"""A cap on concurrent calls to the payment gateway, per instance.

Sweep work runs on many instances at once, each with many messages in flight, and processors
rate-limit merchants. Each instance lets at most `limit` charge calls (`charge`, `find_charge`)
be in flight at a time (app setting `PAYMENT_GATEWAY_MAX_CONCURRENT_CHARGES`); the rest wait their
turn. With `n` instances at most (the plan's `maximumInstanceCount`) and `t` seconds per charge,
the processor sees at most `limit * n / t` charges per second: choose `limit` and `n` to stay
under its published rate. Saving a card is a customer waiting on a page, so it is not held back.
"""

from __future__ import annotations

import threading

from shared.adapters.gateway.protocol import (
    CardDetails,
    ChargeResult,
    PaymentGateway,
    find_charge_for,
    save_card_for,
)
from shared.domain.charge_answers import ChargeAnswer
from shared.domain.money import Money


class CappedGateway:
    """A `PaymentGateway` that lets at most `limit` charge calls run at once in this process."""

    def __init__(self, inner: PaymentGateway, limit: int) -> None:
        if limit < 1:
            raise ValueError("the cap on concurrent charges must be at least 1")
        self.inner = inner
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    def save_card(self, token: str) -> CardDetails:
        return self.inner.save_card(token)

    def charge(self, *, idempotency_key: str, amount: Money, token: str, account_id: str,
               description: str) -> ChargeAnswer:
        with self._slots:
            return self.inner.charge(idempotency_key=idempotency_key, amount=amount, token=token,
                                     account_id=account_id, description=description)

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        with self._slots:
            return self.inner.find_charge(idempotency_key)

    def max_charge(self, currency: str) -> int:
        return self.inner.max_charge(currency)

    # A `CustomerGateway` whatever the inner one is: the account reaches it when it wants one.
    def save_customer_card(self, token: str, account_id: str) -> CardDetails:
        return save_card_for(self.inner, token, account_id)

    def find_customer_charge(self, idempotency_key: str, account_id: str, token: str | None) -> ChargeResult | None:
        with self._slots:
            return find_charge_for(self.inner, idempotency_key, account_id, token)
