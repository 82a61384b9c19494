"""The scripted story the README's first command plays on the running local stack:
an account registers, a charge fails, the account shows the subscription past due with its
alert, a payment arrives, the subscription is active again. Everything goes through the public
surface: the HTTP API, the `payment-events` queue, and what comes out."""

from __future__ import annotations

import html
import json
import re
import secrets
import time
import uuid
from typing import TYPE_CHECKING, Any

import requests
from azure.storage.queue import QueueClient

if TYPE_CHECKING:
    from devstack.stack import LocalStack

ACCOUNT = "acc-contoso"
SUB = "sub-web"


class Story:
    def __init__(self, stack: LocalStack) -> None:
        self.api = f"{stack.functions_url}/api"
        self.stack = stack
        self.queue = QueueClient.from_connection_string(stack.connection_string, "payment-events")
        self.seen = 0

    def say(self, text: str) -> None:
        print(f"\n== {text}", flush=True)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        r = requests.request(method, f"{self.api}{path}", json=body, timeout=30)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path} answered {r.status_code}: {r.text}")
        return r.json()

    def send_event(self, type_: str, data: dict[str, Any], traceparent: str | None = None) -> None:
        event = {"specversion": "1.0", "id": str(uuid.uuid4()), "type": type_, "source": "/billing-engine",
                 "time": "2026-12-01T09:00:00Z", "data": data, **({"traceparent": traceparent} if traceparent else {})}
        self.queue.send_message(json.dumps(event))
        print(f"   queued {type_} {json.dumps(data)}")

    def wait_for(self, predicate: Any, what: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            view: dict[str, Any] = self.call("GET", f"/accounts/{ACCOUNT}")
            if predicate(view):
                return view
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}")

    def timeline(self) -> None:
        entries: list[dict[str, Any]] = []
        page: dict[str, Any] = {"continuation": ""}
        while page["continuation"] is not None:  # the timeline answers a page at a time
            after = f"&continuation={page['continuation']}" if page["continuation"] else ""
            page = self.call("GET", f"/accounts/{ACCOUNT}/timeline?limit=500{after}")
            entries += page["entries"]
        for e in entries[self.seen:]:
            sub = f" [{e['subscriptionId']}]" if e.get("subscriptionId") else ""
            print(f"   timeline {e['at']} {e['kind']}{sub}: {e['detail']}")
        self.seen = len(entries)

    def emails(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        """Wait until the local email endpoint holds `count` messages, oldest first."""
        deadline = time.monotonic() + timeout
        while len(messages := requests.get(f"{self.stack.email_url}/messages", timeout=10).json()) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"expected {count} emails at {self.stack.email_url}, found {len(messages)}")
            time.sleep(0.2)
        return list(messages)

    def show(self, view: dict[str, Any]) -> None:
        for s in view["subscriptions"]:
            print(f"   subscription {s['id']} ({s['name']}): {s['state']}, outstanding {s['outstanding'] or '{}'}"
                  + (f", disable at {s['disableAt']}" if s["disableAt"] else ""))
        print(f"   balance {view['balance'] or '{}'}, credit {view['credit'] or '{}'}")
        for a in view["alerts"]:
            print(f"   alert {a['code']} ({a['severity']}): {a['message']}")
        if not view["alerts"]:
            print("   no alerts")


def play(stack: LocalStack) -> int:
    s = Story(stack)
    s.say("the test clock is set to 2026-12-01 09:00 UTC")
    s.call("PUT", "/testing/clock", {"now": "2026-12-01T09:00:00Z"})

    s.say(f"account {ACCOUNT} registers with one subscription")
    view = s.call("PUT", f"/accounts/{ACCOUNT}", {
        "displayName": "Contoso Ltd", "locale": "en",
        "billingContacts": ["billing@contoso.example", "cfo@contoso.example"],
        "paymentMethod": {"type": "card", "token": "tok_visa"},
        "subscriptions": [{"id": SUB, "name": "Contoso web front end"}],
    })
    pm = view["paymentMethod"]
    print(f"   registered; card {pm['brand']} ending {pm['last4']}")
    s.show(view)
    s.timeline()

    s.say("the billing engine reports a failed charge")
    trace_id = secrets.token_hex(16)  # the billing engine's trace: the product continues it (contract §6)
    s.send_event("billing.charge.failed", {"accountId": ACCOUNT, "subscriptionId": SUB, "chargeId": "ch-1001",
                                           "amount": "42.00", "currency": "USD", "reason": "card_declined"},
                 traceparent=f"00-{trace_id}-{secrets.token_hex(8)}-01")
    view = s.wait_for(lambda v: v["subscriptions"][0]["state"] == "past_due", "the subscription to be past due")
    s.show(view)
    s.timeline()
    s.say("the billing contacts are told, in the account's language")
    mails = s.emails(2)
    for m in mails:
        print(f"   email to {', '.join(r['address'] for r in m['to'])}: {m['subject']}")
    link = re.search(r'href="([^"]*/api/billing/[^"]+)"', mails[0]["html"])
    if link:
        print(f"   each email links to the hosted billing page: {html.unescape(link.group(1))}")
    s.timeline()

    s.say("a wire transfer arrives for that charge")
    s.send_event("billing.payment.received", {"accountId": ACCOUNT, "paymentId": "pay-2001", "amount": "42.00",
                                              "currency": "USD", "method": "wire", "chargeIds": ["ch-1001"]})
    view = s.wait_for(lambda v: v["subscriptions"][0]["state"] == "active", "the subscription to be active")
    s.show(view)
    s.timeline()

    s.say("what went out")
    lifecycle = QueueClient.from_connection_string(stack.connection_string, "subscription-lifecycle")
    for m in lifecycle.peek_messages(max_messages=32):
        event = json.loads(m.content)
        print(f"   lifecycle event {event['type']} for {event['data']['subscriptionId']} (id {event['id']})")
    for m in s.emails(4)[2:]:  # the receipts, after the two failure notices
        print(f"   email to {', '.join(r['address'] for r in m['to'])}: {m['subject']}")
    s.timeline()
    print(f"   (read them at {stack.email_url}/ )")
    if stack.otlp:
        show_trace(stack, trace_id)
    print(f"\nthe story is over: {ACCOUNT} was past due and is active again.")
    return 0


def show_trace(stack: LocalStack, trace_id: str) -> None:
    """The failed payment's trace, as the local OTLP receiver holds it: the invocations, the
    storage commits, the emails and the lifecycle event, as a tree."""
    from devstack.otlp_receiver import fetch_trace, render_tree

    print(f"\n== the failed payment's trace {trace_id} (from the OTLP receiver, {stack.otlp_url}/?trace={trace_id})")
    tree = fetch_trace(stack.otlp_url, trace_id, min_spans=5, settle=1.5, timeout=30)
    if tree is None:
        print("   no span of it arrived at the receiver")
        return
    for line in render_tree(tree).splitlines():
        print(f"   {line}")
