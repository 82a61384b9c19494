"""Card data and disguised text sent to the running stack by mistake or on purpose (issue 15):
refused over HTTP with the field named, refused on the queue and kept only redacted."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests

from devstack.stack import LocalStack
from shared.inbound.card_data import contains_card_number, mask_escaped_card_numbers
from tests.e2e.conftest import all_dead_letters, new_account, wait_until

CARD = "4111 1111 1111 1111"


def _event(account_id: str, marker: str, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0", "id": f"evt-{uuid.uuid4().hex}", "type": "billing.charge.failed",
        "source": f"/tests/{marker}", "time": "2026-12-01T09:00:00Z",
        "data": {"accountId": account_id, "subscriptionId": "s1", "chargeId": "c1", "amount": "12.00",
                 "currency": "USD", "reason": "card_declined"},
    }
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = event
        for p in parents:
            node = node[p]
        node[last] = value
    return event


QUEUE_CASES: dict[str, dict[str, Any]] = {
    "reason": {"data__reason": CARD},
    "amount": {"data__amount": "4111-1111-1111-1111"},
    "type": {"type": "billing.charge.4111111111111111"},
    "id that is no identifier": {"id": "evt 4111.1111.1111.1111"},
    "charge id that is no identifier": {"data__chargeId": "4111 1111 1111 1111"},
    "no-break spaces": {"data__reason": "4111\u00a01111\u00a01111\u00a01111"},
    "JSON number": {"data__amount": 4111111111111111.0},
    "reason flush against a word": {"data__reason": "declined4111111111111111"},
    "subject": {"subject": "5555555555554444"},
}
# In attributes the product ignores, card data does not make a valid event invalid: applied, and
# nothing of them kept (the session's closing scan finds no card number anywhere).
EPOCH_MS = 1764477712343  # an epoch in milliseconds that passes Luhn, as about one in ten does
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-1234567890123452-01"  # a span id of digits, Luhn-valid
IGNORED_CASES: dict[str, dict[str, Any]] = {
    "epoch-ms sequence and digit-only span id": {"sequence": EPOCH_MS, "traceparent": TRACEPARENT,
                                                 "tracestate": "dd=p:1234567890123452;s:1"},
    "cardnumber attribute": {"cardnumber": "5555555555554444"},
    "cvv attribute": {"cvv": "737"},
    "CVC in data": {"data__CVC": 737},
    "a data field the contract does not define": {"data__note": "4111\u00a01111\u00a01111\u00a01111"},
}


def _leaves(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [leaf for v in node.values() for leaf in _leaves(v)]
    return [leaf for v in node for leaf in _leaves(v)] if isinstance(node, list) else [node]


def _dead_letter(api: str, marker: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        items = all_dead_letters(api)
        return next((i for i in items if marker in i["text"]), None)

    found: dict[str, Any] = wait_until(find, f"the dead letter {marker}")
    return found


def test_card_data_on_the_queue_is_refused_and_kept_only_redacted(api: str, send_event: Callable[..., str]) -> None:
    acc = new_account(api)
    markers = {}
    for name, changes in QUEUE_CASES.items():
        markers[name] = uuid.uuid4().hex
        send_event("", {}, raw=json.dumps(_event(acc, markers[name], **changes)))
    for name, marker in markers.items():
        item = _dead_letter(api, marker)
        assert item["redacted"] is True, name
        assert "card data" in item["reason"], (name, item["reason"])
        served = json.dumps(item)
        assert not contains_card_number(served), (name, served)
        kept = json.loads(item["text"])
        assert "5555555555554444" not in served and kept["source"] == f"/tests/{marker}", name
    # Not one of them was applied: the account never saw charge c1 (its id and event id are not stored).
    assert requests.get(f"{api}/accounts/{acc}", timeout=10).json()["balance"] == {}
    entries = requests.get(f"{api}/accounts/{acc}/timeline", timeout=10).json()["entries"]
    assert "charge_failed" not in [e["kind"] for e in entries]
    assert not contains_card_number(json.dumps(entries))


@pytest.mark.parametrize("changes", IGNORED_CASES.values(), ids=IGNORED_CASES.keys())
def test_card_like_values_in_ignored_attributes_do_not_refuse_a_valid_event(
        api: str, send_event: Callable[..., str], changes: dict[str, Any]) -> None:
    acc = new_account(api)
    marker = uuid.uuid4().hex
    send_event("", {}, raw=json.dumps(_event(acc, marker, **changes)))
    wait_until(lambda: requests.get(f"{api}/accounts/{acc}", timeout=10).json()["balance"] == {"USD": "12.00"},
               "the event applied")
    shown = [requests.get(f"{api}/accounts/{acc}", timeout=10).json(),
             requests.get(f"{api}/accounts/{acc}/timeline", timeout=10).json()]
    assert not {EPOCH_MS, "737", 737} & set(_leaves(shown))
    text = json.dumps(shown)
    assert all(v not in text for v in (str(EPOCH_MS), "1234567890123452", "5555555555554444", "*" * 9, "\\u00a0"))
    assert not [i for i in all_dead_letters(api) if marker in i["text"]]


def test_a_malformed_event_with_such_attributes_is_dead_lettered_masked(
        api: str, send_event: Callable[..., str]) -> None:
    """Its text is kept: the epoch-ms is masked (it cannot be told from a card number), the
    security code removed, the traceparent kept whole, and the dead letter says it was redacted."""
    marker = uuid.uuid4().hex
    send_event("", {}, raw=json.dumps(_event("acc-x", marker, data__amount="twelve", sequence=EPOCH_MS,
                                             traceparent=TRACEPARENT, cvv="737")))
    item = _dead_letter(api, marker)
    kept = json.loads(item["text"])
    assert item["redacted"] is True and "data.amount" in item["reason"] and "redacted" in item["reason"]
    assert kept["sequence"] == "*********2343" and "cvv" not in kept and kept["traceparent"] == TRACEPARENT
    assert kept["data"]["amount"] == "twelve" and not contains_card_number(json.dumps(item))


def test_the_redacted_reason_names_the_fields(api: str, send_event: Callable[..., str]) -> None:
    marker = uuid.uuid4().hex
    send_event("", {}, raw=json.dumps(_event("acc-x", marker, data__reason=CARD, cvv="123")))
    item = _dead_letter(api, marker)
    assert "data.reason" in item["reason"] and "cvv" in item["reason"]
    assert json.loads(item["text"])["data"]["reason"] == "**** **** **** 1111"


def test_a_message_that_is_not_json_is_masked_too(api: str, send_event: Callable[..., str]) -> None:
    marker = uuid.uuid4().hex
    send_event("", {}, raw=f"not json {marker} card {CARD} exp 12/27")
    item = _dead_letter(api, marker)
    assert item["redacted"] and "**** **** **** 1111" in item["text"] and not contains_card_number(item["text"])


def test_a_card_number_behind_json_escapes_in_broken_json_is_masked(api: str, send_event: Callable[..., str]) -> None:
    marker = uuid.uuid4().hex
    escaped = r"4111\u00201111\u00201111\u00201111"
    send_event("", {}, raw=f'{{"source": "/tests/{marker}", "data": {{"reason": "{escaped}"}}')  # no closing brace
    item = _dead_letter(api, marker)
    assert item["redacted"] and '"**** **** **** 1111"' in item["text"] and escaped not in item["text"]
    assert mask_escaped_card_numbers(item["text"]) == item["text"]


def test_a_message_base64_encoded_by_mistake_is_kept_redacted_inside(api: str, send_event: Callable[..., str]) -> None:
    marker = uuid.uuid4().hex
    event = _event("acc-x", marker, data__reason=CARD)
    send_event("", {}, raw=base64.b64encode(json.dumps(event).encode()).decode())

    def find() -> dict[str, Any] | None:
        for item in all_dead_letters(api):
            try:
                text = base64.b64decode(item["text"], validate=True).decode()
            except ValueError:
                continue
            if marker in text:
                return {**item, "decoded": text}
        return None

    item = wait_until(find, "the base64 dead letter")
    assert item["redacted"] and "base64:data.reason" in item["reason"]
    assert json.loads(item["decoded"])["data"]["reason"] == "**** **** **** 1111"


HTTP_CARD_FORMS = ["4111.1111.1111.1111", "4111  1111  1111  1111", "4111/1111/1111/1111",
                   "4111\u00a01111\u00a01111\u00a01111", "4111\t1111\t1111\t1111", "4111_1111_1111_1111",
                   "card4111111111111111", "4111111111111111xyz", "4111    1111    1111    1111"]
HIDDEN = {"right-to-left override": "\u202e", "left-to-right isolate": "\u2066", "zero-width space": "\u200b",
          "escape": "\u001b", "newline": "\n", "private use": "\ue000", "line separator": "\u2028"}


def _account(**changes: Any) -> dict[str, Any]:
    return {"displayName": "Contoso", "billingContacts": ["billing@contoso.example"],
            "subscriptions": [{"id": "s1", "name": "Service 1"}], **changes}


def _refused(api: str, body: dict[str, Any], field: str, account_id: str | None = None) -> None:
    """400 problem+json naming `field`, never echoing a card number; a new account is not created."""
    new = account_id is None
    account_id = account_id or f"acc-{uuid.uuid4().hex[:12]}"
    r = requests.put(f"{api}/accounts/{account_id}", json=body, timeout=10)
    assert r.status_code == 400, (body, r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert [e["field"] for e in r.json()["errors"]] == [field], r.text
    assert not contains_card_number(r.text)
    if new:
        assert requests.get(f"{api}/accounts/{account_id}", timeout=10).status_code == 404


@pytest.mark.parametrize("card", HTTP_CARD_FORMS)
def test_a_card_number_with_any_separator_is_refused_over_http(api: str, card: str) -> None:
    _refused(api, _account(displayName=card), "displayName")
    _refused(api, _account(displayName=f"Contoso {card}"), "displayName")
    _refused(api, _account(subscriptions=[{"id": "s1", "name": card}]), "subscriptions.0.name")


def test_a_card_number_flush_against_a_word_in_an_address_is_refused(api: str) -> None:
    _refused(api, _account(billingContacts=["x4111111111111111@contoso.example"]), "billingContacts.0")
    _refused(api, _account(subscriptions=[{"id": "s1", "name": "Plan 4111111111111111"}]), "subscriptions.0.name")


@pytest.mark.parametrize("name", sorted(HIDDEN))
def test_control_and_bidi_characters_are_refused_and_nothing_changes(api: str, name: str) -> None:
    ch = HIDDEN[name]
    acc = new_account(api)
    _refused(api, _account(displayName=f"Contoso{ch}gnp.exe"), "displayName", acc)
    _refused(api, _account(subscriptions=[{"id": "s1", "name": f"Service{ch}1"}]), "subscriptions.0.name", acc)
    _refused(api, _account(billingContacts=[f"billing{ch}@contoso.example"]), "billingContacts.0", acc)
    view = requests.get(f"{api}/accounts/{acc}", timeout=10).json()
    assert view["displayName"] == "Contoso Ltd" and view["subscriptions"][0]["name"] == "Service 1"


def test_joiners_that_scripts_need_are_kept(api: str) -> None:
    acc = f"acc-{uuid.uuid4().hex[:12]}"
    name = "مهر\u200cشید"
    r = requests.put(f"{api}/accounts/{acc}", json=_account(displayName=name), timeout=10)
    assert r.status_code == 200 and r.json()["displayName"] == name


def test_a_redacted_dead_letter_is_not_replayed(api: str, send_event: Callable[..., str]) -> None:
    marker = uuid.uuid4().hex
    send_event("", {}, raw=json.dumps(_event("acc-x", marker, data__reason="4111-1111-1111-1111")))
    item = _dead_letter(api, marker)
    r = requests.post(f"{api}/deadletters/{item['id']}/replay", timeout=10)
    assert r.status_code == 409 and r.headers["Content-Type"].startswith("application/problem+json")
    assert _dead_letter(api, marker)["replayedAt"] is None


def test_text_from_outside_quoting_a_card_number_is_stored_masked(api: str, stack: LocalStack) -> None:
    """A delivery report's status message is third-party text that reaches the timeline: masked there."""
    acc = new_account(api, contacts=(f"{uuid.uuid4().hex[:10]}@contoso.example",))
    contact = requests.get(f"{api}/accounts/{acc}", timeout=10).json()["billingContacts"][0]
    r = requests.post(f"{stack.functions_url}/runtime/webhooks/eventgrid", timeout=10,
                      params={"functionName": "email_delivery_reports"}, headers={"aeg-event-type": "Notification"},
                      json=[{"id": str(uuid.uuid4()), "topic": "/acs", "subject": "sender/recipient",
                             "eventType": "Microsoft.Communication.EmailDeliveryReportReceived",
                             "eventTime": "2026-12-01T10:00:00Z", "dataVersion": "1.0",
                             "data": {"sender": "billing@contoso.example", "recipient": contact,
                                      "messageId": str(uuid.uuid4()), "status": "Bounced",
                                      "deliveryStatusDetails": {"statusMessage": f"550 rejected: card {CARD}"},
                                      "deliveryAttemptTimeStamp": "2026-12-01T10:00:00Z"}}])
    assert r.status_code == 200, r.text
    entries = wait_until(lambda: [e for e in requests.get(f"{api}/accounts/{acc}/timeline", timeout=10)
                                  .json()["entries"] if "550" in json.dumps(e)], "the bounce in the timeline")
    assert "**** **** **** 1111" in json.dumps(entries, ensure_ascii=False)
    assert not contains_card_number(json.dumps(entries))
