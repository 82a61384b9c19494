"""Account state to and from JSON-able dicts, and JSON to and from table properties.

A table string property holds at most 64 KiB (32K UTF-16 units), so documents are split across
numbered properties, counting UTF-16 units (a character outside the BMP takes two); an entity
holds 1 MiB, which bounds an account at several thousand outstanding charges.

Integers: inside a JSON document they are exact at any size. As table properties they are
written as `Edm.Int64` (`typed`): the SDK writes a bare `int` as `Edm.Int32` and refuses
anything past 2^31 - 1, which a VND amount or a sum passes easily. They come back as
`EntityProperty(value, EdmType.INT64)`; `int_of` reads either kind.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, cast

from azure.data.tables import EdmType, EntityProperty

from shared.domain.model import (
    Account,
    AwaitingCharge,
    Charge,
    ChargeNote,
    ChargeStatus,
    Locale,
    PaymentMethod,
    PendingCharge,
    Profile,
    Subscription,
    SubscriptionState,
)
from shared.domain.money import Money
from shared.domain.policy import DunningPolicy

CHUNK = 30_000  # UTF-16 units per string property: under the 32K limit


def split_utf16(text: str, units: int = CHUNK) -> list[str]:
    """`text` in pieces of at most `units` UTF-16 code units each, never splitting a surrogate pair
    (so each piece is valid text): Table Storage measures strings in UTF-16. `[""]` for `""`."""
    data = text.encode("utf-16-le", "surrogatepass")
    parts: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + 2 * units, len(data))
        if end < len(data) and 0xD8 <= data[end - 1] <= 0xDB:  # a high surrogate: keep its pair together
            end -= 2
        parts.append(data[start:end].decode("utf-16-le", "surrogatepass"))
        start = end
    return parts or [""]


def dt(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def parse_dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def money_doc(m: Money) -> dict[str, Any]:
    return {"minor": m.minor, "currency": m.currency}


def money_of(d: Mapping[str, Any]) -> Money:
    return Money(int(d["minor"]), str(d["currency"]))


def typed(props: Mapping[str, Any]) -> dict[str, Any]:
    """Table properties with every integer (not a bool) as `Edm.Int64`; `ValueError` past its range."""
    return {k: int64(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in props.items()}


def int64(value: int) -> EntityProperty:
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{value} does not fit a table's Edm.Int64")
    return EntityProperty(value, EdmType.INT64)


def int_of(value: Any) -> int:
    """An integer property as read back: `EntityProperty` for Int64, a bare `int` for Int32."""
    raw = value.value if isinstance(value, EntityProperty) else value
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise ValueError(f"stored property {value!r} is not an integer")
    return raw


def put_json(entity: dict[str, Any], name: str, value: Any) -> None:
    """Store `value` as JSON under `name`, `name_1`, ... so no property passes the size limit."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    parts = split_utf16(text)
    entity[name] = parts[0]
    for n, part in enumerate(parts[1:], start=1):
        entity[f"{name}_{n}"] = part
    entity[f"{name}_parts"] = int64(len(parts))


def get_json(entity: Mapping[str, Any], name: str) -> Any:
    if name not in entity:
        return None
    parts = int_of(entity.get(f"{name}_parts", 1))
    text = str(entity[name]) + "".join(str(entity[f"{name}_{n}"]) for n in range(1, parts))
    return json.loads(text)


def subscription_doc(s: Subscription) -> dict[str, Any]:
    return {
        "id": s.subscription_id, "name": s.name, "state": str(s.state),
        "pastDueSince": dt(s.past_due_since), "disabledAt": dt(s.disabled_at),
        "canceledAt": dt(s.canceled_at), "deletedAt": dt(s.deleted_at),
        "steps": sorted(s.steps_done), "legalHold": s.legal_hold, "episode": s.episode,
        **({"policy": s.policy.version} if s.policy is not None else {}),
    }


def subscription_of(d: Mapping[str, Any], policies: Mapping[str, DunningPolicy] | None = None) -> Subscription:
    """`policies`: the account's kept episode policies by version (a subscription stored before
    they were kept has none, and follows the settings of the day, as it did)."""
    version = d.get("policy")
    return Subscription(
        d["id"], d["name"], SubscriptionState(d["state"]), parse_dt(d["pastDueSince"]),
        parse_dt(d["disabledAt"]), parse_dt(d["canceledAt"]), parse_dt(d["deletedAt"]),
        frozenset(d.get("steps", ())), bool(d.get("legalHold", False)), int(d.get("episode", 0)),
        (policies or {}).get(version) if version else None,
    )


def policies_doc(subs: Iterable[Subscription]) -> dict[str, Any]:
    """Each episode policy in use, once per version."""
    return {s.policy.version: s.policy.schedule_values() for s in subs if s.policy is not None}


def policies_of(d: Mapping[str, Any] | None) -> dict[str, DunningPolicy]:
    return {version: DunningPolicy.from_values(values) for version, values in (d or {}).items()}


def charge_doc(c: Charge) -> dict[str, Any]:
    return {
        "id": c.charge_id, "sub": c.subscription_id, "amount": money_doc(c.amount), "status": str(c.status),
        "reason": c.reason, "since": dt(c.outstanding_since), "applied": c.applied,
    }


def charge_of(d: Mapping[str, Any]) -> Charge:
    since = parse_dt(d["since"])
    assert since is not None
    return Charge(d["id"], d["sub"], money_of(d["amount"]), ChargeStatus(d["status"]), d["reason"], since,
                  int(d["applied"]))


