"""The soak's checker: the product's observable outcome against the model, difference by difference.

Inputs are what anyone outside the product can see: the account views (`GET /api/accounts/{id}`),
the sandbox gateway's charges (`GET /charges`) or, with the Stripe gateway, the Stripe sandbox's
PaymentIntents (`GET /payment_intents`, Stripe's objects), the email endpoint's messages
(`GET /messages`), every message of `subscription-lifecycle`, the dead-letter list. Expectations
come from `bench.soak.model`. Nothing here imports `shared/`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from bench.soak.model import Expected, card_charge, expect
from bench.soak.plan import DECIMALS, Plan, money_text
from bench.soak.run import Observed

SWEEP_KINDS = ("payment_reminder", "disable_warning", "service_disabled", "service_canceled",
               "deletion_warning", "data_deleted")
KNOWN_KINDS = ("payment_failed", "payment_settled", *SWEEP_KINDS)


@dataclass
class Report:
    differences: list[str] = field(default_factory=list)
    figures: Counter[str] = field(default_factory=Counter)

    def diff(self, text: str) -> None:
        self.differences.append(text)


def minor(text: str, currency: str) -> int:
    """A decimal string of the contract (`"12.34"`) in minor units, read independently."""
    return int(Decimal(text).scaleb(DECIMALS[currency]))


def amounts(obj: Any) -> dict[str, int]:
    """`{"USD": "42.00"}` (or a list of {amount, currency}) as minor units, zeros left out."""
    if not obj:
        return {}
    if isinstance(obj, list):
        obj = {m["currency"]: m["amount"] for m in obj}
    return {c: v for c, a in obj.items() if (v := minor(a, c))}


def when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def check(plan: Plan, seen: Observed) -> Report:
    report = Report()
    charges = stripe_charges(seen.charges, report) if seen.gateway == "stripe" else seen.charges
    charged = _gateway(charges, report)
    emails = _emails(seen.emails, report)
    lifecycle = _lifecycle(seen.lifecycle, report)
    for account in plan.accounts:
        exp = expect(account, seen.gateway)
        view = seen.views.get(account.account_id, {"status": None})
        if view.get("status") != 200:
            report.diff(f"{account.account_id}: GET answered {view.get('status')}")
            continue
        owing = _money(exp, view, charged.get(account.account_id, {}), report)
        _subscriptions(exp, account.subscriptions, view, owing, report)
        _account_emails(exp, account.contacts, owing, emails.pop(account.account_id, {}), report)
        _account_lifecycle(exp, account.subscriptions, owing, lifecycle, report)
    for account_id in emails:
        report.diff(f"emails for an account the soak never made: {account_id}")
    _deadletters(plan, seen, report)
    return report


STRIPE_EXPONENT = {"USD": 2, "JPY": 0, "KWD": 3}
"""Decimals of Stripe's integer amounts (https://docs.stripe.com/currencies): JPY is zero-decimal,
KWD three-decimal; for the soak's currencies the same as ISO 4217's, read independently here."""


def stripe_charges(intents: list[dict[str, Any]], report: Report) -> list[dict[str, Any]]:
    """Stripe's PaymentIntents as the charges the checker reads (the sandbox gateway's shape): the
    idempotency key the product puts in `metadata[idempotencyKey]`, the account of
    `metadata[accountId]`, `succeeded` or not, the amount as the contract's decimal string."""
    rows = []
    for pi in intents:
        meta = pi.get("metadata") or {}
        cur = str(pi["currency"]).upper()
        if not meta.get("accountId") or not meta.get("idempotencyKey"):
            report.diff(f"stripe: PaymentIntent {pi['id']} lacks metadata[accountId] or metadata[idempotencyKey]")
            continue
        if cur not in STRIPE_EXPONENT:
            report.diff(f"stripe: PaymentIntent {pi['id']} in {cur}, which the soak never bills")
            continue
        units = int(pi["amount"]) * 10 ** (DECIMALS[cur] - STRIPE_EXPONENT[cur])
        status = str(pi["status"])
        if status != "succeeded" and pi.get("last_payment_error"):
            status = "declined"
        rows.append({"idempotencyKey": meta["idempotencyKey"], "accountId": meta["accountId"], "currency": cur,
                     "amount": money_text(units, cur), "status": status})
    return rows


