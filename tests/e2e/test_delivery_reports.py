"""Issue 13 points 4 and 8 on the running stack: delivery reports reach every account that lists
the reported address, whatever message they name; every report of a batch is applied or ignored,
and none fails the webhook."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from devstack.stack import LocalStack
from tests.e2e.conftest import new_account, wait_until

REPORT = "Microsoft.Communication.EmailDeliveryReportReceived"
# Reports are made before they arrive: times an hour or more before the stack's (real) clock, as
# Azure writes them (seven fractional digits). A time ahead of the clock counts as made on arrival.
_BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


def _at(minutes: int, fraction: str = "") -> str:
    return (_BASE + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def _event(data: Any, event_type: str = REPORT) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "topic": "/subscriptions/x/resourceGroups/y/providers/acs", "subject": "s",
            "eventType": event_type, "eventTime": _at(0, ".1234567"), "dataVersion": "1.0", "data": data}


def _report(recipient: str, status: str, at: str, message_id: str | None = None) -> dict[str, Any]:
    return _event({"sender": "billing@contoso.example", "recipient": recipient, "status": status,
                   "messageId": message_id if message_id is not None else str(uuid.uuid4()),
                   "deliveryStatusDetails": {"statusMessage": "550 5.1.1 mailbox unavailable"},
                   "deliveryAttemptTimeStamp": at, "internetMessageId": "<x@y>"})


def _deliver(stack: LocalStack, events: list[dict[str, Any]]) -> None:
    r = requests.post(f"{stack.functions_url}/runtime/webhooks/eventgrid", params={"functionName":
                      "email_delivery_reports"}, headers={"aeg-event-type": "Notification"}, json=events, timeout=30)
    assert r.status_code == 200, r.text


def _unreachable(api: str, acc: str) -> list[str]:
    alerts = requests.get(f"{api}/accounts/{acc}", timeout=10).json()["alerts"]
    return [a["message"] for a in alerts if a["code"] == "contact_unreachable"]


def test_a_bounce_for_a_message_never_recorded_marks_the_address_on_every_account(api: str, stack: LocalStack) -> None:
    local = f"o'brien/ops#{uuid.uuid4().hex[:8]}?x\\y"  # characters Table keys forbid, and a quote
    first = new_account(api, contacts=(f"{local}@Contoso.example", "cfo@contoso.example"))
    second = new_account(api, contacts=(f"{local}@CONTOSO.EXAMPLE",))
    bystander = new_account(api, contacts=(f"{local.upper()}@contoso.example",))  # another mailbox
    _deliver(stack, [
        _report(f"{local}@contoso.example", "Bounced", _at(0, ".1234567"), "never/recorded?a#b"),
        _event({"status": "Bounced"}),  # no recipient: ignored with a log line
        _event("not an object"),
        _event({"anything": 1}, "Microsoft.Communication.SomethingElse"),
        _report("nobody-lists-this@contoso.example", "Bounced", _at(0)),
        _report(f"{local}@contoso.example", "Bounced", "the day before yesterday", "x/y"),
    ])
    assert len(_unreachable(api, first)) == 1 and local in _unreachable(api, first)[0]
    assert len(_unreachable(api, second)) == 1
    assert _unreachable(api, bystander) == []
    # A later delivery clears it everywhere; an older bounce arriving after it changes nothing.
    _deliver(stack, [_report(f"{local}@contoso.example", "Delivered", _at(60, ".0000001"), "m/1"),
                     _report(f"{local}@Contoso.example", "Suppressed", _at(30), "m/2")])
    assert _unreachable(api, first) == [] and _unreachable(api, second) == []
    kinds = [e["kind"] for e in requests.get(f"{api}/accounts/{first}/timeline", timeout=10).json()["entries"]]
    assert kinds.count("contact_unreachable") == 1 and kinds.count("contact_reachable") == 1


def test_a_contact_removed_from_an_account_is_no_longer_marked_there(api: str, stack: LocalStack) -> None:
    old = f"old-{uuid.uuid4().hex[:8]}@contoso.example"
    acc = new_account(api, contacts=(old,))
    body = {"displayName": "Contoso Ltd", "billingContacts": [f"new-{uuid.uuid4().hex[:8]}@contoso.example"],
            "subscriptions": [{"id": "s1", "name": "Service 1"}]}
    assert requests.put(f"{api}/accounts/{acc}", json=body, timeout=30).status_code == 200
    _deliver(stack, [_report(old, "Bounced", _at(0))])
    assert _unreachable(api, acc) == []
    _deliver(stack, [_report(body["billingContacts"][0], "Quarantined", _at(0))])  # type: ignore[index]
    assert len(_unreachable(api, acc)) == 1


def test_reports_in_the_cloudevents_schema_are_applied_too(api: str, stack: LocalStack) -> None:
    # An Event Grid subscription may deliver CloudEvents 1.0; the worker then passes a CloudEvent.
    address = f"ce-{uuid.uuid4().hex[:8]}@Contoso.example"
    acc = new_account(api, contacts=(address,))

    def cloud(data: Any, event_type: str = REPORT) -> dict[str, Any]:
        return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/subscriptions/x/providers/acs",
                "type": event_type, "time": _at(0, ".1234567"), "subject": "s", "data": data}

    bounce = _report(address.lower(), "Bounced", _at(0, ".1234567"))["data"]
    _deliver(stack, [cloud({"status": "Bounced"}), cloud("not an object"), cloud({"x": 1}, "Other.Type"),
                     cloud(bounce)])
    assert len(_unreachable(api, acc)) == 1
    delivered = _report(address, "Delivered", _at(60))["data"]
    _deliver(stack, [cloud(delivered)])
    assert _unreachable(api, acc) == []


def test_an_unreadable_event_in_a_batch_leaves_the_other_reports_applied(api: str, stack: LocalStack) -> None:
    # The host refused the whole batch (400) for one event whose eventTime could not be read, so
    # the bounces next to it were never applied.
    tag = uuid.uuid4().hex[:8]
    first, second = new_account(api, contacts=(f"a-{tag}@contoso.example",)), \
        new_account(api, contacts=(f"b-{tag}@contoso.example",))
    unreadable = {**_report(f"a-{tag}@contoso.example", "Delivered", _at(0)), "eventTime": "soon"}
    _deliver(stack, [_report(f"a-{tag}@contoso.example", "Bounced", "2026-12-01T09:00:00Z"), unreadable,
                     "not an event", _report(f"b-{tag}@contoso.example", "Bounced", "2026-12-01T09:00:00Z")])
    assert len(_unreachable(api, first)) == 1 and len(_unreachable(api, second)) == 1


def test_a_report_with_a_lone_surrogate_answers_200_and_is_applied_or_ignored(api: str, stack: LocalStack) -> None:
    # Issue 24 point 4: a `\ud800` escape in `data.recipient` (the index query) and another in the
    # status message (the timeline write) answered 500, and Event Grid would redeliver for a day.
    tag = uuid.uuid4().hex[:8]
    acc = new_account(api, contacts=(f"s-{tag}@contoso.example",))
    odd_recipient = _report(f"s-{tag}\ud800@contoso.example", "Bounced", _at(0))
    odd_message = _report(f"s-{tag}@contoso.example", "Bounced", _at(0))
    odd_message["data"]["deliveryStatusDetails"]["statusMessage"] = "550 5.1.1 \ud800 unknown"
    body = json.dumps([odd_recipient, odd_message])
    assert body.count("\\ud800") == 2  # JSON text with the escape, as a sender would write it
    r = requests.post(f"{stack.functions_url}/runtime/webhooks/eventgrid", params={"functionName":
                      "email_delivery_reports"}, headers={"aeg-event-type": "Notification",
                      "Content-Type": "application/json"}, data=body.encode(), timeout=30)
    assert r.status_code == 200, r.text
    # The address no billing contact can be: ignored, with a log line naming its message.
    ignored = f"for message {odd_recipient['data']['messageId']}: no account lists the address, ignored"
    wait_until(lambda: ignored in (stack.log_dir / "functions.log").read_text(errors="replace"),
               "the ignored report logged")
    # The contact's report: applied, its status message kept with U+FFFD for the lone surrogate.
    assert len(_unreachable(api, acc)) == 1
    entries = requests.get(f"{api}/accounts/{acc}/timeline", timeout=10).json()["entries"]
    assert [e["detail"] for e in entries if e["kind"] == "contact_unreachable"] == [
        f"mail to s-{tag}@contoso.example was not delivered: Bounced (550 5.1.1 \ufffd unknown)"]
