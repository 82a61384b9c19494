"""openapi.yaml against the running app: Schemathesis fuzzes every operation on the session's local
stack, seeded and bounded, and fails with Schemathesis's own report when a response is a 5xx or
does not match the document.

Before the run an account is registered (`new_account`) and its id becomes the example of the
`accountId` parameters, with a validly signed link to its billing page as the examples of
`expires` and `sig`, so the examples phase (and the stateful links from it) read, update and
settle an account that exists instead of only meeting 404s and 403s. The fuzzer moves the test
clock (`PUT /testing/clock` is in the document), so the clock is returned to real time afterwards.

States the fuzzer cannot reach (subscriptions past due through queued events, a declined card, a
settlement racing its twins, an account known only from events, dead letters, the billing page
of an owing account) are driven on purpose, and each answer is checked against the document by
Schemathesis's own validator.

Bad input that Schemathesis does not generate by itself is tried below: fixed bugs stay as
regression cases; a bug still open is a strict xfail naming it, which turns into a failure
(XPASS) the moment the product is fixed, so its mark goes with the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import schemathesis
import yaml

from devstack.stack import LocalStack
from shared.web.billing_links import SignedLink, billing_link, form_token
from tests.e2e.conftest import all_dead_letters, new_account, wait_until

DOCUMENT = Path(__file__).resolve().parents[2] / "openapi.yaml"
CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"
MAX_EXAMPLES = 20  # per operation and phase: about 30 s against the local stack
SEED = 1
# Warnings that say the document and the app disagree (a regex it cannot use, a documented method
# answered 405, a schema it cannot resolve...), as opposed to ones about how the run went.
DOCUMENT_WARNINGS = {"base_url_mismatch", "validation_mismatch", "missing_deserializer", "unsupported_regex",
                     "method_not_allowed", "unresolvable_reference", "unused_openapi_auth"}
BUDGET_S = 100  # the whole run, Schemathesis's start included; well under two minutes


def signed_link(stack: LocalStack, account_id: str, version: int = 1) -> dict[str, str]:
    """`expires`, `v` and `sig` of a billing link the app accepts (30 days ahead of real time), for
    an account registered once (link version 1)."""
    link = billing_link(f"{stack.functions_url}/api/billing", stack.app_env()["BILLING_LINK_SIGNING_KEY"],
                        account_id, version, datetime.now(UTC))
    return {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}


@pytest.fixture
def fuzz_document(api: str, stack: LocalStack, tmp_path: Path) -> tuple[Path, str]:
    """The document with a freshly registered account, and a signed link to its billing page, as examples."""
    requests.delete(f"{api}/testing/clock", timeout=10)  # the link's expiry is judged by the app's clock
    account_id = new_account(api)
    query = signed_link(stack, account_id)
    doc = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    doc["components"]["parameters"]["AccountId"]["example"] = account_id
    examples: dict[str, Any] = {"accountId": account_id, **query, "expires": int(query["expires"])}
    for parameter in doc["paths"]["/billing/{accountId}"]["parameters"]:
        parameter["example"] = examples[parameter["name"]]
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path, account_id


def test_the_api_answers_as_its_openapi_document_says(api: str, fuzz_document: tuple[Path, str],
                                                     tmp_path: Path) -> None:
    document, account_id = fuzz_document
    report, har = tmp_path / "report.json", tmp_path / "requests.har"
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", str(document), "--url", api,
        "--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
        "--generation-database", "none", "--request-timeout", "20", "--workers", "1", "--no-color",
        "--report", "json,har", "--report-json-path", str(report), "--report-har-path", str(har),
    ]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=BUDGET_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"Schemathesis did not finish within {BUDGET_S} s; its output so far:\n{_text(exc.stdout)}"
                    f"\n{_text(exc.stderr)}")
    finally:
        requests.delete(f"{api}/testing/clock", timeout=10)  # back to real time for the tests that follow
    took = time.monotonic() - started
    output = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, f"Schemathesis found problems ({took:.0f} s):\n{output}"

    summary: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    assert summary["complete"] and not summary["failures"] and not summary["errors"], output
    operations = summary["operations"]
    assert operations["tested"] == operations["total"] == _operation_count(), output
    for phase in ("examples", "coverage", "fuzzing", "stateful"):
        assert summary["phases"][phase]["status"] == "success", (phase, output)
    noise = {kind: found for kind, found in summary["warnings"].items() if found and kind in DOCUMENT_WARNINGS}
    assert not noise, f"Schemathesis warned about the document: {noise}\n{output}"

    entries = json.loads(har.read_text(encoding="utf-8"))["log"]["entries"]
    hits = {(e["request"]["method"], e["response"]["status"]) for e in entries
            if e["request"]["url"].split("?")[0].endswith(f"/accounts/{account_id}")}
    assert ("GET", 200) in hits, "the registered example account was never read"
    pages = {(e["request"]["method"], e["response"]["status"]) for e in entries
             if e["request"]["url"].split("?")[0].endswith(f"/billing/{account_id}")}
    assert ("GET", 200) in pages, "the billing page of the example account was never shown"


def _operation_count() -> int:
    doc = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return sum(1 for item in doc["paths"].values() for method in item
               if method in {"get", "put", "post", "delete", "patch"})


def _text(out: str | bytes | None) -> str:
    return out.decode("utf-8", "replace") if isinstance(out, bytes) else (out or "")


# -- states the fuzzer cannot reach: past due, declined, settled, dead letters ---------------------

def conforms(method: str, path: str, response: requests.Response, *, html: bool = False) -> dict[str, Any]:
    """Fail unless the answer is one the document lists for this operation, with a matching body."""
    operation = schemathesis.openapi.from_path(str(DOCUMENT))[path][method]
    assert str(response.status_code) in operation.definition.raw["responses"], (
        f"{method} {path} answered {response.status_code}, which the document does not list: {response.text[:500]}")
    try:
        operation.validate_response(response)
    except Exception as exc:  # Schemathesis's FailureGroup: its message says what does not match
        pytest.fail(f"{method} {path} answered {response.status_code} unlike the document: {exc}\n"
                    f"{response.text[:2000]}")
    if html:
        assert response.headers["Content-Type"].startswith("text/html"), response.headers
        return {}
    body: dict[str, Any] = response.json()
    return body


def test_answers_in_states_the_fuzzer_cannot_reach_match_the_document(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    acc = new_account(api, subscriptions=2, locale="zh-CN", token="tok_chargeDeclined")
    for charge, sub, amount, currency in [("c1", "s1", "12.34", "USD"), ("c2", "s2", "500", "JPY")]:
        send_event("billing.charge.failed", {"accountId": acc, "subscriptionId": sub, "chargeId": charge,
                                             "amount": amount, "currency": currency, "reason": "card_declined"})
    ghost = f"{acc}-unregistered"
    send_event("billing.charge.failed", {"accountId": ghost, "subscriptionId": "s1", "chargeId": "g1",
                                         "amount": "1.00", "currency": "USD", "reason": "card_declined"})
    send_event("", {}, raw=f"not an event for {acc}")
    account, timeline = "/accounts/{accountId}", "/accounts/{accountId}/timeline"
    pm = "/accounts/{accountId}/payment-method"

    def past_due() -> bool:
        view = requests.get(f"{api}/accounts/{acc}", timeout=10).json()
        return {s["state"] for s in view["subscriptions"]} == {"past_due"} and len(view["balance"]) == 2

    wait_until(past_due, "both subscriptions past due")
    view = conforms("GET", account, requests.get(f"{api}/accounts/{acc}", timeout=10))
    assert view["alerts"] and all(s["disableAt"] for s in view["subscriptions"])
    conforms("GET", timeline, requests.get(f"{api}/accounts/{acc}/timeline", timeout=10))

    declined = conforms("PUT", pm, requests.put(f"{api}/accounts/{acc}/payment-method",
                                                json={"token": "tok_chargeDeclined"}, timeout=60))
    assert declined["status"] == 402 and declined["declineCode"] == "card_declined"

    def settle(_: int) -> requests.Response:
        return requests.put(f"{api}/accounts/{acc}/payment-method", json={"token": "tok_visa"}, timeout=60)

    with ThreadPoolExecutor(6) as pool:  # racing requests: one settles, the others may meet the lease (409)
        answers = [conforms("PUT", pm, r) for r in pool.map(settle, range(6))]
    assert sorted(p["chargeId"] for a in answers if a.get("settled") for p in a["paid"]) == ["c1", "c2"]
    view = conforms("GET", account, requests.get(f"{api}/accounts/{acc}", timeout=10))
    assert view["balance"] == {} and view["alerts"] == []
    conforms("GET", timeline, requests.get(f"{api}/accounts/{acc}/timeline", timeout=10))

    wait_until(lambda: requests.get(f"{api}/accounts/{ghost}", timeout=10).status_code == 200, "the ghost account")
    unregistered = conforms("GET", account, requests.get(f"{api}/accounts/{ghost}", timeout=10))
    assert unregistered["registered"] is False and unregistered["displayName"] is None
    conforms("GET", timeline, requests.get(f"{api}/accounts/{ghost}/timeline", timeout=10))

    wait_until(lambda: any(i["text"] == f"not an event for {acc}"
                           for i in all_dead_letters(api)), "the dead letter")
    conforms("GET", "/deadletters", requests.get(f"{api}/deadletters", timeout=10))

    hold = "/accounts/{accountId}/subscriptions/{subscriptionId}/legal-hold"
    held = conforms("PUT", hold, requests.put(f"{api}/accounts/{acc}/subscriptions/s1/legal-hold",
                                              json={"hold": True}, timeout=10))
    assert [s["legalHold"] for s in held["subscriptions"]] == [True, False]
    conforms("PUT", hold, requests.put(f"{api}/accounts/{acc}/subscriptions/nope/legal-hold", json={"hold": True},
                                       timeout=10))

    query = signed_link(stack, acc)
    form = form_token(stack.app_env()["BILLING_LINK_SIGNING_KEY"], acc, SignedLink.from_query(query))
    page = f"{api}/billing/{acc}"
    billing = "/billing/{accountId}"
    conforms("GET", billing, requests.get(page, params=query, timeout=10), html=True)
    conforms("POST", billing, requests.post(page, params=query, timeout=30,
                                            data={"token": "4242 4242 4242 4242", "form_token": form}), html=True)
    conforms("POST", billing, requests.post(page, params=query, timeout=30, data={"token": "tok_visa"}), html=True)
    conforms("GET", billing, requests.get(page, params={**query, "sig": "A" * 43}, timeout=10), html=True)
    stale = signed_link(stack, acc, version=0)  # made before the account was registered: expired
    conforms("GET", billing, requests.get(page, params=stale, timeout=10), html=True)

    invoiced = requests.put(f"{api}/accounts/{acc}-invoice", timeout=10, json={
        "displayName": "Fabrikam", "billingContacts": ["ap@fabrikam.example"], "paymentMethod": {"type": "invoice"}})
    assert conforms("PUT", account, invoiced)["paymentMethod"] == {"type": "invoice"}
    conforms("GET", "/health", requests.get(f"{api}/health", timeout=10))


# -- bad input the fuzzer does not reach ----------------------------------------------------------

_DEEP = "[" * 5000 + "]" * 5000  # nested deeper than the JSON decoder's recursion limit
_LARGE = json.dumps({"displayName": "x" * 70_000, "billingContacts": ["a@b.example"]})  # over the 64 KiB limit
_ACCOUNT = "acc-openapi-bad-input"


@pytest.mark.parametrize("method, route, body, field", [
    # Fixed in ec368bf (were 500s: OverflowError in the clock, RecursionError in read_json).
    pytest.param("PUT", "/testing/clock", '{"now": "0001-01-01T00:00:00+01:00"}', "now",
                 id="clock-before-year-1-in-utc"),
    pytest.param("PUT", "/testing/clock", '{"now": "9999-12-31T23:59:59-01:00"}', "now",
                 id="clock-after-year-9999-in-utc"),
    pytest.param("PUT", "/testing/clock", '{"now": "9999-12-20T00:00:00Z"}', "now", id="clock-where-dates-overflow"),
    pytest.param("PUT", f"/accounts/{_ACCOUNT}", _DEEP, "body", id="account-deeply-nested-json"),
    pytest.param("PUT", f"/accounts/{_ACCOUNT}/payment-method", _DEEP, "body", id="payment-method-deeply-nested-json"),
    pytest.param("PUT", "/testing/clock", _DEEP, "body", id="clock-deeply-nested-json"),
    pytest.param("PUT", f"/accounts/{_ACCOUNT}/subscriptions/s1/legal-hold", _DEEP, "body",
                 id="legal-hold-deeply-nested-json"),
    pytest.param("PUT", f"/accounts/{_ACCOUNT}", _LARGE, "body", id="account-body-over-64-kib"),
])
def test_bad_input_is_a_400_problem_not_a_500(api: str, method: str, route: str, body: str, field: str) -> None:
    try:
        r = requests.request(method, f"{api}{route}", data=body.encode(), timeout=20,
                             headers={"Content-Type": "application/json"})
    finally:
        requests.delete(f"{api}/testing/clock", timeout=10)
    assert r.status_code == 400, f"{method} {route} answered {r.status_code}: {r.text[:300]}"
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert field in [e["field"] for e in r.json()["errors"]]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_forged_billing_link_with_a_non_ascii_signature_is_a_403(api: str, method: str) -> None:
    """Fixed in ded8f58 (was a 500: hmac.compare_digest raised TypeError on a non-ASCII signature)."""
    requests.delete(f"{api}/testing/clock", timeout=10)
    acc = new_account(api)
    future = int(time.time()) + 86_400
    r = requests.request(method, f"{api}/billing/{acc}", params={"expires": future, "sig": "é" * 43},
                         data={"token": "tok_visa"} if method == "POST" else None, timeout=20)
    assert r.status_code == 403, f"{method} /billing/{acc}?sig=é… answered {r.status_code}: {r.text[:200]}"
    assert r.headers["Content-Type"].startswith("text/html")


def test_put_account_answers_the_account_as_stored(api: str) -> None:
    """The document says PUT answers "the account as it now stands": a GET right after shows the same."""
    acc = new_account(api)  # subscription s1 "Service 1"
    body = {"displayName": "Contoso Ltd", "locale": "en", "billingContacts": ["billing@contoso.example"],
            "subscriptions": [{"id": "s1", "name": "Service One"}, {"id": "s2", "name": "Service 2"}]}
    answered = requests.put(f"{api}/accounts/{acc}", json=body, timeout=30)
    assert answered.status_code == 200, answered.text
    stored = requests.get(f"{api}/accounts/{acc}", timeout=10).json()
    names = {s["id"]: s["name"] for s in stored["subscriptions"]}
    assert answered.json() == stored, f"PUT answered {answered.json()['subscriptions']}, GET shows {names}"