def state_doc(a: Account) -> dict[str, Any]:
    return {
        "subscriptions": [subscription_doc(s) for s in a.subscriptions.values()],
        "outstanding": [charge_doc(c) for c in a.outstanding.values()],
        "credit": dict(a.credit),
        "earmarks": {cid: money_doc(m) for cid, m in a.earmarks.items()},
        "revision": a.revision,
        "settling": {cur: _pending_doc(p) for cur, p in a.settling.items()},
        "settlementAttempts": a.settlement_attempts,
        "nextDueAt": dt(a.next_due_at),
        "nextRetentionAt": dt(a.next_retention_at),
        "retryBlocked": a.retry_blocked,
        "linkVersion": a.link_version,
        # dunning controls (issue 23); absent in rows written before them, which read as unpaused
        **({"pauses": [[dt(f), dt(t)] for f, t in a.pauses]} if a.pauses else {}),
        **({"pausedUntil": dt(a.paused_until)} if a.paused_until else {}),
        **({"cardSavedAt": dt(a.card_saved_at)} if a.card_saved_at else {}),
        **({"cardNoticed": a.card_noticed} if a.card_noticed else {}),
        **({"settleAgainAt": dt(a.settle_again_at)} if a.settle_again_at else {}),
        **({"awaiting": {k: {**_pending_doc(w.pending), "gatewayChargeId": w.gateway_charge_id}
                         for k, w in a.awaiting.items()}} if a.awaiting else {}),
        **({"policies": policies} if (policies := policies_doc(a.subscriptions.values())) else {}),
    }


def profile_doc(p: Profile) -> dict[str, Any]:
    pm = p.payment_method
    return {
        "displayName": p.display_name, "locale": p.locale, "billingContacts": list(p.billing_contacts),
        "paymentMethod": None if pm is None else {
            "type": pm.type, "token": pm.token, "brand": pm.brand, "last4": pm.last4,
            "expMonth": pm.exp_month, "expYear": pm.exp_year,
        },
        "unreachable": {k: dt(v) for k, v in p.unreachable.items()},
        "reported": {k: dt(v) for k, v in p.reported.items()},
        **({"undelivered": {k: dt(v) for k, v in p.undelivered.items()}} if p.undelivered else {}),
    }


def profile_of(d: Mapping[str, Any]) -> Profile:
    pm = d.get("paymentMethod")
    method = None if pm is None else PaymentMethod(
        pm["type"], pm.get("token"), pm.get("brand"), pm.get("last4"), pm.get("expMonth"), pm.get("expYear"),
    )
    unreachable = {k: cast(datetime, parse_dt(v)) for k, v in d.get("unreachable", {}).items()}
    reported = {k: cast(datetime, parse_dt(v)) for k, v in d.get("reported", {}).items()}
    undelivered = {k: cast(datetime, parse_dt(v)) for k, v in d.get("undelivered", {}).items()}
    return Profile(d["displayName"], cast(Locale, d["locale"]), tuple(d["billingContacts"]), method, unreachable,
                   reported, undelivered)


def account_of(account_id: str, state: Mapping[str, Any] | None, profile: Mapping[str, Any] | None) -> Account:
    if state is None:
        return Account(account_id, profile_of(profile) if profile else None)
    policies = policies_of(state.get("policies"))
    subs = [subscription_of(s, policies) for s in state["subscriptions"]]
    charges = [charge_of(c) for c in state["outstanding"]]
    return Account(
        account_id,
        profile_of(profile) if profile else None,
        {s.subscription_id: s for s in subs},
        {c.charge_id: c for c in charges},
        {k: int(v) for k, v in state["credit"].items()},
        {cid: money_of(m) for cid, m in state.get("earmarks", {}).items()},
        int(state.get("revision", 0)),
        {cur: _pending_of(p) for cur, p in state.get("settling", {}).items()},
        int(state.get("settlementAttempts", 0)),
        parse_dt(state.get("nextDueAt")),
        parse_dt(state.get("nextRetentionAt")),
        bool(state.get("retryBlocked", False)),
        pauses=tuple((cast(datetime, parse_dt(f)), cast(datetime, parse_dt(t))) for f, t in state.get("pauses", ())),
        paused_until=parse_dt(state.get("pausedUntil")),
        card_saved_at=parse_dt(state.get("cardSavedAt")),
        card_noticed=state.get("cardNoticed"),
        settle_again_at=parse_dt(state.get("settleAgainAt")),
        awaiting={k: AwaitingCharge(_pending_of(w), w.get("gatewayChargeId"))
                  for k, w in state.get("awaiting", {}).items()},
        link_version=int(state.get("linkVersion", 0)),  # accounts stored before versions were counted: the first
    )


def _pending_doc(p: PendingCharge) -> dict[str, Any]:
    return {"key": p.idempotency_key, "amount": money_doc(p.amount), "parts": [list(x) for x in p.parts],
            "startedAt": dt(p.started_at)}


def _pending_of(d: Mapping[str, Any]) -> PendingCharge:
    return PendingCharge(d["key"], money_of(d["amount"]), tuple((str(c), int(m)) for c, m in d["parts"]),
                         cast(datetime, parse_dt(d["startedAt"])))


def note_properties(n: ChargeNote) -> dict[str, Any]:
    return {
        "status": str(n.status), "subscriptionId": n.subscription_id,
        "amountMinor": n.amount.minor if n.amount else None,
        "currency": n.amount.currency if n.amount else None,
        "settledAt": dt(n.settled_at), "settledBy": n.settled_by, "paidByCard": n.paid_by_card,
    }


def note_of(charge_id: str, e: Mapping[str, Any]) -> ChargeNote:
    amount = Money(int_of(e["amountMinor"]), str(e["currency"])) if e.get("currency") else None
    return ChargeNote(charge_id, ChargeStatus(e["status"]), e.get("subscriptionId"), amount,
                      parse_dt(e.get("settledAt")), e.get("settledBy"), bool(e.get("paidByCard", False)))
