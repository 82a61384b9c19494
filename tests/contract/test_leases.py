"""`Leases` (`shared/adapters/store/leases.py`): one holder per account at a time."""

from __future__ import annotations

import threading
import time

import pytest

from shared.adapters.store.leases import LeaseBusy, Leases


def test_one_holder_at_a_time_and_the_next_waits_in_vain(leases: Leases) -> None:
    with leases.hold("acc-1") as holder:
        assert leases.renew("acc-1", holder)
        started = time.monotonic()
        with pytest.raises(LeaseBusy), leases.hold("acc-1", wait=0.3):
            pass
        assert time.monotonic() - started >= 0.3
        with leases.hold("acc-2", wait=0.3) as other:  # other accounts are not held up
            assert other != holder
    assert not leases.renew("acc-1", holder)  # released: no longer ours
    with leases.hold("acc-1", wait=0.3) as again:
        assert again != holder
        assert not leases.renew("acc-1", holder)  # an earlier holder's id renews nothing
        assert leases.renew("acc-1", again)


def test_a_waiting_holder_gets_the_lease_when_it_is_released(leases: Leases) -> None:
    got: list[str] = []
    with leases.hold("acc-1"):
        waiter = threading.Thread(target=lambda: got.extend(_hold_once(leases)))
        waiter.start()
        time.sleep(0.3)
        assert got == []
    waiter.join(10)
    assert got == ["held"]


def test_a_holder_that_raises_releases_the_lease(leases: Leases) -> None:
    with pytest.raises(RuntimeError), leases.hold("acc-1"):
        raise RuntimeError("boom")
    with leases.hold("acc-1", wait=0.3):
        pass


def _hold_once(leases: Leases) -> list[str]:
    with leases.hold("acc-1", wait=10):
        return ["held"]
