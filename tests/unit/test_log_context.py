"""Log records carry the invocation, account and event they belong to."""

from __future__ import annotations

import logging

import pytest

from shared.log_context import current, log_context


def test_records_inside_the_block_carry_the_context(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("shared.handlers")
    caplog.set_level(logging.INFO)
    with log_context(invocation_id="inv-1", account_id="acc-1", event_id="e-1"):
        log.info("inside")
        assert current() == {"invocation_id": "inv-1", "account_id": "acc-1", "event_id": "e-1"}
    log.info("outside")
    inside, outside = caplog.records[-2:]
    assert (inside.invocation_id, inside.account_id, inside.event_id) == ("inv-1", "acc-1", "e-1")  # type: ignore[attr-defined]
    assert not hasattr(outside, "account_id") and current() == {}
