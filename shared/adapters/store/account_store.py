"""The account partition: load a snapshot, commit a decision exactly once, whatever its size.

Row keys inside an account's partition:
  `account`            the live state (subscriptions, outstanding charges, credit) and, in its own
                       property, the personal profile; the ETag of this row guards every decision
  `charge|{chargeId}`  the financial record of each charge, kept after data deletion
  `event|{sha}`        a processed event id, written with the decision it caused (dedupe)
  `outbox|{key}`       effects waiting to leave (lifecycle events, emails), written with the state
  `tl|{revision}`      one timeline row per decision (more for a decision of hundreds of entries)
  `mail|{key}`         an email sent or given up
  `cont|{revision}|n`  the follow-up writes of a decision too large for one transaction, until
                       applied (see `decision_rows.py`)

Applying one event costs a fixed number of round trips whatever the history: three point reads
at most (account, event marker, named charges not outstanding) and one `$batch`. A decision larger
than one transaction adds one `$batch` per 99 follow-up writes, one query and one merge.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.adapters.store import codec
from shared.adapters.store.decision_rows import (
    ACCOUNT_ROW,
    CONTINUATION_PREFIX,
    FOLLOW_UPS,
    Entity,
    OutboxRow,
    account_entity,
    email_due_at,
    email_of,
    email_timeline_entity,
    mail_entity,
    marker_entity,
    marker_key,
    outbox_of,
    outbox_row,
    rows_of,
    split,
    writes_in,
)
from shared.adapters.store.timeline import Cursor, Order, TimelinePage, timeline_page
from shared.domain.decision import Decision, MailRecord
from shared.domain.effects import SendEmail, TimelineEntry
from shared.domain.erasure import Erasure
from shared.domain.model import Account, ChargeNote
from shared.faults import Faults
from shared.telemetry import count_transitions

__all__ = ["AccountRepository", "AccountStore", "AlreadyApplied", "ConcurrencyConflict", "OutboxRow", "Snapshot",
           "marker_key", "outbox_row"]

MAX_BATCH = 100
FINISH_ROUNDS = 5
CACHED_ACCOUNTS = 1024
"""Account rows a process keeps its last copy of (`load(cached=True)`): a hint, never trusted
without the row's ETag."""


class ConcurrencyConflict(Exception):
    """Another instance committed to this account first: reload and decide again."""


class AlreadyApplied(Exception):
    """The event marker exists: a twin applied this event."""


@dataclass(frozen=True)
class OpenEmail:
    """What sending one email needs from its account's partition (`AccountStore.open_email`)."""

    account: Account
    email: SendEmail | None
    """None when its outbox row is gone (closed and tidied, or never written)."""
    closed: bool
    due_at: datetime | None = None
    """When the email was due (`decision_rows.email_due_at`); None if not known."""


@dataclass(frozen=True)
class Snapshot:
    account: Account
    etag: str | None
    notes: dict[str, ChargeNote] = field(default_factory=dict)
    already_applied: bool = False
    pending: bool = False
    """Follow-up writes of an earlier decision may be unapplied (loaded without `finish`): do not
    decide on this snapshot."""
    finished: tuple[OutboxRow, ...] = ()
    """Outbox rows this load wrote while finishing an earlier decision: the loader carries them out."""
    assumed_new: frozenset[str] = frozenset()
    """Charges named by the event whose notes were assumed absent, not read (`load(assume_new=True)`)."""


