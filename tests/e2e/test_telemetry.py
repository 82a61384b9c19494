"""Telemetry end to end (contract §6, issue 22): an OTLP/HTTP receiver started by the test, and a
local stack of this module's own that exports to it (`OTEL_EXPORTER_OTLP_ENDPOINT`)."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from devstack.otlp_receiver import fetch_trace, start_in_thread
from devstack.stack import LocalStack, StackPorts
from shared.inbound.card_data import find_card_numbers, mask_card_numbers
from tests.e2e.card_scan import _where
from tests.e2e.conftest import new_account, wait_until

CARD = "4111 1111 1111 1111"
SECRET = "sk_live_abcdefghij"
KEPT = "congo=t61rcWkgMzE"
DIRTY_TRACESTATE = f"vendor=5555555555554444,x={SECRET},{KEPT}"  # issue 22's repro, and a member to keep


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server, url = start_in_thread()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, receiver: str) -> Iterator[LocalStack]:
    logs: Path = tmp_path_factory.mktemp("telemetry-stack-logs")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver, "OTEL_BSP_SCHEDULE_DELAY": "100",
           "OTEL_BLRP_SCHEDULE_DELAY": "100", "OTEL_METRIC_EXPORT_INTERVAL": "500"}
    with LocalStack(StackPorts.free(), log_dir=logs, extra_env=env) as s:
        yield s


@pytest.fixture(scope="module")
def api(stack: LocalStack) -> str:
    return f"{stack.functions_url}/api"


@pytest.fixture(scope="module")
def send_event(stack: LocalStack) -> Callable[..., str]:
    queue = QueueClient.from_connection_string(stack.connection_string, "payment-events")

    def send(type_: str, data: dict[str, Any], *, event_id: str | None = None, traceparent: str | None = None,
             tracestate: str | None = None, raw: str | None = None) -> str:
        event_id = event_id or f"evt-{uuid.uuid4().hex}"
        event: dict[str, Any] = {"specversion": "1.0", "id": event_id, "type": type_, "source": "/tests",
                                 "time": "2026-12-01T09:00:00Z", "data": data}
        if traceparent is not None:
            event["traceparent"] = traceparent
        if tracestate is not None:
            event["tracestate"] = tracestate
        queue.send_message(raw if raw is not None else json.dumps(event))
        return event_id

    return send


def new_traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def all_spans(tree: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    stack = list(tree["roots"])
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node.get("children", []))
    return out


def emails_to(stack: LocalStack, account_hint: str) -> list[dict[str, Any]]:
    messages = requests.get(f"{stack.email_url}/messages", timeout=10).json()
    return [m for m in messages if account_hint in json.dumps(m)]


def _texts(node: Any, key: str = "") -> Iterator[Any]:
    """Every string and number in an exported item, but the receiver's own timestamps."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from _texts(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _texts(v, key)
    elif isinstance(node, str | int) and not key.endswith("UnixNano"):
        yield node


def metric(receiver: str, name: str, **attributes: str) -> float:
    r = requests.get(f"{receiver}/metrics/{name}", params=attributes, timeout=10)
    if r.status_code == 404:
        return 0
    r.raise_for_status()
    return float(r.json()["value"])


