"""A long history on the running local stack, read page by page over HTTP."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from tests.e2e.conftest import new_account, wait_until

EVENTS = 2000


def pages(api: str, acc: str, **params: Any) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while True:
        r = requests.get(f"{api}/accounts/{acc}/timeline", params=params, timeout=30)
        assert r.status_code == 200, r.text
        got.append(r.json())
        if r.json()["continuation"] is None:
            return got
        params = {**params, "continuation": r.json()["continuation"]}


def test_a_2000_event_history_is_read_page_by_page_either_way(api: str, send_event: Callable[..., str]) -> None:
    acc = new_account(api)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: send_event("billing.payment.received", {
            "accountId": acc, "paymentId": f"pay-{n}", "amount": "1.00", "currency": "USD", "method": "wire"}),
            range(EVENTS)))
    # Each poll may wait behind up to 16 invocations at once on a busy machine: 60 s, not 10, per read.
    wait_until(lambda: requests.get(f"{api}/accounts/{acc}", timeout=60).json()["credit"] == {"USD": f"{EVENTS}.00"},
               "every payment applied", timeout=600)

    first = requests.get(f"{api}/accounts/{acc}/timeline", timeout=30).json()
    assert len(first["entries"]) == 100 and first["order"] == "oldest" and first["continuation"]
    assert first["entries"][0]["kind"] == "account_registered"

    oldest = pages(api, acc, limit=500)
    assert all(len(p["entries"]) == 500 for p in oldest[:-1]) and 0 < len(oldest[-1]["entries"]) <= 500
    entries = [e for p in oldest for e in p["entries"]]
    payments = [m.group(1) for e in entries if e["kind"] == "payment_received"
                for m in [re.search(r"pay-(\d+)", e["detail"])] if m]
    assert sorted(map(int, payments)) == list(range(EVENTS))  # every payment once
    newest = [e for p in pages(api, acc, limit=333, order="newest") for e in p["entries"]]
    assert newest == entries[::-1]

    r = requests.get(f"{api}/accounts/{acc}/timeline",
                     params={"order": "newest", "continuation": first["continuation"]}, timeout=10)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "continuation"
    for bad in ({"limit": "0"}, {"limit": "501"}, {"limit": "ten"}, {"order": "sideways"}):
        r = requests.get(f"{api}/accounts/{acc}/timeline", params=bad, timeout=10)
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == next(iter(bad))


def test_a_tampered_token_with_a_lone_surrogate_is_a_400_naming_continuation(api: str) -> None:
    # Issue 24 point 5: the token's row let free text follow the digits, and a `\ud800` in it
    # reached the storage query as a 500.
    acc = new_account(api)

    def token(fields: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")

    for order in ("oldest", "newest"):
        for fields in ({"r": "tl|000000000001\ud800", "s": 0, "o": order},
                       {"r": "tl|000000000001x", "s": 0, "o": order},
                       {"r": "tl|000000000001", "s": 0, "o": "\ud800"}):
            r = requests.get(f"{api}/accounts/{acc}/timeline", params={"order": order, "continuation": token(fields)},
                             timeout=10)
            assert r.status_code == 400, (fields, r.text)
            assert r.headers["Content-Type"].startswith("application/problem+json")
            assert r.json()["errors"][0]["field"] == "continuation"
    assert requests.get(f"{api}/accounts/{acc}/timeline", timeout=10).status_code == 200
