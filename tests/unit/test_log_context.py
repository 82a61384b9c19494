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


def test_card_numbers_in_messages_and_tracebacks_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("shared.handlers")
    caplog.set_level(logging.INFO)
    log.warning("refused %s for %s", "4111 1111 1111 1111", "acc-1")
    try:
        raise ValueError("bad amount '4111-1111-1111-1111'")
    except ValueError:
        log.exception("failed")
    logged = caplog.text + "".join(logging.Formatter().format(r) for r in caplog.records)
    assert "refused **** **** **** 1111 for acc-1" in caplog.records[-2].getMessage()
    assert "****-****-****-1111" in logged
    assert "4111 1111" not in logged and "4111-1111" not in logged