def test_one_trace_from_the_event_to_its_emails_and_lifecycle_event(stack: LocalStack, api: str, receiver: str,
                                                                    send_event: Callable[..., str]) -> None:
    acc = new_account(api, contacts=("billing@contoso.example", "cfo@contoso.example"))
    traceparent, trace_id, parent_span = new_traceparent()
    event_id = send_event("billing.charge.failed", {"accountId": acc, "subscriptionId": "s1", "chargeId": "c1",
                                                    "amount": "12.34", "currency": "USD",
                                                    "reason": "card_declined"}, traceparent=traceparent)
    wait_until(lambda: requests.get(f"{api}/accounts/{acc}", timeout=10).json()["subscriptions"][0]["state"]
               == "past_due", "past due")
    wait_until(lambda: len([m for m in requests.get(f"{stack.email_url}/messages", timeout=10).json()
                            if acc in json.dumps(m)]) >= 2, "the two emails")

    def complete() -> dict[str, Any] | None:
        tree = fetch_trace(receiver, trace_id, min_spans=4, settle=0.5, timeout=5)
        if tree is None:
            return None
        names = [s["name"] for s in all_spans(tree)]
        return tree if names.count("email_outbox") >= 2 and "send subscription-lifecycle" in names else None

    tree = wait_until(complete, "the trace with both emails and the lifecycle event", timeout=40)
    spans = all_spans(tree)
    consumer = next(s for s in spans if s["name"] == "payment_events")
    assert consumer["parentSpanId"] == parent_span and consumer["kind"] == "CONSUMER"
    attrs = consumer["attributes"]
    assert attrs["cloudevents.event_id"] == event_id
    assert attrs["cloudevents.event_type"] == "billing.charge.failed"
    assert attrs["billing.account_id"] == acc
    assert attrs["messaging.destination.name"] == "payment-events"
    assert attrs["messaging.system"] and attrs["messaging.operation"] == "process"
    senders = [s for s in spans if s["name"] == "email_outbox"]
    assert len(senders) == 2 and all(s["attributes"]["billing.account_id"] == acc for s in senders)
    lifecycle_send = next(s for s in spans if s["name"] == "send subscription-lifecycle")
    assert lifecycle_send["kind"] == "PRODUCER"
    assert lifecycle_send["attributes"]["cloudevents.event_type"] == "subscription.past_due"
    # Storage calls through azure-core's plugin are spans of the same trace.
    assert any(s["kind"] == "CLIENT" for s in spans), [s["name"] for s in spans]

    queue = QueueClient.from_connection_string(stack.connection_string, "subscription-lifecycle")
    events = [json.loads(m.content) for m in queue.peek_messages(max_messages=32)]
    mine = [e for e in events if e["data"]["accountId"] == acc]
    assert mine and all(e["traceparent"].split("-")[1] == trace_id for e in mine)
    assert mine[0]["traceparent"].split("-")[2] == lifecycle_send["spanId"]


def test_a_malformed_traceparent_is_ignored(api: str, send_event: Callable[..., str]) -> None:
    acc = new_account(api)
    send_event("billing.charge.failed", {"accountId": acc, "subscriptionId": "s1", "chargeId": "c1",
                                         "amount": "1.00", "currency": "USD", "reason": "card_declined"},
               traceparent="00-not-a-trace-01")
    wait_until(lambda: requests.get(f"{api}/accounts/{acc}", timeout=10).json()["subscriptions"][0]["state"]
               == "past_due", "the event applied despite its traceparent")


def test_a_card_update_trace_reaches_the_gateway(stack: LocalStack, api: str, receiver: str,
                                                 send_event: Callable[..., str]) -> None:
    acc = new_account(api, token=None)
    send_event("billing.charge.failed", {"accountId": acc, "subscriptionId": "s1", "chargeId": "c1",
                                         "amount": "20.00", "currency": "USD", "reason": "card_declined"})
    wait_until(lambda: requests.get(f"{api}/accounts/{acc}", timeout=10).json()["balance"] == {"USD": "20.00"},
               "the balance")
    requests.delete(f"{stack.gateway_url}/requests", timeout=10)
    r = requests.put(f"{api}/accounts/{acc}/payment-method", json={"token": "tok_visa"}, timeout=60)
    assert r.status_code == 200, r.text
    seen = requests.get(f"{stack.gateway_url}/requests", timeout=10).json()
    charges = [s for s in seen if s["route"] == "POST /v1/charges"]
    assert charges and all(s["traceparent"] for s in seen), seen
    _, trace_id, client_span, _ = charges[-1]["traceparent"].split("-")
    assert len({s["traceparent"].split("-")[1] for s in seen}) == 1  # the card save and the charge: one trace

    def has_client() -> dict[str, Any] | None:
        tree = fetch_trace(receiver, trace_id, min_spans=3, settle=0.5, timeout=5)
        return tree if tree and any(s["spanId"] == client_span for s in all_spans(tree)) else None

    tree = wait_until(has_client, "the gateway call's span", timeout=30)
    spans = all_spans(tree)
    root = tree["roots"][0]
    assert root["name"] == "PUT /api/accounts/{accountId}/payment-method" and root["kind"] == "SERVER"
    assert root["attributes"]["http.response.status_code"] == 200
    assert root["attributes"]["billing.account_id"] == acc if "billing.account_id" in root["attributes"] else True
    client = next(s for s in spans if s["spanId"] == client_span)
    assert client["kind"] == "CLIENT" and client["attributes"]["http.request.method"] == "POST"
    assert client["attributes"]["http.response.status_code"] == 200


