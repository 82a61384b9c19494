"""Issue 13 point 9 on the running stack: a subscription disabled by the dunning sweep, then, on
the normal clock, a new `billing.charge.failed` for it: the failure email goes out saying the
service is already disabled, and no address is shown as unreachable."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from devstack.stack import LocalStack
from tests.e2e.conftest import new_account, wait_until


def _view(api: str, acc: str) -> dict[str, Any]:
    return dict(requests.get(f"{api}/accounts/{acc}", timeout=10).json())


def _failed(acc: str, charge: str) -> dict[str, str]:
    return {"accountId": acc, "subscriptionId": "s1", "chargeId": charge, "amount": "25.00", "currency": "USD",
            "reason": "card_declined"}


@pytest.mark.parametrize(("locale", "already"), [("en", "This service is already disabled"),
                                                 ("zh-CN", "此服务已被禁用")])
def test_a_new_failure_on_a_disabled_subscription_is_mailed_and_no_address_is_blamed(
        api: str, stack: LocalStack, send_event: Callable[..., str], locale: str, already: str) -> None:
    acc = new_account(api, locale=locale, contacts=("ops@contoso.example",))
    start = datetime.now(UTC) - timedelta(days=40)
    try:
        requests.put(f"{api}/testing/clock", json={"now": start.isoformat()}, timeout=10).raise_for_status()
        send_event("billing.charge.failed", _failed(acc, "c1"))
        wait_until(lambda: _view(api, acc)["subscriptions"][0]["state"] == "past_due", "past due")
        sweep_at = (start + timedelta(days=31)).isoformat()
        requests.put(f"{api}/testing/clock", json={"now": sweep_at}, timeout=10).raise_for_status()
        r = requests.post(f"{stack.functions_url}/admin/functions/dunning_sweep", json={"input": ""}, timeout=10)
        assert r.status_code == 202
        wait_until(lambda: _view(api, acc)["subscriptions"][0]["state"] == "disabled", "disabled by the sweep")
    finally:
        requests.delete(f"{api}/testing/clock", timeout=10)  # the normal clock from here on
    send_event("billing.charge.failed", _failed(acc, "c2"))

    def failure_mail() -> list[dict[str, Any]]:
        got = requests.get(f"{stack.email_url}/messages", timeout=10).json()
        return [m for m in got if m["headers"].get("X-Billing-Account") == acc
                and m["headers"].get("X-Billing-Email-Kind") == "payment_failed" and already in m["plainText"]]

    [mail] = wait_until(failure_mail, "the failure email for the disabled subscription", timeout=90)
    assert mail["to"][0]["address"] == "ops@contoso.example" and already in mail["html"]
    v = _view(api, acc)
    assert v["subscriptions"][0]["state"] == "disabled" and v["balance"] == {"USD": "50.00"}
    assert "contact_unreachable" not in [a["code"] for a in v["alerts"]]
    kinds = [e["kind"] for e in requests.get(f"{api}/accounts/{acc}/timeline", timeout=10).json()["entries"]]
    assert "email_failed" not in kinds