class AccountRepository(Protocol):
    """What the service layer needs of account storage (Table Storage, or in memory for tests)."""

    def load(self, account_id: str, *, event_id: str | None = None, charge_ids: Sequence[str] = (),
             finish: bool = False, cached: bool = False, assume_new: bool = False) -> Snapshot: ...
    def applied(self, account_id: str, event_id: str) -> bool: ...
    def exists(self, account_id: str) -> bool: ...
    def commit(self, snapshot: Snapshot, decision: Decision, *, event_id: str | None = None,
               event_type: str | None = None, now: datetime) -> list[OutboxRow]: ...
    def pending_outbox(self, account_id: str, settled_for: timedelta = timedelta(0)) -> list[OutboxRow]: ...
    def delete_outbox(self, rows: Sequence[OutboxRow]) -> None: ...
    def open_email(self, account_id: str, key: str) -> OpenEmail: ...
    def close_email(self, account_id: str, record: MailRecord, entry: TimelineEntry, revision: int,
                    now: datetime) -> bool: ...
    def timeline(self, account_id: str) -> list[dict[str, Any]]: ...
    def timeline_page(self, account_id: str, *, limit: int, order: Order, cursor: Cursor | None,
                      revision: int) -> TimelinePage: ...
    def mail_record(self, account_id: str, key: str) -> dict[str, Any] | None: ...
    def redact(self, account_id: str, named: Iterable[str], replacement: str) -> list[str]: ...
    def charge_notes(self, account_id: str) -> list[ChargeNote]: ...