def test_the_metrics_of_the_contract(stack: LocalStack, api: str, receiver: str,
                                     send_event: Callable[..., str]) -> None:
    def snapshot() -> dict[str, float]:
        return {
            "applied": metric(receiver, "billing.events", type="billing.charge.failed", outcome="applied"),
            "duplicate": metric(receiver, "billing.events", type="billing.charge.failed", outcome="duplicate"),
            "dead_lettered": metric(receiver, "billing.events", type="unknown", outcome="dead_lettered"),
            "deadletters": metric(receiver, "billing.deadletters", source="payment-events"),
            "failed_sent": metric(receiver, "billing.emails", kind="payment_failed", outcome="sent")
            + metric(receiver, "billing.emails", kind="payment_failed", outcome="skipped"),  # paid before it left
            "settled_sent": metric(receiver, "billing.emails", kind="payment_settled", outcome="sent"),
            "succeeded": metric(receiver, "billing.charges", outcome="succeeded", decline_code=""),
            "declined": metric(receiver, "billing.charges", outcome="declined"),
            "recovered": metric(receiver, "billing.recovered", currency="USD"),
            "to_past_due": metric(receiver, "billing.transitions", **{"from": "active", "to": "past_due"}),
            "to_active": metric(receiver, "billing.transitions", **{"from": "past_due", "to": "active"}),
        }

    wait_until(lambda: requests.get(f"{receiver}/metrics", timeout=10).json(), "any metric", timeout=30)
    wait_until(lambda: _outbox_idle(stack), "the emails of earlier tests sent", timeout=30)
    before = _settled(snapshot)  # their counts exported too
    acc = new_account(api, token=None)
    declining = new_account(api, token=None)
    for who, amount in ((acc, "12.34"), (declining, "5.00")):
        data = {"accountId": who, "subscriptionId": "s1", "chargeId": "c1", "amount": amount, "currency": "USD",
                "reason": "card_declined"}
        event_id = send_event("billing.charge.failed", data)
    wait_until(lambda: requests.get(f"{api}/accounts/{declining}", timeout=10).json()["subscriptions"][0]["state"]
               == "past_due", "past due")
    send_event("billing.charge.failed", data, event_id=event_id)  # a redelivery of the last one: a duplicate
    send_event("", {}, raw=f"not an event, card {CARD}")  # dead-lettered; its card number masked everywhere
    for who in (acc, declining):
        wait_until(lambda who=who: requests.get(f"{api}/accounts/{who}", timeout=10).json()["subscriptions"][0]
                   ["state"] == "past_due", "past due")
    assert requests.put(f"{api}/accounts/{acc}/payment-method", json={"token": "tok_visa"},
                        timeout=60).status_code == 200
    assert requests.put(f"{api}/accounts/{declining}/payment-method", json={"token": "tok_chargeDeclined"},
                        timeout=60).status_code == 402
    expected = {"applied": 2, "duplicate": 1, "dead_lettered": 1, "deadletters": 1, "failed_sent": 2,
                "settled_sent": 1, "succeeded": 1, "declined": 1, "recovered": 1234, "to_past_due": 2,
                "to_active": 1}

    def arrived() -> bool:
        now = snapshot()
        return all(now[k] - before[k] >= v for k, v in expected.items())

    with contextlib.suppress(AssertionError):
        wait_until(arrived, "the metrics of the scenario", timeout=40)
    now = snapshot()
    assert {k: now[k] - before[k] for k in expected} == expected
    declined = requests.get(f"{receiver}/metrics/billing.charges", params={"outcome": "declined"}, timeout=10).json()
    assert all(p["attributes"].get("decline_code") for p in declined["dataPoints"]), declined


