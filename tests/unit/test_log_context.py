"""Log records carry the invocation, account and event they belong to."""

from __future__ import annotations

import logging

import pytest

from shared.log_context import current, log_context


def test_records_inside_the_block_carry_the_context(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("shared.services.unit_of_work")
    caplog.set_level(logging.INFO)
    with log_context(invocation_id="inv-1", account_id="acc-1", event_id="e-1"):
        log.info("inside")
        assert current() == {"invocation_id": "inv-1", "account_id": "acc-1", "event_id": "e-1"}
    log.info("outside")
    inside, outside = caplog.records[-2:]
    assert (inside.invocation_id, inside.account_id, inside.event_id) == ("inv-1", "acc-1", "e-1")  # type: ignore[attr-defined]
    assert not hasattr(outside, "account_id") and current() == {}


def test_card_numbers_in_messages_and_tracebacks_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("shared.services.unit_of_work")
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


@pytest.mark.parametrize("path", ["/api/billing/acc-1?note=4111+1111+1111+1111&sig=x",
                                  "/api/accounts/4111%201111%201111%201111", "/api/x?n=4111%2D1111%2D1111%2D1111"])
def test_a_card_number_percent_encoded_in_a_url_is_masked(caplog: pytest.LogCaptureFixture, path: str) -> None:
    caplog.set_level(logging.INFO)
    access = logging.getLogger("uvicorn.access")
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", path, "1.1", 200)
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/api/x?a=1+2%203", "1.1", 200)
    masked, plain = (r.getMessage() for r in caplog.records[-2:])
    assert "4111" not in masked and "1111" in masked and "/api/" in masked
    assert plain.endswith('"GET /api/x?a=1+2%203 HTTP/1.1" 200')  # nothing to mask: kept as written


def test_an_operation_id_in_a_log_line_is_kept_and_a_card_number_beside_it_masked(
        caplog: pytest.LogCaptureFixture) -> None:
    """An ACS operation id whose first three groups are 16 digits passing Luhn is still an id."""
    caplog.set_level(logging.INFO)
    operation = "39684038-0819-5168-ad1c-e96a19fda06b"
    logging.getLogger("devstack.email_endpoint").info("accepted %s (note %s)", operation, "4111 1111 1111 1111")
    assert caplog.records[-1].getMessage() == f"accepted {operation} (note **** **** **** 1111)"
