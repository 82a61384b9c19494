"""The hosted billing page, reached from the link in a real email, in headless Chromium too."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from devstack.stack import LocalStack
from tests.e2e.conftest import new_account, wait_until


def link_from_email(stack: LocalStack, account_id: str) -> str:
    def found() -> str | None:
        for m in requests.get(f"{stack.email_url}/messages", timeout=10).json():
            if m["headers"].get("X-Billing-Account") == account_id:
                match = re.search(r'href="([^"]*/api/billing/[^"]+)"', m["html"])
                if match:
                    return html.unescape(match.group(1))
        return None

    return str(wait_until(found, "an email with the billing link"))


def owing_account(api: str, send_event: Callable[..., str], locale: str = "en") -> str:
    acc = new_account(api, subscriptions=2, locale=locale, token="tok_chargeDeclined")
    for cid, sub, amount, cur in (("c1", "s1", "10.00", "USD"), ("c2", "s2", "500", "JPY")):
        send_event("billing.charge.failed", {"accountId": acc, "subscriptionId": sub, "chargeId": cid,
                                             "amount": amount, "currency": cur, "reason": "card_declined"})
    wait_until(lambda: requests.get(f"{api}/accounts/{acc}", timeout=10).json()["balance"] == {"JPY": "500",
                                                                                              "USD": "10.00"},
               "the balance")
    return acc


def test_the_emailed_link_opens_the_page_and_saving_a_card_settles_everything(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    acc = owing_account(api, send_event)
    link = link_from_email(stack, acc)
    page = requests.get(link, timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "script-src" not in page.headers["Content-Security-Policy"]  # no script at all: default-src 'none'
    text = page.text
    assert "Billing for Contoso Ltd" in text and "$10.00" in text and "¥500" in text and "Past due" in text
    refused = requests.post(link, data={"token": "4242 4242 4242 4242"}, timeout=30)
    assert refused.status_code == 400 and "4242 4242" not in refused.text and "never accepted" in refused.text
    paid = requests.post(link, data={"token": "tok_visa"}, timeout=60)
    assert paid.status_code == 200, paid.text
    assert "Payment received" in paid.text and "active again" in paid.text
    view = requests.get(f"{api}/accounts/{acc}", timeout=10).json()
    assert view["balance"] == {} and {s["state"] for s in view["subscriptions"]} == {"active"}
    charges = requests.get(f"{stack.gateway_url}/charges", params={"accountId": acc}, timeout=10).json()
    assert sorted(c["currency"] for c in charges if c["status"] == "succeeded") == ["JPY", "USD"]


def test_a_declined_card_is_told_on_the_page_and_nothing_changes(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    acc = owing_account(api, send_event, locale="zh-CN")
    link = link_from_email(stack, acc)
    r = requests.post(link, data={"token": "tok_chargeDeclinedInsufficientFunds"}, timeout=60)
    assert r.status_code == 200 and "被拒绝" in r.text and "逾期" in r.text
    assert requests.get(f"{api}/accounts/{acc}", timeout=10).json()["balance"] == {"JPY": "500", "USD": "10.00"}


@pytest.mark.parametrize("tamper", ["sig", "expires", "account"])
def test_a_forged_or_altered_link_is_refused(api: str, stack: LocalStack, send_event: Callable[..., str],
                                             tamper: str) -> None:
    acc = owing_account(api, send_event)
    link = link_from_email(stack, acc)
    if tamper == "sig":
        bad = re.sub(r"sig=[^&]+", "sig=AAAA", link)
    elif tamper == "expires":
        bad = re.sub(r"expires=(\d+)", lambda m: f"expires={int(m.group(1)) + 86400}", link)
    else:
        bad = link.replace(f"/billing/{acc}", "/billing/acc-someone-else")
    r = requests.get(bad, timeout=10)
    assert r.status_code == 403 and "not valid" in r.text
    assert requests.post(bad, data={"token": "tok_visa"}, timeout=10).status_code == 403


def test_the_page_renders_in_a_browser(api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "install Debian's chromium (scripts/setup.sh does)"
    acc = owing_account(api, send_event)
    link = link_from_email(stack, acc)
    with tempfile.TemporaryDirectory() as profile, tempfile.TemporaryDirectory() as out:
        flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}"]
        dom = subprocess.run([*flags, "--dump-dom", link], capture_output=True, text=True, timeout=60).stdout
        shot = Path(out) / "billing.png"
        subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1000,900", link], capture_output=True,
                       timeout=60, check=True)
        assert shot.stat().st_size > 10_000
    assert 'id="total"' in dom and "$10.00" in dom and "Save card and pay now" in dom