def _gateway(charges: list[dict[str, Any]], report: Report) -> dict[str, dict[str, int]]:
    keys = Counter(c["idempotencyKey"] for c in charges)
    for key, n in keys.items():
        if n > 1:
            report.diff(f"gateway: idempotency key {key} charged {n} times")
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for c in charges:
        report.figures[f"gateway charges {c['status']}"] += 1
        if c["status"] == "succeeded":
            acc = out[c["accountId"]]
            acc[c["currency"]] = acc.get(c["currency"], 0) + minor(c["amount"], c["currency"])
    return out


def _money(exp: Expected, view: dict[str, Any], charged: dict[str, int], report: Report) -> dict[str, bool]:
    """Balance, credit and card sums per currency; returns each subscription's owing as the model
    fixes it or, where the contract leaves the choice to the product, as the product chose."""
    a = exp.account_id
    balance, credit = amounts(view.get("balance")), amounts(view.get("credit"))
    for c in sorted(set(exp.net) | set(balance) | set(credit) | set(charged)):
        net, b, cr, g = exp.net.get(c, 0), balance.get(c, 0), credit.get(c, 0), charged.get(c, 0)
        if exp.card_settles and exp.exact_credit:  # one card charge per currency: what it took beyond is credit
            took = card_charge(max(0, net), c, exp.gateway)
            want = (0, max(0, -net) + took - max(0, net), took)
        elif exp.card_settles:
            want = (0, cr, cr + net)
        else:  # credit meets debt in any order: never credit beside debt
            want = (0 if net <= 0 else net, max(0, -net), 0)
        if (b, cr, g) != want:
            report.diff(f"{a} {c}: balance/credit/card charged {_t(b, c)}/{_t(cr, c)}/{_t(g, c)}, "
                        f"expected {_t(want[0], c)}/{_t(want[1], c)}/{_t(want[2], c)}")
    subs = {s["id"]: s for s in view.get("subscriptions", [])}
    owing: dict[str, bool] = {}
    outstanding: Counter[str] = Counter()
    for sub, fixed in exp.owing.items():
        seen = subs.get(sub, {})
        outstanding.update(amounts(seen.get("outstanding")))
        owing[sub] = fixed if fixed is not None else seen.get("state") not in (None, "active")
    if dict(outstanding) != balance:
        report.diff(f"{a}: the subscriptions' outstanding {dict(outstanding)} do not add up to the balance {balance}")
    return owing


def _t(v: int, c: str) -> str:
    return money_text(v, c)


def _subscriptions(exp: Expected, sub_ids: list[str], view: dict[str, Any], owing: dict[str, bool],
                   report: Report) -> None:
    subs = {s["id"]: s for s in view.get("subscriptions", [])}
    for sub in sub_ids:
        seen = subs.get(sub)
        if seen is None:
            report.diff(f"{exp.account_id}/{sub}: missing from the account view")
            continue
        if owing[sub]:
            ladder = exp.ladder()
            state, dates = ladder.state, ladder.dates()
        else:
            state, dates = "active", {}
        report.figures[f"subscriptions {state}"] += 1
        if seen.get("state") != state:
            report.diff(f"{exp.account_id}/{sub}: state {seen.get('state')}, expected {state}")
        for name in ("pastDueSince", "disableAt", "cancelAt", "deleteAt"):
            if when(seen.get(name)) != dates.get(name):
                report.diff(f"{exp.account_id}/{sub}: {name} {seen.get(name)}, expected "
                            f"{dates[name].isoformat() if name in dates else None} (state {state})")


