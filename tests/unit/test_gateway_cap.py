"""The cap on concurrent charges per instance: never more in flight than the setting allows,
and every charge still made once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from devstack.sandbox_gateway.cards import FakeGateway
from shared.adapters.gateway.capped import CappedGateway
from shared.domain.charge_answers import ChargeAnswer, Charged
from shared.domain.money import Money
from shared.settings import Settings, SettingsError

BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}


class CountingGateway(FakeGateway):
    """A fake that records how many charges were inside it at once, each held until released."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = 0
        self.most = 0
        self.count_lock = threading.Lock()
        self.release = threading.Event()

    def charge(self, **kwargs: object) -> ChargeAnswer:
        with self.count_lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        self.release.wait(0.05)
        try:
            return super().charge(**kwargs)  # type: ignore[arg-type]
        finally:
            with self.count_lock:
                self.inside -= 1


@pytest.mark.parametrize("limit", [1, 3, 8])
def test_no_more_charges_in_flight_than_the_cap_and_each_made_once(limit: int) -> None:
    inner = CountingGateway()
    gateway = CappedGateway(inner, limit)

    def charge(n: int) -> ChargeAnswer:
        return gateway.charge(idempotency_key=f"key-{n}", amount=Money.parse("1.00", "USD"), token="tok_visa",
                              account_id=f"acc-{n}", description="test")

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(charge, range(48)))
    assert inner.most == limit
    assert all(isinstance(r, Charged) for r in results)
    assert len(inner.charges) == 48


def test_the_cap_is_a_setting_checked_at_start() -> None:
    assert Settings.from_env(BASE).max_concurrent_charges == 8
    assert Settings.from_env({**BASE, "PAYMENT_GATEWAY_MAX_CONCURRENT_CHARGES": "3"}).max_concurrent_charges == 3
    for bad in ("0", "1001", "three", "３", "-1", "2.5"):
        with pytest.raises(SettingsError, match="PAYMENT_GATEWAY_MAX_CONCURRENT_CHARGES"):
            Settings.from_env({**BASE, "PAYMENT_GATEWAY_MAX_CONCURRENT_CHARGES": bad})
