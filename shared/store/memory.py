"""An in-memory account store with the same contract as `AccountStore`, for unit tests of the
service layer: markers dedupe events, versions stand in for ETags."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.lifecycle.model import Account, ChargeNote
from shared.lifecycle.work import Decision, MailRecord
from shared.store import codec
from shared.store.accounts import AlreadyApplied, ConcurrencyConflict, OutboxRow, Snapshot, outbox_row


class InMemoryAccountStore:
    def __init__(self) -> None:
        self.accounts: dict[str, tuple[Account, str]] = {}
        self.markers: set[tuple[str, str]] = set()
        self.notes: dict[tuple[str, str], ChargeNote] = {}
        self.outbox: dict[tuple[str, str], OutboxRow] = {}
        self.timelines: dict[str, list[dict[str, Any]]] = {}
        self.commits = 0
        self.mail: dict[tuple[str, str], MailRecord] = {}
        self.written: dict[tuple[str, str], datetime] = {}

    def load(self, account_id: str, *, event_id: str | None = None, charge_ids: Sequence[str] = ()) -> Snapshot:
        found = self.accounts.get(account_id)
        account, etag = found if found else (Account(account_id), None)
        if event_id is not None and (account_id, event_id) in self.markers:
            return Snapshot(account, etag, already_applied=True)
        notes = {c: self.notes[(account_id, c)] for c in charge_ids
                 if c not in account.outstanding and (account_id, c) in self.notes}
        return Snapshot(account, etag, notes)

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
        self.commits += 1
        self.accounts[pk] = (replace(decision.account), str(self.commits))
        if event_id is not None:
            self.markers.add((pk, event_id))
        for note in decision.notes:
            self.notes[(pk, note.charge_id)] = note
        rows = [outbox_row(pk, e) for e in decision.effects]
        for row in rows:
            self.outbox[(pk, row.key)] = row
            self.written[(pk, row.key)] = datetime.now(UTC)
        for record in decision.mail:
            self.mail[(pk, record.key)] = record
            self.outbox.pop((pk, record.key), None)
        self.timelines.setdefault(pk, []).extend(
            {"at": t.at.isoformat(), "kind": t.kind, "subscriptionId": t.subscription_id, "detail": t.detail}
            for t in decision.timeline)
        return rows

    def pending_outbox(self, account_id: str, settled_for: timedelta = timedelta(0)) -> list[OutboxRow]:
        cutoff = datetime.now(UTC) - settled_for
        return [r for (pk, key), r in sorted(self.outbox.items())
                if pk == account_id and self.written[(pk, key)] <= cutoff]

    def delete_outbox(self, rows: Sequence[OutboxRow]) -> None:
        for row in rows:
            self.outbox.pop((row.account_id, row.key), None)

    def timeline(self, account_id: str) -> list[dict[str, Any]]:
        return list(self.timelines.get(account_id, []))

    def charge_notes(self, account_id: str) -> list[ChargeNote]:
        return [n for (pk, _), n in sorted(self.notes.items()) if pk == account_id]

    def write_notes(self, account_id: str, notes: Iterable[dict[str, Any]]) -> None:
        for n in notes:
            self.notes[(account_id, n["chargeId"])] = codec.note_of(n["chargeId"], n)
