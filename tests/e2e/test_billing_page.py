"""The hosted billing page, reached from the link in a real email, in headless Chromium too."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from devstack.stack import LocalStack
from shared.web.billing_links import billing_link
from tests.e2e.cdp import Browser
from tests.e2e.conftest import new_account, wait_until


def link_from_email(stack: LocalStack, account_id: str, to: str | None = None, kind: str | None = None) -> str:
    """The billing link of the newest email to the account (to `to`, of `kind`, when given)."""
    def found() -> str | None:
        for m in reversed(requests.get(f"{stack.email_url}/messages", timeout=10).json()):
            if m["headers"].get("X-Billing-Account") == account_id and to in (None, m["to"][0]["address"]) \
                    and kind in (None, m["headers"].get("X-Billing-Email-Kind")):
                match = re.search(r'href="([^"]*/api/billing/[^"]+)"', m["html"])
                if match:
                    return html.unescape(match.group(1))
        return None

    return str(wait_until(found, "an email with the billing link"))


def submit(link: str, token: str, headers: dict[str, str | None] | None = None,
           form_token: str | None = None) -> requests.Response:
    """Post the page's form as a browser on the page does: with the form's hidden anti-forgery
    token (unless one is given), and the headers a browser adds to a same-origin form post
    (`headers` changes them; None leaves one out)."""
    if form_token is None:
        form_token = page_form_token(link)
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(link))
    given: dict[str, str | None] = {"Origin": origin, "Sec-Fetch-Site": "same-origin", **(headers or {})}
    sent = {k: v for k, v in given.items() if v is not None}
    return requests.post(link, data={"token": token, "form_token": form_token}, headers=sent, timeout=60)


def page_form_token(link: str) -> str:
    page = requests.get(link, timeout=10)
    assert page.status_code == 200, page.text
    found = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert found, "the form carries its anti-forgery token"
    return html.unescape(found.group(1))


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
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")
    refused = submit(link, "4242 4242 4242 4242")
    assert refused.status_code == 400 and "4242 4242" not in refused.text and "never accepted" in refused.text
    paid = submit(link, "tok_visa")
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
    r = submit(link, "tok_chargeDeclinedInsufficientFunds")
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
    assert submit(bad, "tok_visa", form_token=page_form_token(link)).status_code == 403


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




def gateway_fault(stack: LocalStack, **body: Any) -> None:
    requests.post(f"{stack.gateway_url}/faults", json=body, timeout=10).raise_for_status()


@pytest.fixture
def no_faults_left(stack: LocalStack) -> Iterator[None]:
    yield
    requests.delete(f"{stack.gateway_url}/faults", timeout=10).raise_for_status()


def remaining_lines(page: str) -> dict[str, tuple[str, str]]:
    """The page's "still owed" notice: currency -> (the amount as shown, why), unescaped."""
    block = re.search(r'<div class="notice warning" role="status" id="remaining">(.*?)</div>', page, re.S)
    assert block, "the page says what is still owed"
    found = re.findall(r'<li data-currency="([A-Z]{3})"><strong class="amount">([^<]*)</strong>([^<]*)</li>',
                       block.group(1))
    return {cur: (html.unescape(amount), html.unescape(why)) for cur, amount, why in found}


# (locale, USD paid as written, JPY still owed as written, the decline reason, the paid notice)
PARTIAL = [("en", "$10.00", "¥500", "The card does not have enough funds.", "Payment received: $10.00."),
           ("zh-CN", "US$10.00", "JP¥500", "信用卡余额不足。", "已收到付款：US$10.00。")]


