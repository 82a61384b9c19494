"""An in-memory account store with the same contract as `AccountStore`, for unit tests of the
service layer: markers dedupe events, versions stand in for ETags, and a decision too large for
one transaction is split by the same `decision_rows.split`, its continuation rows applied after a
`between_transactions` fault seam, each once."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.adapters.store import codec
from shared.adapters.store.account_store import (
    MAX_BATCH,
    AlreadyApplied,
    ConcurrencyConflict,
    OpenEmail,
    OutboxRow,
    Snapshot,
)
from shared.adapters.store.decision_rows import (
    CONTINUATION_PREFIX,
    Entity,
    account_entity,
    email_due_at,
    email_of,
    email_timeline_entity,
    mail_entity,
    mail_record_of,
    marker_entity,
    outbox_of,
    rows_of,
    split,
    writes_in,
)
from shared.adapters.store.timeline import PREFIX, Cursor, Order, TimelinePage
from shared.domain.decision import Decision, MailRecord
from shared.domain.effects import TimelineEntry
from shared.domain.erasure import Erasure
from shared.domain.model import Account, ChargeNote
from shared.faults import Faults


class InMemoryAccountStore:
    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self.accounts: dict[str, tuple[Account, str]] = {}
        self.markers: set[tuple[str, str]] = set()
        self.notes: dict[tuple[str, str], ChargeNote] = {}
        self.outbox: dict[tuple[str, str], OutboxRow] = {}
        self.timelines: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.continuations: dict[tuple[str, str], Entity] = {}
        self.flagged: set[str] = set()
        self.commits = 0
        self.mail: dict[tuple[str, str], MailRecord] = {}
        self.mail_rows: dict[tuple[str, str], dict[str, Any]] = {}  # the `mail|` rows as Table Storage keeps them
        self.written: dict[tuple[str, str], datetime] = {}

    def load(self, account_id: str, *, event_id: str | None = None, charge_ids: Sequence[str] = (),
             finish: bool = False, cached: bool = False, assume_new: bool = False) -> Snapshot:
        finished: list[OutboxRow] = []
        if finish and account_id in self.flagged:
            finished = self._apply_follow_ups(account_id)
            self.flagged.discard(account_id)
        found = self.accounts.get(account_id)
        account, etag = found if found else (Account(account_id), None)
        pending = account_id in self.flagged
        if event_id is not None and (account_id, event_id) in self.markers:
            return Snapshot(account, etag, already_applied=True, pending=pending, finished=tuple(finished))
        new = frozenset(c for c in charge_ids if c not in account.outstanding)
        if assume_new:
            return Snapshot(account, etag, {}, pending=pending, finished=tuple(finished), assumed_new=new)
        notes = {c: self.notes[(account_id, c)] for c in new if (account_id, c) in self.notes}
        return Snapshot(account, etag, notes, pending=pending, finished=tuple(finished))

    def applied(self, account_id: str, event_id: str) -> bool:
        return (account_id, event_id) in self.markers

    def exists(self, account_id: str) -> bool:
        return account_id in self.accounts

    def commit(self, snapshot: Snapshot, decision: Decision, *, event_id: str | None = None,
               event_type: str | None = None, now: datetime) -> list[OutboxRow]:
        pk = decision.account.account_id
        current = self.accounts.get(pk)
        if (current[1] if current else None) != snapshot.etag:
            raise ConcurrencyConflict("version changed")
        if event_id is not None and (pk, event_id) in self.markers:
            raise AlreadyApplied()
        rows = rows_of(pk, decision, now)
        head = [marker_entity(pk, event_id, event_type, now)] if event_id is not None else []
        upserts, follow = split(account_entity(decision.account, follow_ups=snapshot.pending), head, rows,
                                decision.account.revision)
        if snapshot.assumed_new and (follow or snapshot.assumed_new - {n.charge_id for n in decision.notes}
                                     or any((pk, c) in self.notes for c in snapshot.assumed_new)):
            raise ConcurrencyConflict("a charge assumed new is not proven new")
        # the first transaction
        self.commits += 1
        self.accounts[pk] = (replace(decision.account), str(self.commits))
        if event_id is not None:
            self.markers.add((pk, event_id))
        if follow or snapshot.pending:
            self.flagged.add(pk)
        for entity in upserts:
            self._put(pk, entity)
        carry = rows.outbox
        if follow:
            self.faults.between_transactions()
            carry = self._apply_follow_ups(pk)
            self.flagged.discard(pk)
        for record in decision.mail:
            self.outbox.pop((pk, record.key), None)
        return carry

    def _apply_follow_ups(self, pk: str) -> list[OutboxRow]:
        mine: list[OutboxRow] = []
        for key in sorted(k for k in self.continuations if k[0] == pk):
            writes = writes_in(self.continuations.pop(key))
            for entity in writes:
                self._put(pk, entity)
            mine += [r for r in map(outbox_of, writes) if r is not None]
        return mine

    def _put(self, pk: str, entity: Entity) -> None:
        """One upsert, as Table Storage would store it, into the typed dictionaries."""
        rk = str(entity["RowKey"])
        kind, _, key = rk.partition("|")
        if rk.startswith(CONTINUATION_PREFIX):
            self.continuations[(pk, rk)] = entity
        elif kind == "charge":
            self.notes[(pk, key)] = codec.note_of(key, entity)
        elif kind == "tl":
            self.timelines[(pk, key)] = codec.get_json(entity, "entries")  # `key` sorts as the RowKey does
        elif kind == "mail":
            self.mail[(pk, key)] = mail_record_of(entity)
            self.mail_rows[(pk, key)] = dict(entity)
        else:
            row = outbox_of(entity)
            assert row is not None, rk
            self.outbox[(pk, key)] = row
            self.written[(pk, key)] = datetime.now(UTC)

    def open_email(self, account_id: str, key: str) -> OpenEmail:
        found = self.accounts.get(account_id)
        row = self.outbox.get((account_id, key))
        email = email_of(row) if row is not None and row.kind == "email" else None
        due_at = email_due_at(row.payload, self.written.get((account_id, key))) if email and row else None
        return OpenEmail(found[0] if found else Account(account_id), email, (account_id, key) in self.mail, due_at)

    def close_email(self, account_id: str, record: MailRecord, entry: TimelineEntry, revision: int,
                    now: datetime) -> bool:
        if (account_id, record.key) in self.mail:
            return False
        self._put(account_id, mail_entity(account_id, record, now))
        self._put(account_id, email_timeline_entity(account_id, record.key, entry, revision))
        self.outbox.pop((account_id, record.key), None)
        return True

    def pending_outbox(self, account_id: str, settled_for: timedelta = timedelta(0)) -> list[OutboxRow]:
        cutoff = datetime.now(UTC) - settled_for
        return [r for (pk, key), r in sorted(self.outbox.items())
                if pk == account_id and self.written[(pk, key)] <= cutoff]

    def delete_outbox(self, rows: Sequence[OutboxRow]) -> None:
        for row in rows:
            self.outbox.pop((row.account_id, row.key), None)

    def timeline(self, account_id: str) -> list[dict[str, Any]]:
        return [e for (pk, _), entries in sorted(self.timelines.items()) if pk == account_id for e in entries]

    def charge_notes(self, account_id: str) -> list[ChargeNote]:
        return [n for (pk, _), n in sorted(self.notes.items()) if pk == account_id]

    def mail_record(self, account_id: str, key: str) -> dict[str, Any] | None:
        row = self.mail_rows.get((account_id, key))
        return dict(row) if row is not None else None

    def timeline_page(self, account_id: str, *, limit: int, order: Order, cursor: Cursor | None,
                      revision: int) -> TimelinePage:
        """A page as `shared.adapters.store.timeline.timeline_page` reads it from the rows."""
        rows = [(PREFIX + key, list(entries)) for (pk, key), entries in sorted(self.timelines.items())
                if pk == account_id]
        if order == "oldest":
            rows = [r for r in rows if cursor is None or r[0] >= cursor.row]
        else:
            hi = cursor.row + " " if cursor else f"{PREFIX}{revision + 1:012d}"  # the cursor's row, none after
            rows = [(key, entries[::-1]) for key, entries in reversed(rows) if key < hi]
        taken: list[dict[str, Any]] = []
        for key, row_entries in rows:
            skip = cursor.skip if cursor is not None and key == cursor.row else 0
            room = limit - len(taken)
            if room == 0:
                return TimelinePage(taken, Cursor(key, skip, order))
            page = row_entries[skip:skip + room]
            taken += page
            if skip + len(page) < len(row_entries):
                return TimelinePage(taken, Cursor(key, skip + len(page), order))
        return TimelinePage(taken, None)

    def redact(self, account_id: str, named: Iterable[str], replacement: str) -> list[str]:
        """As `AccountStore.redact`: mail rows and timeline rows rewritten, batches of 100 writes
        with the `between_transactions` seam between them."""
        mail = [(key, row) for (pk, key), row in sorted(self.mail_rows.items()) if pk == account_id]
        timeline = [(key, entries) for (pk, key), entries in sorted(self.timelines.items()) if pk == account_id]
        recipients = [str(row.get("recipient", "")) for _, row in mail]
        texts = [*(str(row.get("detail", "")) for _, row in mail),
                 *(str(e["detail"]) for _, es in timeline for e in es)]
        erasure = Erasure.of([*named, *recipients], texts, replacement)
        writes: list[tuple[str, str, Any]] = []
        for key, row in mail:
            clean = {**row, "recipient": erasure.replacement, "detail": erasure.scrub(str(row.get("detail", "")))}
            if clean != row:
                writes.append(("mail", key, clean))
        for key, entries in timeline:
            clean_entries = [{**e, "detail": erasure.scrub(str(e["detail"]))} for e in entries]
            if clean_entries != entries:
                writes.append(("tl", key, clean_entries))
        for start in range(0, len(writes), MAX_BATCH):
            if start:
                self.faults.between_transactions()
            for kind, key, value in writes[start:start + MAX_BATCH]:
                if kind == "mail":
                    self.mail_rows[(account_id, key)] = value
                    self.mail[(account_id, key)] = mail_record_of(value)
                else:
                    self.timelines[(account_id, key)] = value
        return [o for _, row in mail if (o := str(row.get("operationId", "")))]