def _emails(messages: list[dict[str, Any]], report: Report) -> dict[str, dict[tuple[str, str], int]]:
    """Per account: (kind, recipient) -> distinct emails. A resubmission of the same operation id
    (which ACS recognises and does not send again) is counted, not a difference."""
    out: dict[str, dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
    for m in messages:
        headers = {k.lower(): v for k, v in (m.get("headers") or {}).items()}
        account, kind = headers.get("x-billing-account"), headers.get("x-billing-email-kind")
        report.figures["emails"] += 1
        report.figures["email resubmissions (same operation id)"] += m.get("submissions", 1) - 1
        for to in m.get("to", []):
            out[str(account)][(str(kind), to["address"])] += 1
    return out


def _account_emails(exp: Expected, contacts: list[str], owing: dict[str, bool],
                    got: dict[tuple[str, str], int], report: Report) -> None:
    ladder = exp.ladder().emails()
    per_contact = {kind: sum(ladder[kind] for s, o in owing.items() if o) for kind in SWEEP_KINDS}
    for contact in contacts:
        for kind in SWEEP_KINDS:
            n = got.pop((kind, contact), 0)
            if n != per_contact[kind]:
                report.diff(f"{exp.account_id}: {n} {kind} emails to {contact}, expected {per_contact[kind]}")
        n = got.pop(("payment_failed", contact), 0)
        lo, hi = exp.failed_emails
        if not lo <= n <= hi:
            report.diff(f"{exp.account_id}: {n} payment_failed emails to {contact}, expected {lo} to {hi}")
        got.pop(("payment_settled", contact), 0)
    for (kind, to), n in got.items():
        report.diff(f"{exp.account_id}: {n} unexpected {kind} emails to {to}")


def _lifecycle(events: list[dict[str, Any]], report: Report) -> dict[tuple[str, str], list[tuple[str, datetime]]]:
    """Per (account, subscription): the distinct transitions, as (type, effectiveAt). Same-id
    repeats (a crash between sending and recording, as the README allows) are counted apart."""
    seen: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["id"] in seen:
            report.figures["lifecycle same-id repeats"] += 1
            if seen[e["id"]] != e:
                report.diff(f"lifecycle: two different events under id {e['id']}")
            continue
        seen[e["id"]] = e
    out: dict[tuple[str, str], list[tuple[str, datetime]]] = defaultdict(list)
    for e in seen.values():
        d = e["data"]
        report.figures["lifecycle events"] += 1
        out[(d["accountId"], d["subscriptionId"])].append((e["type"], datetime.fromisoformat(d["effectiveAt"])))
    return out


def _account_lifecycle(exp: Expected, sub_ids: list[str], owing: dict[str, bool],
                       events: dict[tuple[str, str], list[tuple[str, datetime]]], report: Report) -> None:
    ladder = exp.ladder()
    for sub in sub_ids:
        got = sorted(events.pop((exp.account_id, sub), []), key=lambda x: (x[1], x[0]))
        later = ladder.lifecycle() if owing[sub] else []
        if sub in exp.exact_lifecycle:
            want = sorted(exp.day_d_transitions(sub) + later, key=lambda x: (x[1], x[0]))
            if got != want:
                report.diff(f"{exp.account_id}/{sub}: lifecycle {_events(got)}, expected {_events(want)}")
            continue
        early = [e for e in got if e[0] in ("subscription.past_due", "subscription.reactivated")]
        rest = [e for e in got if e not in early]
        balance = sum(1 if k == "subscription.past_due" else -1 for k, _ in early)
        if rest != later or balance != int(owing[sub]):
            report.diff(f"{exp.account_id}/{sub}: lifecycle {_events(got)}: expected as many past_due as "
                        f"reactivated{' plus one' if owing[sub] else ''}, then {_events(later)}")


def _events(items: list[tuple[str, datetime]]) -> str:
    return "[" + ", ".join(f"{k.removeprefix('subscription.')}@{at:%Y-%m-%d}" for k, at in items) + "]"


def _deadletters(plan: Plan, seen: Observed, report: Report) -> None:
    texts = Counter(d.get("text") for d in seen.deadletters)
    for msgs in plan.messages.values():
        for m in msgs:
            if m.event_id is None and not texts.get(m.text):
                report.diff(f"a malformed message was not dead-lettered: {m.text[:80]}")
    valid = {m.text for msgs in plan.messages.values() for m in msgs if m.event_id}
    stuck = [d for d in seen.deadletters if d.get("text") in valid and not d.get("replayedAt")]
    for d in stuck:
        report.diff(f"a valid event is still dead-lettered: {d.get('reason')}: {str(d.get('text'))[:80]}")
    report.figures["dead letters"] = len(seen.deadletters)