@pytest.mark.parametrize(("locale", "paid", "owed", "reason", "paid_notice"), PARTIAL, ids=["en", "zh-CN"])
def test_a_card_that_pays_one_currency_shows_what_is_still_owed_and_why(
        api: str, stack: LocalStack, send_event: Callable[..., str], no_faults_left: None,
        locale: str, paid: str, owed: str, reason: str, paid_notice: str) -> None:
    """USD 10.00 and JPY 500 owed; the new card pays USD and is declined for JPY (charged first):
    the page says what was paid, that JPY 500 is still owed, written as the account's language
    writes it, and that the card was declined for it, with the reason; never "nothing was charged"."""
    acc = owing_account(api, send_event, locale=locale)
    link = link_from_email(stack, acc)
    gateway_fault(stack, mode="decline_next", count=1, declineCode="insufficient_funds")
    r = submit(link, "tok_visa")
    assert r.status_code == 200, r.text
    assert paid_notice in html.unescape(r.text)
    lines = remaining_lines(r.text)
    assert list(lines) == ["JPY"], lines
    amount, why = lines["JPY"]
    assert amount == owed and reason in why
    assert ("declined for this amount" if locale == "en" else "被拒绝") in why
    assert "Nothing was charged" not in r.text and "未扣除任何款项" not in r.text
    assert f'id="total">{html.escape(owed)}<' in r.text  # the table's total agrees
    view = requests.get(f"{api}/accounts/{acc}", timeout=10).json()
    assert view["balance"] == {"JPY": "500"}
    charges = requests.get(f"{stack.gateway_url}/charges", params={"accountId": acc}, timeout=10).json()
    assert sorted((c["currency"], c["status"]) for c in charges) == [("JPY", "declined"), ("USD", "succeeded")]
    later = requests.get(link, timeout=10).text  # the page opened again: the table alone shows what is owed
    assert 'id="remaining"' not in later and f'id="total">{html.escape(owed)}<' in later
    assert paid not in html.unescape(later)


def test_a_charge_still_in_flight_is_told_apart_from_a_decline(
        api: str, stack: LocalStack, send_event: Callable[..., str], no_faults_left: None) -> None:
    """The JPY charge gets no answer (four 503s, nothing found when read back): it stays pending,
    USD is paid, and the page says the JPY charge is still in progress and will not be doubled."""
    acc = owing_account(api, send_event)
    link = link_from_email(stack, acc)
    gateway_fault(stack, mode="fail_next", count=4, status=503, route="POST /v1/charges")
    r = submit(link, "tok_visa")
    assert r.status_code == 200, r.text
    assert "Payment received: $10.00." in r.text
    lines = remaining_lines(r.text)
    assert list(lines) == ["JPY"] and lines["JPY"][0] == "¥500", lines
    assert "still in progress" in lines["JPY"][1] and "never be charged twice" in lines["JPY"][1]
    assert "could not reach" not in r.text and "Nothing was charged" not in r.text


def test_what_is_still_owed_shows_in_a_browser(
        api: str, stack: LocalStack, send_event: Callable[..., str], no_faults_left: None) -> None:
    """The customer types the token and submits the form in headless Chromium; the page they get
    back lists JPY 500 as still owed, in Chinese and as zh-CN writes yen."""
    acc = owing_account(api, send_event, locale="zh-CN")
    link = link_from_email(stack, acc)
    gateway_fault(stack, mode="decline_next", count=1, declineCode="insufficient_funds")
    with Browser() as browser:
        browser.goto(link)
        browser.evaluate("document.querySelector('#token').value = 'tok_visa'")
        browser.evaluate("document.querySelector('button[type=submit]').click()")
        text = browser.wait_for("document.querySelector('#remaining')?.innerText")
        amount = browser.evaluate("document.querySelector('#remaining li[data-currency=JPY] .amount').innerText")
        style = browser.evaluate("getComputedStyle(document.querySelector('#remaining')).borderTopColor")
    assert amount == "JP¥500", text
    assert "仍未付清" in text and "被拒绝" in text and "信用卡余额不足" in text
    assert style == "rgb(245, 158, 11)"  # the page's own stylesheet applies: not blocked by its CSP
    assert requests.get(f"{api}/accounts/{acc}", timeout=10).json()["balance"] == {"JPY": "500"}