def _outbox_idle(stack: LocalStack) -> bool:
    """No email waiting or in flight (the outbox queue's count includes invisible messages)."""
    queue = QueueClient.from_connection_string(stack.connection_string, "email-outbox")
    return queue.get_queue_properties().approximate_message_count == 0


def _settled(read: Callable[[], dict[str, float]]) -> dict[str, float]:
    """Counters as they stand once the last export is in: an email sent just before is counted up
    to one export interval (1 s on the stack) after it left the queue, so read until two reads
    1.5 s apart agree."""
    last = read()
    for _ in range(10):
        time.sleep(1.5)
        now = read()
        if now == last:
            return now
        last = now
    raise AssertionError(f"the counters kept moving: {last}")


def test_a_throttled_email_is_counted_as_throttled_then_sent_in_its_trace(
        stack: LocalStack, api: str, receiver: str, send_event: Callable[..., str]) -> None:
    """The email endpoint answers the next two sends 429 (`POST /faults`, as ACS beyond its quota):
    `billing.emails` says `throttled` twice for that kind, then `sent` once per email, never
    `failed`; the retries stay in the event's trace."""
    def emails(outcome: str, kind: str | None = "payment_failed") -> float:
        return metric(receiver, "billing.emails", outcome=outcome, **({"kind": kind} if kind else {}))

    wait_until(lambda: _outbox_idle(stack), "no other email on its way (a fault would go to it)", timeout=30)
    before = _settled(lambda: {o: emails(o) for o in ("throttled", "sent", "failed")}
                      | {"any_throttled": emails("throttled", None)})
    faults = f"{stack.email_url}/faults"
    r = requests.post(faults, json={"status": 429, "count": 2, "retryAfter": 1}, timeout=10)
    assert r.status_code in (200, 201), r.text
    try:
        acc = new_account(api, token=None, contacts=("ap@throttle.example", "cfo@throttle.example"))
        traceparent, trace_id, _ = new_traceparent()
        send_event("billing.charge.failed", {"accountId": acc, "subscriptionId": "s1", "chargeId": "c1",
                                             "amount": "7.00", "currency": "USD", "reason": "card_declined"},
                   traceparent=traceparent)
        wait_until(lambda: len(emails_to(stack, acc)) >= 2, "both emails, after the 429s", timeout=40)
        assert requests.get(faults, timeout=10).json()["faults"] == []  # both 429s were answered
    finally:
        requests.delete(faults, timeout=10)
    wait_until(lambda: emails("sent") - before["sent"] >= 2 and emails("throttled") - before["throttled"] >= 2,
               "the throttled and sent counts", timeout=20)
    assert emails("throttled") - before["throttled"] == 2
    assert emails("throttled", None) - before["any_throttled"] == 2  # under no other kind
    assert emails("sent") - before["sent"] == 2 and emails("failed") == before["failed"]
    points = requests.get(f"{receiver}/metrics/billing.emails", params={"outcome": "throttled"}, timeout=10).json()
    assert points["type"] == "sum" and points["monotonic"]
    assert all(set(p["attributes"]) == {"kind", "outcome"} for p in points["dataPoints"]), points
    assert all(m["submissions"] == 1 for m in emails_to(stack, acc))  # each accepted once, never resent

    def four_sends() -> dict[str, Any] | None:  # two refused, two accepted, all in the event's trace
        tree = fetch_trace(receiver, trace_id, min_spans=4, settle=0.5, timeout=5)
        return tree if tree and [s["name"] for s in all_spans(tree)].count("email_outbox") >= 4 else None

    tree = wait_until(four_sends, "the four email_outbox runs in the event's trace", timeout=20)
    assert [s["name"] for s in all_spans(tree)].count("email_outbox") == 4


