"""The account partition: load a snapshot, commit a decision in one entity group transaction.

Row keys inside an account's partition:
  `account`            the live state (subscriptions, outstanding charges, credit) and, in its own
                       property, the personal profile; the ETag of this row guards every decision
  `charge|{chargeId}`  the financial record of each charge, kept after data deletion
  `event|{sha}`        a processed event id, written with the decision it caused (dedupe)
  `outbox|{key}`       effects waiting to leave (lifecycle events, emails), written with the state
  `tl|{at}|{key}`      one timeline row per decision

Applying one event costs a fixed number of round trips whatever the history: three point reads
at most (account, event marker, named charges not outstanding) and one `$batch`.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.card_data import mask_card_numbers
from shared.lifecycle.effects import (
    Effect,
    EmitLifecycleEvent,
    IndexContact,
    TimelineEntry,
    UpdateIndex,
    short_hash,
)
from shared.lifecycle.model import Account, ChargeNote
from shared.lifecycle.work import Decision, MailRecord
from shared.store import codec

ACCOUNT_ROW = "account"
MAX_BATCH = 100
NOTES_PER_OVERFLOW_ROW = 40


class ConcurrencyConflict(Exception):
    """Another instance committed to this account first: reload and decide again."""


class AlreadyApplied(Exception):
    """The event marker exists: a twin applied this event."""


@dataclass(frozen=True)
class OutboxRow:
    account_id: str
    key: str
    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Snapshot:
    account: Account
    etag: str | None
    notes: dict[str, ChargeNote] = field(default_factory=dict)
    already_applied: bool = False


def marker_key(event_id: str) -> str:
    return "event|" + hashlib.sha256(event_id.encode()).hexdigest()


class AccountRepository(Protocol):
    """What the service layer needs of account storage (Table Storage, or in memory for tests)."""

    def load(self, account_id: str, *, event_id: str | None = None,
             charge_ids: Sequence[str] = ()) -> Snapshot: ...
    def exists(self, account_id: str) -> bool: ...
    def commit(self, snapshot: Snapshot, decision: Decision, *, event_id: str | None = None,
               event_type: str | None = None, now: datetime) -> list[OutboxRow]: ...
    def pending_outbox(self, account_id: str, settled_for: timedelta = timedelta(0)) -> list[OutboxRow]: ...
    def delete_outbox(self, rows: Sequence[OutboxRow]) -> None: ...
    def timeline(self, account_id: str) -> list[dict[str, Any]]: ...
    def charge_notes(self, account_id: str) -> list[ChargeNote]: ...
    def write_notes(self, account_id: str, notes: Iterable[dict[str, Any]]) -> None: ...


class AccountStore:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    # -- reading ---------------------------------------------------------------------------------

    def load(self, account_id: str, *, event_id: str | None = None, charge_ids: Sequence[str] = ()) -> Snapshot:
        row = self._get(account_id, ACCOUNT_ROW)
        account = codec.account_of(
            account_id,
            codec.get_json(row, "state") if row else None,
            codec.get_json(row, "profile") if row else None,
        )
        etag = row.metadata["etag"] if row else None
        if event_id is not None and self._get(account_id, marker_key(event_id)) is not None:
            return Snapshot(account, etag, already_applied=True)
        notes: dict[str, ChargeNote] = {}
        for charge_id in charge_ids:
            if charge_id in account.outstanding:
                continue
            note = self._get(account_id, f"charge|{charge_id}")
            if note is not None:
                notes[charge_id] = codec.note_of(charge_id, note)
        return Snapshot(account, etag, notes)

    def exists(self, account_id: str) -> bool:
        return self._get(account_id, ACCOUNT_ROW) is not None

    def _get(self, pk: str, rk: str) -> Any:
        try:
            return self.table.get_entity(pk, rk)
        except ResourceNotFoundError:
            return None

    def pending_outbox(self, account_id: str, settled_for: timedelta = timedelta(0)) -> list[OutboxRow]:
        """Rows not yet carried out, written at least `settled_for` ago (by the server's clock): a
        redelivery leaves a live twin's fresh rows to that twin, and takes over only stale ones."""
        rows = self.table.query_entities(
            "PartitionKey eq @pk and RowKey ge 'outbox|' and RowKey lt 'outbox}'",
            parameters={"pk": account_id},
        )
        cutoff = datetime.now(UTC) - settled_for
        return [OutboxRow(account_id, r["RowKey"][len("outbox|"):], r["kind"], codec.get_json(r, "payload"))
                for r in rows if not settled_for or (r.metadata["timestamp"] or cutoff) <= cutoff]

    def outbox_row(self, account_id: str, key: str) -> tuple[OutboxRow, Any] | None:
        """One outbox row, and the stored entity (with its ETag) by which the sender claims it."""
        r = self._get(account_id, f"outbox|{key}")
        if r is None:
            return None
        return OutboxRow(account_id, key, r["kind"], codec.get_json(r, "payload")), r

    def claim_outbox(self, entity: Any, holder: str, until: datetime) -> bool:
        """Take an email row for sending; False if a twin took it first and its claim still stands."""
        claimed = entity.get("claimedUntil")
        if claimed and datetime.fromisoformat(claimed) > datetime.now(UTC) and entity.get("claimedBy") != holder:
            return False
        attempts = codec.int_of(entity.get("attempts", 0)) + 1
        claim = {"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"], "claimedBy": holder,
                 "claimedUntil": until.isoformat(), "attempts": codec.int64(attempts)}
        try:
            self.table.update_entity(claim, mode=UpdateMode.MERGE, etag=entity.metadata["etag"],
                                     match_condition=MatchConditions.IfNotModified)
        except HttpResponseError:
            return False  # changed since we read it: a twin claimed or closed it
        return True

    def mail_record(self, account_id: str, key: str) -> dict[str, Any] | None:
        r = self._get(account_id, f"mail|{key}")
        return dict(r) if r is not None else None

    def timeline(self, account_id: str) -> list[dict[str, Any]]:
        rows = self.table.query_entities(
            "PartitionKey eq @pk and RowKey ge 'tl|' and RowKey lt 'tl}'", parameters={"pk": account_id},
        )
        entries: list[dict[str, Any]] = []
        for row in rows:
            entries.extend(codec.get_json(row, "entries"))
        return entries

    def redact(self, account_id: str, secrets: Iterable[str], replacement: str) -> list[str]:
        """Rewrite timeline and mail rows without the given personal data, in batches of at most
        100 writes; idempotent, so a crash halfway is finished by running it again. Returns the
        ACS operation ids of the account's emails (their index rows go too)."""
        words = sorted({w for w in secrets if w}, key=len, reverse=True)
        ops: list[tuple[Any, ...]] = []
        operations: list[str] = []
        for row in self.table.query_entities(
                "PartitionKey eq @pk and RowKey ge 'mail|' and RowKey lt 'mail}'", parameters={"pk": account_id}):
            operations.append(str(row.get("operationId", "")))
            if row.get("recipient") != replacement:
                ops.append(("upsert", {**row, "recipient": replacement, "detail": _scrub(str(row.get("detail", "")),
                                                                                         words, replacement)},
                            {"mode": UpdateMode.REPLACE}))
        for row in self.table.query_entities(
                "PartitionKey eq @pk and RowKey ge 'tl|' and RowKey lt 'tl}'", parameters={"pk": account_id}):
            entries = codec.get_json(row, "entries")
            clean = [{**e, "detail": _scrub(e["detail"], words, replacement)} for e in entries]
            if clean != entries:
                entity: dict[str, Any] = {"PartitionKey": account_id, "RowKey": row["RowKey"]}
                codec.put_json(entity, "entries", clean)
                ops.append(("upsert", entity, {"mode": UpdateMode.REPLACE}))
        for start in range(0, len(ops), MAX_BATCH):
            self.table.submit_transaction(ops[start:start + MAX_BATCH])
        return [o for o in operations if o]

    def charge_notes(self, account_id: str) -> list[ChargeNote]:
        rows = self.table.query_entities(
            "PartitionKey eq @pk and RowKey ge 'charge|' and RowKey lt 'charge}'", parameters={"pk": account_id},
        )
        return [codec.note_of(r["RowKey"][len("charge|"):], r) for r in rows]

    # -- writing ---------------------------------------------------------------------------------

    def commit(self, snapshot: Snapshot, decision: Decision, *, event_id: str | None = None,
               event_type: str | None = None, now: datetime) -> list[OutboxRow]:
        """Write the decision atomically; return the outbox rows to dispatch after the commit."""
        account = decision.account
        pk = account.account_id
        ops: list[tuple[Any, ...]] = [self._account_op(snapshot, account)]
        if event_id is not None:
            ops.append(("create", {"PartitionKey": pk, "RowKey": marker_key(event_id), "eventId": event_id[:1024],
                                   "type": event_type or "", "appliedAt": now}))
        outbox = [outbox_row(pk, e) for e in decision.effects]
        room = MAX_BATCH - len(ops) - len(outbox) - 1 - 1
        notes = list(decision.notes)
        inline, overflow = notes[:max(room, 0)], notes[max(room, 0):]
        for start in range(0, len(overflow), NOTES_PER_OVERFLOW_ROW):
            chunk = overflow[start:start + NOTES_PER_OVERFLOW_ROW]
            outbox.append(OutboxRow(pk, f"notes-{short_hash(chunk[0].charge_id + str(now))}-{start}",
                                    "charge_notes", {"notes": [_note_payload(n) for n in chunk]}))
        ops += [("upsert", _note_entity(pk, n), {"mode": UpdateMode.REPLACE}) for n in inline]
        ops += [("upsert", _outbox_entity(r), {"mode": UpdateMode.REPLACE}) for r in outbox]
        if decision.timeline:
            ops.append(("upsert", _timeline_entity(pk, decision.timeline, account.revision),
                        {"mode": UpdateMode.REPLACE}))
        ops += [("upsert", _mail_entity(pk, m, now), {"mode": UpdateMode.REPLACE}) for m in decision.mail]
        if len(ops) > MAX_BATCH:
            raise ValueError(f"a decision of {len(ops)} writes does not fit one transaction")
        self._submit(ops, has_marker=event_id is not None)
        # Closed by the `mail|` rows just committed; deleting the outbox rows is tidying.
        self.delete_outbox([OutboxRow(pk, record.key, "email", {}) for record in decision.mail])
        return outbox

    def _account_op(self, snapshot: Snapshot, account: Account) -> tuple[Any, ...]:
        entity: dict[str, Any] = {"PartitionKey": account.account_id, "RowKey": ACCOUNT_ROW}
        codec.put_json(entity, "state", codec.state_doc(account))
        if account.profile is not None:
            codec.put_json(entity, "profile", codec.profile_doc(account.profile))
        if snapshot.etag is None:
            return ("create", entity)
        return ("update", entity, {"mode": UpdateMode.REPLACE, "etag": snapshot.etag,
                                   "match_condition": MatchConditions.IfNotModified})

    def _submit(self, ops: list[tuple[Any, ...]], *, has_marker: bool) -> None:
        try:
            self.table.submit_transaction(ops)
        except TableTransactionError as exc:
            index = getattr(exc, "index", None)
            if exc.status_code == 412 or (exc.status_code == 409 and index == 0):
                raise ConcurrencyConflict(str(getattr(exc, "error_code", exc.status_code))) from exc
            if exc.status_code == 409 and has_marker and index == 1:
                raise AlreadyApplied() from exc
            raise

    def write_notes(self, account_id: str, notes: Iterable[dict[str, Any]]) -> None:
        """Carry out a `charge_notes` outbox row: idempotent upserts of final charge records."""
        ops: list[tuple[Any, ...]] = [
            ("upsert", {"PartitionKey": account_id, "RowKey": f"charge|{n['chargeId']}",
                        **codec.typed({k: v for k, v in n.items() if k != "chargeId" and v is not None})},
             {"mode": UpdateMode.REPLACE})
            for n in notes
        ]
        for start in range(0, len(ops), MAX_BATCH):
            self.table.submit_transaction(ops[start:start + MAX_BATCH])

    def delete_outbox(self, rows: Sequence[OutboxRow]) -> None:
        """Clear carried-out rows, one `$batch` per account; a row already gone is no error."""
        by_account: dict[str, list[OutboxRow]] = {}
        for row in rows:
            by_account.setdefault(row.account_id, []).append(row)
        for account_id, mine in by_account.items():
            for start in range(0, len(mine), MAX_BATCH):
                chunk = mine[start:start + MAX_BATCH]
                try:
                    self.table.submit_transaction([("delete", {"PartitionKey": account_id,
                                                               "RowKey": f"outbox|{r.key}"}) for r in chunk])
                except (TableTransactionError, ResourceNotFoundError):
                    for r in chunk:  # one was gone already (a twin cleared it): delete the rest singly
                        with contextlib.suppress(ResourceNotFoundError):
                            self.table.delete_entity(account_id, f"outbox|{r.key}")