class AccountStore:
    def __init__(self, table: TableClient, faults: Faults | None = None) -> None:
        self.table = table
        self.faults = faults or Faults()
        self._cache: OrderedDict[str, tuple[Account, str]] = OrderedDict()
        self._cache_lock = threading.Lock()

    # -- reading ---------------------------------------------------------------------------------

    def load(self, account_id: str, *, event_id: str | None = None, charge_ids: Sequence[str] = (),
             finish: bool = False, cached: bool = False, assume_new: bool = False) -> Snapshot:
        """The account as committed. With `finish`, first apply what an earlier decision left to
        follow (a crash between its transactions): every path that decides loads so.

        `cached`: the account as this process last read or committed it, if it has it, without a
        request; only for a decision whose commit is certain (an event's, which always writes its
        marker), where the account row's ETag turns a stale copy into `ConcurrencyConflict`.
        `assume_new`: the notes of `charge_ids` that are not outstanding are not read but assumed
        absent (`Snapshot.assumed_new`); the commit then creates them, and one that exists after
        all fails it with `ConcurrencyConflict`, to decide again without assuming."""
        hit = self._cache_get(account_id) if cached and event_id is None else None
        if hit is not None:
            return Snapshot(hit[0], hit[1], self._notes(account_id, hit[0], charge_ids, assume_new),
                            assumed_new=self._new(hit[0], charge_ids) if assume_new else frozenset())
        row = self._get(account_id, ACCOUNT_ROW)
        finished: list[OutboxRow] = []
        for _ in range(FINISH_ROUNDS if finish else 0):
            if row is None or not row.get(FOLLOW_UPS):
                break
            finished += self._apply_follow_ups(account_id)
            self._clear_follow_ups(account_id, row.metadata["etag"])
            row = self._get(account_id, ACCOUNT_ROW)
        account = codec.account_of(
            account_id,
            codec.get_json(row, "state") if row else None,
            codec.get_json(row, "profile") if row else None,
        )
        etag = row.metadata["etag"] if row else None
        pending = bool(row.get(FOLLOW_UPS)) if row else False
        if etag is not None and not pending:
            self._cache_put(account_id, account, etag)
        if event_id is not None and self._get(account_id, marker_key(event_id)) is not None:
            return Snapshot(account, etag, already_applied=True, pending=pending, finished=tuple(finished))
        return Snapshot(account, etag, self._notes(account_id, account, charge_ids, assume_new), pending=pending,
                        finished=tuple(finished),
                        assumed_new=self._new(account, charge_ids) if assume_new else frozenset())

    def applied(self, account_id: str, event_id: str) -> bool:
        """Whether the event's marker is committed (its decision took effect)."""
        return self._get(account_id, marker_key(event_id)) is not None

    def _notes(self, account_id: str, account: Account, charge_ids: Sequence[str],
               assume_new: bool) -> dict[str, ChargeNote]:
        notes: dict[str, ChargeNote] = {}
        if assume_new:
            return notes
        for charge_id in charge_ids:
            if charge_id in account.outstanding:
                continue
            note = self._get(account_id, f"charge|{charge_id}")
            if note is not None:
                notes[charge_id] = codec.note_of(charge_id, note)
        return notes

    @staticmethod
    def _new(account: Account, charge_ids: Sequence[str]) -> frozenset[str]:
        return frozenset(c for c in charge_ids if c not in account.outstanding)

    # -- the process's copies of account rows (see `load(cached=True)`) ---------------------------

    def _cache_get(self, account_id: str) -> tuple[Account, str] | None:
        with self._cache_lock:
            hit = self._cache.get(account_id)
            if hit is not None:
                self._cache.move_to_end(account_id)
            return hit

    def _cache_put(self, account_id: str, account: Account, etag: str) -> None:
        with self._cache_lock:
            self._cache[account_id] = (account, etag)
            self._cache.move_to_end(account_id)
            while len(self._cache) > CACHED_ACCOUNTS:
                self._cache.popitem(last=False)

    def forget_cached(self, account_id: str) -> None:
        with self._cache_lock:
            self._cache.pop(account_id, None)

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

    def open_email(self, account_id: str, key: str) -> OpenEmail:
        """The account, the email its outbox row `key` holds and whether it is already closed, in
        one query (the account row, `outbox|{key}` and `mail|{key}` of one partition)."""
        # The SDK finds `@name`s between spaces: none may touch a parenthesis.
        found = {r["RowKey"]: r for r in self.table.query_entities(
            "PartitionKey eq @pk and ( RowKey eq @account or RowKey eq @outbox or RowKey eq @mail )",
            parameters={"pk": account_id, "account": ACCOUNT_ROW, "outbox": f"outbox|{key}", "mail": f"mail|{key}"})}
        row = found.get(ACCOUNT_ROW)
        account = codec.account_of(account_id, codec.get_json(row, "state") if row else None,
                                   codec.get_json(row, "profile") if row else None)
        outbox = found.get(f"outbox|{key}")
        email, due_at = None, None
        if outbox is not None and outbox.get("kind") == "email":
            payload = codec.get_json(outbox, "payload")
            email = email_of(OutboxRow(account_id, key, "email", payload))
            due_at = email_due_at(payload, outbox.metadata.get("timestamp"))
        return OpenEmail(account, email, f"mail|{key}" in found, due_at)

    def close_email(self, account_id: str, record: MailRecord, entry: TimelineEntry, revision: int,
                    now: datetime) -> bool:
        """Close an email in one transaction: its `mail|` record (created: a twin's close comes
        first or not at all), its timeline row, and the outbox row gone. The account row is not
        rewritten. False when the email was closed already."""
        ops: list[tuple[Any, ...]] = [
            ("create", mail_entity(account_id, record, now)),
            ("upsert", email_timeline_entity(account_id, record.key, entry, revision), {"mode": UpdateMode.REPLACE}),
            ("delete", {"PartitionKey": account_id, "RowKey": f"outbox|{record.key}"}),
        ]
        try:
            self.table.submit_transaction(ops)
        except TableTransactionError as exc:
            if exc.status_code == 409:
                return False  # the mail record exists: closed by a twin
            if exc.status_code == 404:  # the outbox row is gone already: close without it
                try:
                    self.table.submit_transaction(ops[:2])
                except TableTransactionError as again:
                    if again.status_code == 409:
                        return False
                    raise
                return True
            raise
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

    def redact(self, account_id: str, named: Iterable[str], replacement: str) -> list[str]:
        """Rewrite the account's timeline and mail rows without its personal data, in batches of
        at most 100 writes. What goes is derived from the rows themselves as well as from `named`
        (the profile's contacts and card): every mail recipient, and every address or card summary
        in their free text, whatever the case (`Erasure`). Idempotent and resumable: a crash halfway
        is finished by running it again. Returns the ACS operation ids of the account's emails
        (their index rows go too)."""
        mail = list(self._rows(account_id, "mail"))
        timeline = [(row["RowKey"], codec.get_json(row, "entries")) for row in self._rows(account_id, "tl")]
        recipients = [str(row.get("recipient", "")) for row in mail]
        texts = [*(str(row.get("detail", "")) for row in mail), *(str(e["detail"]) for _, es in timeline for e in es)]
        erasure = Erasure.of([*named, *recipients], texts, replacement)
        ops = [("upsert", clean, {"mode": UpdateMode.REPLACE}) for row in mail
               if (clean := _erased_mail(row, erasure)) != dict(row)]
        for key, entries in timeline:
            clean_entries = [{**e, "detail": erasure.scrub(str(e["detail"]))} for e in entries]
            if clean_entries != entries:
                entity: dict[str, Any] = {"PartitionKey": account_id, "RowKey": key}
                codec.put_json(entity, "entries", clean_entries)
                ops.append(("upsert", entity, {"mode": UpdateMode.REPLACE}))
        for start in range(0, len(ops), MAX_BATCH):
            if start:
                self.faults.between_transactions()
            self.table.submit_transaction(ops[start:start + MAX_BATCH])
        return [o for row in mail if (o := str(row.get("operationId", "")))]

    def _rows(self, account_id: str, prefix: str) -> Iterable[Any]:
        """The account's rows whose keys start with `{prefix}|`."""
        return self.table.query_entities("PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                                         parameters={"pk": account_id, "lo": f"{prefix}|", "hi": f"{prefix}}}"})

    def timeline_page(self, account_id: str, *, limit: int, order: Order, cursor: Cursor | None,
                      revision: int) -> TimelinePage:
        """A page of the timeline (`shared.adapters.store.timeline`)."""
        return timeline_page(self.table, account_id, limit=limit, order=order, cursor=cursor, revision=revision)

    def charge_notes(self, account_id: str) -> list[ChargeNote]:
        rows = self.table.query_entities(
            "PartitionKey eq @pk and RowKey ge 'charge|' and RowKey lt 'charge}'", parameters={"pk": account_id},
        )
        return [codec.note_of(r["RowKey"][len("charge|"):], r) for r in rows]

    # -- writing ---------------------------------------------------------------------------------

    def commit(self, snapshot: Snapshot, decision: Decision, *, event_id: str | None = None,
               event_type: str | None = None, now: datetime) -> list[OutboxRow]:
        """Write the decision exactly once; return the outbox rows for this run to carry out.

        What fits one transaction goes in one. Otherwise the first transaction commits the account
        row, the marker and the rest packed into continuation rows, and this run applies them
        (a crash in between leaves them to the next run that loads the account to decide).
        Raises `ConcurrencyConflict`, `AlreadyApplied`, `DecisionTooLarge`."""
        pk = decision.account.account_id
        rows = rows_of(pk, decision, now)
        head = [marker_entity(pk, event_id, event_type, now)] if event_id is not None else []
        account_row = account_entity(decision.account, follow_ups=snapshot.pending)
        upserts, follow = split(account_row, head, rows, decision.account.revision)
        if snapshot.assumed_new and (follow or snapshot.assumed_new - {n.charge_id for n in decision.notes}):
            # Only a note it creates can prove a charge new: otherwise decide again on read notes.
            raise ConcurrencyConflict("a charge assumed new is not proven new by this decision's transaction")
        new_notes = {f"charge|{c}" for c in snapshot.assumed_new}
        writes = [("create", e) if e["RowKey"] in new_notes else ("upsert", e, {"mode": UpdateMode.REPLACE})
                  for e in upserts]
        try:
            result = self._submit([self._account_op(snapshot, account_row), *_creates(head), *writes],
                                  has_marker=bool(head))
        except Exception:
            self.forget_cached(pk)
            raise
        count_transitions(snapshot.account, decision.account)  # committed: contract §6 `billing.transitions`
        carry = rows.outbox
        if follow:
            self.forget_cached(pk)
            self.faults.between_transactions()
            carry = self._apply_follow_ups(pk)  # those a twin applied first are the twin's to carry out
            self._clear_follow_ups(pk, result[0]["etag"])
        else:
            self._cache_put(pk, decision.account, result[0]["etag"])
        # Closed by the `mail|` rows just committed; deleting the outbox rows is tidying.
        self.delete_outbox([OutboxRow(pk, record.key, "email", {}) for record in decision.mail])
        return carry

    def _apply_follow_ups(self, account_id: str) -> list[OutboxRow]:
        """Apply every continuation row still there, each in one transaction with its own deletion;
        return the outbox rows this run wrote. A row a twin applied meanwhile is gone, which fails
        our transaction as a whole: nothing of it is written twice."""
        mine: list[OutboxRow] = []
        for row in self.table.query_entities(
                "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                parameters={"pk": account_id, "lo": CONTINUATION_PREFIX, "hi": "cont}"}):
            writes = writes_in(row)
            try:
                self.table.submit_transaction([*_upserts(writes),
                                               ("delete", {"PartitionKey": account_id, "RowKey": row["RowKey"]})])
            except TableTransactionError as exc:
                if exc.status_code == 404:
                    continue  # a twin applied it first
                raise
            mine += [r for r in map(outbox_of, writes) if r is not None]
        return mine

    def _clear_follow_ups(self, account_id: str, etag: str) -> None:
        """Lower the flag once nothing follows; a decision committed meanwhile wrote its own."""
        self.forget_cached(account_id)
        with contextlib.suppress(HttpResponseError):
            self.table.update_entity({"PartitionKey": account_id, "RowKey": ACCOUNT_ROW, FOLLOW_UPS: False},
                                     mode=UpdateMode.MERGE, etag=etag, match_condition=MatchConditions.IfNotModified)

    def _account_op(self, snapshot: Snapshot, entity: Entity) -> tuple[Any, ...]:
        if snapshot.etag is None:
            return ("create", entity)
        return ("update", entity, {"mode": UpdateMode.REPLACE, "etag": snapshot.etag,
                                   "match_condition": MatchConditions.IfNotModified})

    def _submit(self, ops: list[tuple[Any, ...]], *, has_marker: bool) -> list[Any]:
        try:
            return list(self.table.submit_transaction(ops))
        except TableTransactionError as exc:
            index = getattr(exc, "index", None)
            if exc.status_code == 412 or (exc.status_code == 409 and index == 0):
                raise ConcurrencyConflict(str(getattr(exc, "error_code", exc.status_code))) from exc
            if exc.status_code == 409 and has_marker and index == 1:
                raise AlreadyApplied() from exc
            if exc.status_code == 409:  # a note assumed new exists: decide again on it
                raise ConcurrencyConflict("a charge note assumed new exists") from exc
            raise

    def delete_outbox(self, rows: Sequence[OutboxRow]) -> None:
        """Clear carried-out rows, one `$batch` per account; a row already gone is no error."""
        by_account: dict[str, list[OutboxRow]] = {}
        for row in rows:
            by_account.setdefault(row.account_id, []).append(row)
        for account_id, mine in by_account.items():
            if len(mine) == 1:  # one row: a plain delete, without a transaction's multipart machinery
                with contextlib.suppress(ResourceNotFoundError):
                    self.table.delete_entity(account_id, f"outbox|{mine[0].key}")
                continue
            for start in range(0, len(mine), MAX_BATCH):
                chunk = mine[start:start + MAX_BATCH]
                try:
                    self.table.submit_transaction([("delete", {"PartitionKey": account_id,
                                                               "RowKey": f"outbox|{r.key}"}) for r in chunk])
                except (TableTransactionError, ResourceNotFoundError):
                    for r in chunk:  # one was gone already (a twin cleared it): delete the rest singly
                        with contextlib.suppress(ResourceNotFoundError):
                            self.table.delete_entity(account_id, f"outbox|{r.key}")


def _erased_mail(row: Any, erasure: Erasure) -> dict[str, Any]:
    """A mail record without its recipient and with its detail scrubbed: `{...row, "recipient": "[deleted]"}`."""
    return {**row, "recipient": erasure.replacement, "detail": erasure.scrub(str(row.get("detail", "")))}


def _creates(entities: Sequence[Entity]) -> list[tuple[Any, ...]]:
    return [("create", e) for e in entities]


def _upserts(entities: Sequence[Entity]) -> list[tuple[Any, ...]]:
    return [("upsert", e, {"mode": UpdateMode.REPLACE}) for e in entities]