def test_sweep_lag_and_a_sweep_step_trace(stack: LocalStack, api: str, receiver: str,
                                          send_event: Callable[..., str]) -> None:
    acc = new_account(api, token=None)
    send_event("billing.charge.failed", {"accountId": acc, "subscriptionId": "s1", "chargeId": "c1",
                                         "amount": "3.00", "currency": "USD", "reason": "card_declined"})
    wait_until(lambda: requests.get(f"{api}/accounts/{acc}", timeout=10).json()["subscriptions"][0]["state"]
               == "past_due", "past due")
    before = requests.get(f"{receiver}/metrics/billing.sweep.lag", timeout=10)
    count = float(before.json()["value"]) if before.status_code == 200 else 0
    now = datetime.fromisoformat(requests.get(f"{api}/testing/clock", timeout=10).json()["now"])
    later = (now + timedelta(days=2)).isoformat()
    requests.put(f"{api}/testing/clock", json={"now": later}, timeout=10).raise_for_status()
    try:
        requests.post(f"{stack.functions_url}/admin/functions/dunning_sweep", json={"input": ""},
                      timeout=10).raise_for_status()
        wait_until(lambda: metric(receiver, "billing.sweep.lag") > count, "a sweep step's lag", timeout=40)
        traces = requests.get(f"{receiver}/traces", params={"limit": 200}, timeout=10).json()["traces"]
        steps = [t for t in traces if t["rootName"] == "sweep_work"]
        assert steps, "each sweep step starts a trace of its own"
        assert all(s["attributes"].get("billing.account_id") for t in steps for s in t["spans"]
                   if s["name"] == "sweep_work")
        root = next(s for s in steps[0]["spans"] if s["name"] == "sweep_work")
        assert root["parentSpanId"] in (None, "") and root["links"], root
    finally:
        requests.delete(f"{api}/testing/clock", timeout=10)


def _leaks(text: str) -> bool:
    """What the card scan finds, or issue 22's secret."""
    return _where(text) or SECRET in text


def _outbox_texts(stack: LocalStack, account_id: str) -> list[str]:
    table = TableClient.from_connection_string(stack.connection_string, "billing")
    rows = table.query_entities("PartitionKey eq @pk and RowKey ge 'outbox|' and RowKey lt 'outbox}'",
                                parameters={"pk": account_id})
    return [json.dumps(dict(r), default=str, ensure_ascii=False) for r in rows]