def _scrub(text: str, words: Sequence[str], replacement: str) -> str:
    for word in words:
        text = text.replace(word, replacement)
    return text


def _mail_entity(pk: str, m: MailRecord, now: datetime) -> dict[str, Any]:
    return {"PartitionKey": pk, "RowKey": f"mail|{m.key}", "outcome": m.outcome, "recipient": m.recipient,
            "kind": m.kind, "operationId": m.operation_id, "detail": mask_card_numbers(m.detail[:2000]),
            "closedAt": now.isoformat()}


def _note_payload(n: ChargeNote) -> dict[str, Any]:
    return {"chargeId": n.charge_id, **codec.note_entity(n)}


def _note_entity(pk: str, n: ChargeNote) -> dict[str, Any]:
    body = codec.typed({k: v for k, v in codec.note_entity(n).items() if v is not None})
    return {"PartitionKey": pk, "RowKey": f"charge|{n.charge_id}", **body}


def outbox_row(pk: str, effect: Effect) -> OutboxRow:
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
    })


def _outbox_entity(row: OutboxRow) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": row.account_id, "RowKey": f"outbox|{row.key}", "kind": row.kind}
    codec.put_json(entity, "payload", row.payload)
    return entity


def _timeline_entity(pk: str, entries: Sequence[TimelineEntry], revision: int) -> dict[str, Any]:
    # One row per decision, keyed by the account's revision: ordered by commit, written once.
    entity: dict[str, Any] = {"PartitionKey": pk, "RowKey": f"tl|{revision:012d}"}
    codec.put_json(entity, "entries", [
        {"at": e.at.isoformat().replace("+00:00", "Z"), "kind": e.kind, "subscriptionId": e.subscription_id,
         "detail": mask_card_numbers(e.detail)}  # free text from outside (gateway, ACS) may quote anything
        for e in entries
    ])
    return entity