def _unchanged(api: str, stack: LocalStack, acc: str) -> None:
    """Nothing was saved or charged: still owing, still the declining card, no charge at the gateway."""
    view = requests.get(f"{api}/accounts/{acc}", timeout=10).json()
    assert view["balance"] == {"JPY": "500", "USD": "10.00"}
    charges = requests.get(f"{stack.gateway_url}/charges", params={"accountId": acc}, timeout=10).json()
    assert not [c for c in charges if c["status"] == "succeeded"]


@pytest.mark.parametrize("headers", [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                                     {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
                                     {"Origin": "null"}, {"Sec-Fetch-Site": "same-site"},
                                     {"Origin": None, "Sec-Fetch-Site": None, "Referer": "https://evil.example/pay"},
                                     {"Origin": None, "Sec-Fetch-Site": None, "Referer": "http://[::1/pay"},
                                     {"Origin": None, "Sec-Fetch-Site": "same-origin", "Referer": "http://[x"},
                                     {"Origin": "http://evil.example", "Host": "evil.example"}],
                         ids=["origin", "sec-fetch-site", "both", "null-origin", "same-site", "referer",
                              "unreadable-referer", "same-origin-unreadable-referer", "dns-rebinding"])
def test_a_cross_site_post_is_refused_and_saves_nothing(
        api: str, stack: LocalStack, send_event: Callable[..., str], headers: dict[str, str | None]) -> None:
    acc = owing_account(api, send_event)
    link = link_from_email(stack, acc)
    r = submit(link, "tok_visa", headers=headers)
    assert r.status_code == 403 and r.headers["Content-Type"].startswith("text/html")
    assert "can only be sent from the billing page" in r.text
    _unchanged(api, stack, acc)


@pytest.mark.parametrize("case", ["missing", "wrong", "another account's", "sent twice"])
def test_a_post_without_the_pages_own_token_is_refused(
        api: str, stack: LocalStack, send_event: Callable[..., str], case: str) -> None:
    acc = owing_account(api, send_event)
    link = link_from_email(stack, acc)
    origin = {"Origin": "{0.scheme}://{0.netloc}".format(urlsplit(link))}
    if case == "missing":
        r = requests.post(link, data={"token": "tok_visa"}, headers=origin, timeout=30)
    elif case == "sent twice":
        good = page_form_token(link)
        r = requests.post(link, data=[("token", "tok_visa"), ("form_token", good), ("form_token", good)],
                          headers=origin, timeout=30)
    else:
        other = page_form_token(link_from_email(stack, owing_account(api, send_event))) if case != "wrong" else "x" * 43
        r = submit(link, "tok_visa", form_token=other)
    assert r.status_code == 403 and "can only be sent from the billing page" in r.text
    _unchanged(api, stack, acc)


def test_a_link_stops_working_when_the_contacts_change(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    acc = owing_account(api, send_event)
    link = link_from_email(stack, acc)
    form = page_form_token(link)
    r = requests.put(f"{api}/accounts/{acc}", timeout=30, json={
        "displayName": "Contoso Ltd", "billingContacts": ["new-billing@contoso.example"],
        "subscriptions": [{"id": "s1", "name": "Service 1"}, {"id": "s2", "name": "Service 2"}]})
    assert r.status_code == 200, r.text
    for answer in (requests.get(link, timeout=10), submit(link, "tok_visa", form_token=form)):
        assert answer.status_code == 410 and answer.headers["Content-Type"].startswith("text/html")
        assert "expired" in answer.text and "most recent email" in answer.text and "support" in answer.text
    _unchanged(api, stack, acc)
    send_event("billing.charge.failed", {"accountId": acc, "subscriptionId": "s1", "chargeId": "c3",
                                         "amount": "1.00", "currency": "USD", "reason": "card_declined"})
    fresh = link_from_email(stack, acc, to="new-billing@contoso.example", kind="payment_failed")
    assert requests.get(fresh, timeout=10).status_code == 200


def test_a_removed_contacts_link_stays_dead_when_the_contact_is_added_back(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    """Remove B, add B back: the contact list is as it was, but B's old link has expired for good;
    the link in the newest email to B opens the page."""
    a, b = "billing@contoso.example", "ops@contoso.example"
    acc = new_account(api, contacts=(a, b), token="tok_chargeDeclined")
    send_event("billing.charge.failed", {"accountId": acc, "subscriptionId": "s1", "chargeId": "c1",
                                         "amount": "10.00", "currency": "USD", "reason": "card_declined"})
    old = link_from_email(stack, acc, to=b, kind="payment_failed")
    assert requests.get(old, timeout=10).status_code == 200
    for contacts in ([a], [a, b]):
        r = requests.put(f"{api}/accounts/{acc}", timeout=30, json={
            "displayName": "Contoso Ltd", "billingContacts": contacts, "subscriptions": [{"id": "s1", "name": "S"}]})
        assert r.status_code == 200, r.text
    back = requests.get(old, timeout=10)
    assert back.status_code == 410 and "expired" in back.text and "most recent email" in back.text
    send_event("billing.charge.failed", {"accountId": acc, "subscriptionId": "s1", "chargeId": "c2",
                                         "amount": "5.00", "currency": "USD", "reason": "card_declined"})
    fresh = wait_until(lambda: (link := link_from_email(stack, acc, to=b, kind="payment_failed")) != old and link,
                       "the failure email of c2 to B")
    assert requests.get(fresh, timeout=10).status_code == 200


def swept(stack: LocalStack, sweep: str, api: str, acc: str,
          done: Callable[[dict[str, Any]], bool]) -> Callable[[], bool]:
    """A check for `wait_until` that runs the sweep (as its timer would, again and again) and
    tells whether the account view shows it done."""

    def check() -> bool:
        started = requests.post(f"{stack.functions_url}/admin/functions/{sweep}", json={"input": ""}, timeout=10)
        assert started.status_code == 202
        time.sleep(0.5)
        return done(requests.get(f"{api}/accounts/{acc}", timeout=10).json())

    return check


def test_a_link_stops_working_once_the_accounts_data_is_erased(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    """Canceled at day 90, data deleted 90 days later: a link made the day before says it expired."""
    acc = new_account(api, token="tok_chargeDeclinedExpiredCard")
    try:
        requests.put(f"{api}/testing/clock", json={"now": "2027-01-01T09:00:00Z"}, timeout=10).raise_for_status()
        send_event("billing.charge.failed", {"accountId": acc, "subscriptionId": "s1", "chargeId": "c1",
                                             "amount": "5.00", "currency": "USD", "reason": "card_expired"})
        link_from_email(stack, acc)
        at_day_90 = swept(stack, "dunning_sweep", api, acc, lambda v: v["subscriptions"][0]["state"] == "canceled")
        requests.put(f"{api}/testing/clock", json={"now": "2027-04-02T09:00:00Z"}, timeout=10).raise_for_status()
        wait_until(at_day_90, "canceled at day 90", timeout=60)
        requests.put(f"{api}/testing/clock", json={"now": "2027-07-02T09:00:00Z"}, timeout=10).raise_for_status()
        # As the last deletion warning's link would be: made the day before, for the contacts then.
        link = billing_link(f"{api}/billing", stack.app_env()["BILLING_LINK_SIGNING_KEY"], acc,
                            1, datetime(2027, 7, 1, 9, tzinfo=UTC))  # version 1: registered once
        assert requests.get(link, timeout=10).status_code == 200
        wait_until(swept(stack, "retention_sweep", api, acc, lambda v: v["billingContacts"] == []),
                   "the account's customer data erased", timeout=60)
        gone = requests.get(link, timeout=10)
        assert gone.status_code == 410 and "expired" in gone.text
    finally:
        requests.delete(f"{api}/testing/clock", timeout=10)