def test_a_card_number_or_secret_in_tracestate_is_dropped_and_the_trace_continues(
        stack: LocalStack, api: str, receiver: str, send_event: Callable[..., str]) -> None:
    """Issue 22: a `tracestate` member holding a card number or a secret is dropped where trace
    context enters (a queue event's extension, an HTTP header); the rest of it and the trace go on,
    and no span, lifecycle event, outbox row, hand-off or gateway request holds the raw value."""
    wait_until(lambda: _outbox_idle(stack), "no other email on its way (a fault would go to it)", timeout=30)
    faults = f"{stack.email_url}/faults"  # hold emails back (any other still on its way too) until the row is read
    requests.post(faults, json={"status": 429, "count": 1000, "retryAfter": 1}, timeout=10).raise_for_status()
    outbox: list[str] = []
    try:
        acc = new_account(api, token=None, contacts=("ap@tracestate.example",))
        traceparent, trace_id, parent_span = new_traceparent()
        send_event("billing.charge.failed", {"accountId": acc, "subscriptionId": "s1", "chargeId": "c1",
                                             "amount": "9.00", "currency": "USD", "reason": "card_declined"},
                   traceparent=traceparent, tracestate=DIRTY_TRACESTATE)

        def held_back() -> bool:
            outbox.extend(_outbox_texts(stack, acc))
            return any('"email"' in row for row in outbox)

        wait_until(held_back, "the email's outbox row", timeout=20)
    finally:
        requests.delete(faults, timeout=10)
    wait_until(lambda: emails_to(stack, acc), "the email, once let through", timeout=20)
    assert outbox and not any(_leaks(row) for row in outbox), [mask_card_numbers(row) for row in outbox]
    assert any(traceparent.split("-")[1] in row for row in outbox)  # the row carries the event's trace

    def traced() -> dict[str, Any] | None:
        tree = fetch_trace(receiver, trace_id, min_spans=3, settle=0.5, timeout=5)
        names = [s["name"] for s in all_spans(tree)] if tree else []
        return tree if "email_outbox" in names and "send subscription-lifecycle" in names else None

    spans = all_spans(wait_until(traced, "the event's trace", timeout=20))
    consumer = next(s for s in spans if s["name"] == "payment_events")
    assert consumer["parentSpanId"] == parent_span and consumer["traceState"] == KEPT  # the trace continues
    assert all(s["traceState"] in (None, KEPT) for s in spans), {s["name"]: s["traceState"] for s in spans}
    assert not _leaks(json.dumps(list(_texts(spans))))  # not the receiver's clocks
    lifecycle = QueueClient.from_connection_string(stack.connection_string, "subscription-lifecycle")
    mine = [m.content for m in lifecycle.peek_messages(max_messages=32) if acc in m.content]
    assert mine and not any(_leaks(m) for m in mine), [mask_card_numbers(m) for m in mine]
    assert all(json.loads(m)["traceparent"].split("-")[1] == trace_id and json.loads(m).get("tracestate") == KEPT
               for m in mine)

    # An HTTP request's header: read, and a card update whose charge reaches the gateway.
    requests.delete(f"{stack.gateway_url}/requests", timeout=10)
    for method, path, body in (("GET", "", None), ("PUT", "/payment-method", {"token": "tok_visa"})):
        header, http_trace, http_parent = new_traceparent()
        r = requests.request(method, f"{api}/accounts/{acc}{path}", json=body, timeout=60,
                             headers={"traceparent": header, "tracestate": f"vendor=4111111111111111,{KEPT}"})
        assert r.status_code == 200, r.text
        tree = wait_until(lambda t=http_trace: fetch_trace(receiver, t, min_spans=1, settle=0.5, timeout=5),
                          f"the trace of {method} {path}", timeout=20)
        root = next(s for s in all_spans(tree) if s["kind"] == "SERVER")
        assert root["parentSpanId"] == http_parent and root["traceState"] == KEPT
        assert not _leaks(json.dumps(list(_texts(all_spans(tree)))))
    seen = [s for s in requests.get(f"{stack.gateway_url}/requests", timeout=10).json()
            if s["traceparent"] and s["traceparent"].split("-")[1] == http_trace]
    assert seen and all(s["tracestate"] == KEPT for s in seen), seen
    _assert_no_export_leaks(receiver)


def test_no_card_number_secret_or_billing_link_in_any_export(receiver: str, stack: LocalStack) -> None:
    requests.get(f"{stack.functions_url}/api/billing/acc-none?expires=1&v=1&sig=c2VjcmV0&note=4111111111111111",
                 timeout=10)
    wait_until(lambda: any(t["rootName"].startswith("GET /api/billing")
                           for t in requests.get(f"{receiver}/traces", params={"limit": 1000},
                                                 timeout=10).json()["traces"]),
               "the billing page visit's trace")
    _assert_no_export_leaks(receiver)


def _assert_no_export_leaks(receiver: str) -> None:
    """The card scan (and issue 22's secret) over every exported span, log record and metric."""
    exported = {
        "traces": requests.get(f"{receiver}/traces", params={"limit": 100000}, timeout=30).json()["traces"],
        "logs": requests.get(f"{receiver}/logs", timeout=30).json()["logs"],
        "metrics": requests.get(f"{receiver}/metrics", timeout=30).json()["metrics"],
    }
    assert exported["logs"], "logs go through the same pipeline"
    assert any(r.get("traceId") and r.get("spanId") for r in exported["logs"]), "logs carry trace and span ids"
    for kind, items in exported.items():
        for item in items if isinstance(items, list) else [items]:
            text = json.dumps(list(_texts(item)), ensure_ascii=False)  # what the app sent, not the receiver's clocks
            found = [mask_card_numbers(text[max(0, c.start - 80):c.end + 40]) for c in find_card_numbers(text)]
            assert not _where(text), f"a card number in an exported {kind}: {found or text[:300]}"
            assert SECRET not in text, f"a secret in an exported {kind}: {text[:300]}"
            assert not re.search(r"sig=(?!<redacted>)", text), f"a billing link in an exported {kind}: {text[:300]}"
            assert "c2VjcmV0" not in text
