"""Every answer of the app's own routes, JSON and HTML, success and refusal alike, tells the
browser never to cache it, never to sniff its type and to use HTTPS only (issue 15: HSTS; an
account view or a dead letter holds personal data that no shared cache may keep)."""

from __future__ import annotations

from collections.abc import Callable

import requests

from devstack.stack import LocalStack
from tests.e2e.conftest import new_account
from tests.e2e.test_billing_page import link_from_email, owing_account

EXPECTED = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _secured(r: requests.Response) -> None:
    for name, value in EXPECTED.items():
        assert r.headers.get(name) == value, (r.request.method, r.url, r.status_code, name, dict(r.headers))
    assert r.headers.get("Strict-Transport-Security", "").startswith("max-age="), (r.url, dict(r.headers))


def test_every_json_answer_carries_the_security_headers(api: str) -> None:
    acc = new_account(api)
    answers = [
        requests.get(f"{api}/accounts/{acc}", timeout=10),  # 200 with contacts
        requests.get(f"{api}/accounts/{acc}/timeline", timeout=10),
        requests.get(f"{api}/accounts/acc-{'0' * 12}", timeout=10),  # 404 problem
        requests.put(f"{api}/accounts/{acc}", json={"displayName": ""}, timeout=10),  # 400 problem
        requests.put(f"{api}/accounts/{acc}/payment-method", json={"token": "tok_chargeDeclined"}, timeout=30),
        requests.get(f"{api}/deadletters", timeout=10),
        requests.get(f"{api}/health", timeout=10),
        requests.get(f"{api}/testing/clock", timeout=10),
    ]
    assert [r.status_code for r in answers][:4] == [200, 200, 404, 400]
    for r in answers:
        _secured(r)


def test_every_billing_page_answer_carries_them_too(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    acc = owing_account(api, send_event)
    link = link_from_email(stack, acc)
    answers = [requests.get(link, timeout=10), requests.get(link.replace("sig=", "sig=x"), timeout=10),
               requests.post(link, data={"token": "tok_visa"}, headers={"Origin": "https://evil.example"}, timeout=10)]
    assert [r.status_code for r in answers] == [200, 403, 403]
    for r in answers:
        _secured(r)
