"""What a decision writes, and how it is split to fit Table Storage's transactions.

The one place that decides what a decision writes (both account stores build on it). A decision
whose rows fit one entity group transaction (100 operations, 4 MiB) commits in one. A larger one
commits in several and still takes effect exactly once:

1. the first transaction holds what money and states depend on: the account row (states,
   balances, what is due next, and a `followUps` flag) and the event marker; every further write
   (charge records, outbox rows, timeline, mail records) goes into the same transaction packed
   into `cont|{revision}|{n}` continuation rows, at most 99 writes each, compressed;
2. each continuation row is then applied in a transaction of its own *together with its own
   deletion*, so it takes effect once however many runs race to finish it: a run whose
   transaction fails because the row is gone knows a twin applied it.

Row keys written here (all in the account's partition): `charge|{chargeId}`, `outbox|{key}`,
`tl|{revision:012d}` (`tl|{revision:012d}|{n:04d}` when one decision's entries are many),
`mail|{key}`, `cont|{revision:012d}|{n:04d}`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.data.tables import EdmType, EntityProperty

from shared.adapters.store import codec
from shared.adapters.store.storable import storable_entity
from shared.domain.decision import Decision, MailRecord
from shared.domain.effects import Effect, EmitLifecycleEvent, IndexContact, SendEmail, TimelineEntry, UpdateIndex
from shared.domain.model import Account, ChargeNote
from shared.inbound.rfc3339 import format_rfc3339
from shared.telemetry import with_trace

Entity = dict[str, Any]

MAX_OPERATIONS = 100
"""Operations in one entity group transaction (Azure's limit)."""
MAX_TRANSACTION_BYTES = 3 * 1024 * 1024
"""Our budget for one transaction's entities, under Azure's 4 MiB for the whole request."""
WRITES_PER_CONTINUATION = MAX_OPERATIONS - 1
"""A continuation row is applied together with its own deletion: 99 writes and one delete."""
CONTINUATION_RAW_BYTES = 350_000
"""Uncompressed JSON per continuation row: even incompressible, its base64 stays under the 1 MiB
an entity may hold (Azure counts a string's characters twice)."""
TIMELINE_ENTRIES_PER_ROW = 200
"""Entries per timeline row: a decision's entries spill into further rows, far under 1 MiB each."""
CONTINUATION_PREFIX = "cont|"
ACCOUNT_ROW = "account"
FOLLOW_UPS = "followUps"
"""Account-row flag: continuation rows of a committed decision may still wait to be applied."""


@dataclass(frozen=True)
class OutboxRow:
    account_id: str
    key: str
    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class DecisionRows:
    """Every row a decision writes besides the account row and the event marker (`writes`), and
    the effects among them to carry out once committed (`outbox`), in the order decided."""

    writes: list[Entity]
    outbox: list[OutboxRow]


class DecisionTooLarge(ValueError):
    """Even packed into continuation rows, a decision does not fit its first transaction."""


def marker_key(event_id: str) -> str:
    return "event|" + hashlib.sha256(event_id.encode()).hexdigest()


def marker_entity(pk: str, event_id: str, event_type: str | None, now: datetime) -> Entity:
    """The processed event's id, created in the decision's first transaction (dedupe)."""
    return {"PartitionKey": pk, "RowKey": marker_key(event_id), "eventId": event_id[:1024],
            "type": event_type or "", "appliedAt": now}


def rows_of(pk: str, decision: Decision, now: datetime) -> DecisionRows:
    outbox = [with_trace(outbox_row(pk, e, due_at=now)) for e in decision.effects]  # with the decision's trace
    writes = [note_entity(pk, n) for n in decision.notes]
    writes += [outbox_entity(r) for r in outbox]
    writes += timeline_entities(pk, decision.timeline, decision.account.revision)
    writes += [mail_entity(pk, m, now) for m in decision.mail]
    return DecisionRows(writes, outbox)


def account_entity(account: Account, *, follow_ups: bool) -> Entity:
    """The account row: state and profile as JSON, and whether follow-up writes may wait."""
    entity: Entity = {"PartitionKey": account.account_id, "RowKey": ACCOUNT_ROW, FOLLOW_UPS: follow_ups}
    codec.put_json(entity, "state", codec.state_doc(account))
    if account.profile is not None:
        codec.put_json(entity, "profile", codec.profile_doc(account.profile))
    return entity


def split(account_row: Entity, head: Sequence[Entity], rows: DecisionRows, revision: int) -> tuple[list[Entity], bool]:
    """The upserts of the first transaction (beside the account row and the `head` creates), and
    whether they carry continuation rows (then the account row's flag is raised).
    Raises `DecisionTooLarge`."""
    if fits_one_transaction([account_row, *head, *rows.writes]):
        return rows.writes, False
    account_row[FOLLOW_UPS] = True
    upserts = continuation_rows(str(account_row["PartitionKey"]), revision, rows.writes)
    if not fits_one_transaction([account_row, *head, *upserts]):
        raise DecisionTooLarge(f"a decision of {len(rows.writes)} writes does not fit its first transaction")
    return upserts, True


def fits_one_transaction(entities: Sequence[Entity]) -> bool:
    return len(entities) <= MAX_OPERATIONS and sum(entity_size(e) for e in entities) <= MAX_TRANSACTION_BYTES


def entity_size(entity: Entity) -> int:
    """Bytes of the entity's JSON, about what it costs in a transaction's request body."""
    return len(json.dumps(_packed(entity), separators=(",", ":"), ensure_ascii=False).encode())


def continuation_rows(pk: str, revision: int, writes: Sequence[Entity]) -> list[Entity]:
    """Pack `writes` into continuation rows of at most 99 writes and 350 kB of JSON each."""
    chunks: list[list[Entity]] = [[]]
    size = 0
    for entity in writes:
        cost = entity_size(entity)
        if chunks[-1] and (len(chunks[-1]) >= WRITES_PER_CONTINUATION or size + cost > CONTINUATION_RAW_BYTES):
            chunks.append([])
            size = 0
        chunks[-1].append(entity)
        size += cost
    rows = []
    for n, chunk in enumerate(c for c in chunks if c):
        text = json.dumps([_packed(e) for e in chunk], separators=(",", ":"), ensure_ascii=False)
        row: Entity = {"PartitionKey": pk, "RowKey": f"{CONTINUATION_PREFIX}{revision:012d}|{n:04d}",
                       "writes": codec.int64(len(chunk))}
        codec.put_json(row, "packed", base64.b64encode(zlib.compress(text.encode(), 6)).decode("ascii"))
        rows.append(row)
    return rows


def writes_in(continuation: Entity) -> list[Entity]:
    """The writes a continuation row carries, as entities ready for a transaction."""
    text = zlib.decompress(base64.b64decode(codec.get_json(continuation, "packed"))).decode()
    return [_unpacked(p) for p in json.loads(text)]


def outbox_of(entity: Entity) -> OutboxRow | None:
    """The outbox row an entity writes, if it is one."""
    rk = str(entity["RowKey"])
    if not rk.startswith("outbox|"):
        return None
    return OutboxRow(str(entity["PartitionKey"]), rk[len("outbox|"):], str(entity["kind"]),
                     codec.get_json(entity, "payload"))


def _packed(entity: Entity) -> list[list[Any]]:
    """Each property as [name, value, EDM type or null], so typed values survive JSON; text as
    Table Storage can hold it (`storable_entity`: continuation rows carry their writes compressed,
    where the table client cannot see them, and sizes are measured on what is written)."""
    out: list[list[Any]] = []
    for name, value in storable_entity(entity).items():
        if isinstance(value, EntityProperty):
            inner = value.value.isoformat() if isinstance(value.value, datetime) else value.value
            out.append([name, inner, EdmType(value.edm_type).value])
        elif isinstance(value, datetime):
            out.append([name, value.isoformat(), EdmType.DATETIME.value])
        else:
            out.append([name, value, None])
    return out


def _unpacked(props: list[list[Any]]) -> Entity:
    entity: Entity = {}
    for name, value, edm in props:
        if edm == EdmType.DATETIME.value:
            entity[name] = datetime.fromisoformat(value)
        elif edm is not None:
            entity[name] = EntityProperty(value, EdmType(edm))
        else:
            entity[name] = value
    return entity


# -- the rows themselves ---------------------------------------------------------------------------


def outbox_row(pk: str, effect: Effect, *, due_at: datetime | None = None) -> OutboxRow:
    """The outbox row of one effect; an email's names when it was due (`due_at`, the deciding
    decision's time), from which `EMAIL_GIVE_UP_AFTER_HOURS` counts."""
    if isinstance(effect, EmitLifecycleEvent):
        return OutboxRow(pk, effect.key, "lifecycle", {
            "id": effect.key, "type": effect.type, "accountId": effect.account_id,
            "subscriptionId": effect.subscription_id, "reason": effect.reason,
            "effectiveAt": effect.effective_at.isoformat(),
        })
    if isinstance(effect, IndexContact):
        return OutboxRow(pk, effect.key, "index", {
            "index": "contact", "address": effect.address, "present": effect.listed, "revision": effect.revision,
        })
    if isinstance(effect, UpdateIndex):
        return OutboxRow(pk, effect.key, "index", {
            "index": effect.index, "at": effect.at.isoformat() if effect.at else None, "present": effect.present,
        })
    return OutboxRow(pk, effect.key, "email", {
        "operationId": effect.key, "kind": effect.kind, "occasion": effect.occasion,
        "recipient": effect.recipient, "subscriptionIds": list(effect.subscription_ids), "facts": effect.facts,
        **({"dueAt": due_at.isoformat()} if due_at is not None else {}),
    })


def email_due_at(payload: dict[str, Any], written: datetime | None) -> datetime | None:
    """When an email outbox row's email was due: its `dueAt`, or for a row written before it was
    recorded, when the row was written (its Timestamp), if known."""
    raw = payload.get("dueAt")
    if isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            pass
    return written


def email_of(row: OutboxRow) -> SendEmail:
    """The email an `email` outbox row holds, typed (what `outbox_row` wrote for a `SendEmail`)."""
    p = row.payload
    return SendEmail(row.account_id, p["kind"], str(p["occasion"]), str(p["recipient"]),
                     tuple(p.get("subscriptionIds") or ()), dict(p.get("facts") or {}))


def outbox_entity(row: OutboxRow) -> Entity:
    entity: Entity = {"PartitionKey": row.account_id, "RowKey": f"outbox|{row.key}", "kind": row.kind}
    codec.put_json(entity, "payload", row.payload)
    return entity


def note_entity(pk: str, n: ChargeNote) -> Entity:
    body = codec.typed({k: v for k, v in codec.note_properties(n).items() if v is not None})
    return {"PartitionKey": pk, "RowKey": f"charge|{n.charge_id}", **body}


def mail_entity(pk: str, m: MailRecord, now: datetime) -> Entity:
    return {"PartitionKey": pk, "RowKey": f"mail|{m.key}", "outcome": m.outcome, "recipient": m.recipient,
            "kind": m.kind, "operationId": m.operation_id, "detail": m.detail[:2000],
            "closedAt": now.isoformat()}


def mail_record_of(entity: Entity) -> MailRecord:
    return MailRecord(str(entity["RowKey"])[len("mail|"):], str(entity["outcome"]), str(entity["recipient"]),
                      str(entity["kind"]), str(entity["operationId"]), str(entity.get("detail", "")))


def timeline_entities(pk: str, entries: Sequence[TimelineEntry], revision: int) -> list[Entity]:
    """A decision's timeline, keyed by the account's revision: ordered by commit, written once.
    One row for the usual handful of entries; a decision of hundreds takes numbered rows, none of
    whose keys starts another's (a page cursor on a row then never takes in the next)."""
    rows: list[Entity] = []
    spill = len(entries) > TIMELINE_ENTRIES_PER_ROW
    for n, start in enumerate(range(0, len(entries), TIMELINE_ENTRIES_PER_ROW)):
        entity: Entity = {"PartitionKey": pk, "RowKey": f"tl|{revision:012d}" + (f"|{n:04d}" if spill else "")}
        codec.put_json(entity, "entries", [_timeline_item(e) for e in entries[start:start + TIMELINE_ENTRIES_PER_ROW]])
        rows.append(entity)
    return rows


def email_timeline_entity(pk: str, key: str, entry: TimelineEntry, revision: int) -> Entity:
    """The timeline row of an email closed without a decision: after the rows of `revision` (the
    account's revision when it was closed) and before the next decision's, keyed by the email."""
    entity: Entity = {"PartitionKey": pk, "RowKey": f"tl|{revision:012d}|m{key}"}
    codec.put_json(entity, "entries", [_timeline_item(entry)])
    return entity


def _timeline_item(e: TimelineEntry) -> dict[str, Any]:
    return {"at": format_rfc3339(e.at), "kind": e.kind, "subscriptionId": e.subscription_id,
            "detail": e.detail}  # outside text in it was masked where it came in; ids stay whole
