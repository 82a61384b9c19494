"""Carrying out the effects a decision committed as outbox rows.

A row is deleted only after its effect has left, so a crash leaves it to be carried out by the
redelivery; what leaves carries the row's deterministic key (the CloudEvent `id`, the ACS
operation id) so the one unavoidable window — sent, then crashed before the delete — is
recognisable downstream.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shared.adapters.queues.protocol import Queues
from shared.adapters.store.account_store import AccountRepository, OutboxRow
from shared.adapters.store.decision_rows import outbox_row
from shared.adapters.store.protocol import ContactDirectory, DueIndexes
from shared.domain.effects import EMAIL_KEY, UpdateIndex
from shared.domain.identifiers import is_identifier
from shared.inbound.json_reader import JsonRefused, read_json

log = logging.getLogger(__name__)
EVENT_SOURCE = "/billing/past-due-lifecycle"


def lifecycle_cloudevent(payload: dict[str, Any]) -> str:
    """Contract §4: CloudEvents JSON on `subscription-lifecycle`."""
    return json.dumps({
        "specversion": "1.0",
        "id": payload["id"],
        "type": payload["type"],
        "source": EVENT_SOURCE,
        "subject": f"accounts/{payload['accountId']}/subscriptions/{payload['subscriptionId']}",
        "time": payload["effectiveAt"],
        "datacontenttype": "application/json",
        "data": {
            "accountId": payload["accountId"],
            "subscriptionId": payload["subscriptionId"],
            "reason": payload["reason"],
            "effectiveAt": payload["effectiveAt"],
        },
    }, separators=(",", ":"))




class MalformedHandoff(ValueError):
    """An `email-outbox` message that is not a hand-off: dead-lettered at once, never retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class EmailHandoff:
    """The `email-outbox` message naming the outbox row to send: JSON `{"accountId", "key"}`."""

    account_id: str
    key: str


def email_handoff(row: OutboxRow) -> str:
    return json.dumps({"accountId": row.account_id, "key": row.key})


def read_email_handoff(body: bytes | str) -> EmailHandoff:
    """The hand-off an `email-outbox` message carries, read with the one JSON reader; anything
    else (not JSON, ambiguous, another shape, an id storage keys cannot hold) is a
    `MalformedHandoff` naming what is wrong, so it is dead-lettered instead of retried forever."""
    try:
        doc = read_json(body)
    except JsonRefused as exc:
        raise MalformedHandoff(f"not an email hand-off: {exc.reason}") from exc
    if not isinstance(doc, dict):
        raise MalformedHandoff(f"not an email hand-off: a JSON {type(doc).__name__}, not an object")
    for name in ("accountId", "key"):
        if name not in doc:
            raise MalformedHandoff(f"not an email hand-off: {name} is missing")
    account_id, key = doc["accountId"], doc["key"]
    if not is_identifier(account_id):
        raise MalformedHandoff(f"not an email hand-off: accountId {account_id!r:.80} is not an account id")
    if not isinstance(key, str) or EMAIL_KEY.fullmatch(key) is None:
        raise MalformedHandoff(f"not an email hand-off: key {key!r:.80} is not an email's key")
    return EmailHandoff(account_id, key)


class Dispatcher(Protocol):
    def dispatch(self, rows: Iterable[OutboxRow]) -> None:
        """Carry out committed outbox rows, clearing each once its effect has left."""
        ...

    def update_index(self, hint: UpdateIndex) -> None:
        """Write an index hint now (hints are idempotent and repaired by the sweeps)."""
        ...


DISPATCH_ORDER = {"index": 0, "lifecycle": 1, "email": 2}
HANDOFF_THREADS = 16


class OutboxDispatcher:
    def __init__(self, accounts: AccountRepository, queues: Queues, indexes: DueIndexes,
                 contacts: ContactDirectory) -> None:
        self.accounts = accounts
        self.queues = queues
        self.indexes = indexes
        self.contacts = contacts
        self._carry: dict[str, Callable[[OutboxRow], bool]] = {
            "lifecycle": self._send_lifecycle,
            "email": self._hand_off_email,
            "index": self._update_index,
        }

    def dispatch(self, rows: Iterable[OutboxRow]) -> None:
        """Index hints first, then lifecycle events (in the order decided), then the email hand-offs,
        several at once: a decision for 200 subscriptions x 5 contacts hands off 1,000."""
        ordered = sorted(rows, key=lambda r: DISPATCH_ORDER[r.kind])
        emails = [r for r in ordered if r.kind == "email"]
        done: list[OutboxRow] = []
        try:
            for row in ordered[:len(ordered) - len(emails)]:
                if self._carry[row.kind](row):
                    done.append(row)
            if len(emails) > 1:
                with ThreadPoolExecutor(min(HANDOFF_THREADS, len(emails)), thread_name_prefix="handoff") as pool:
                    list(pool.map(self._hand_off_email, emails))
            elif emails:
                self._hand_off_email(emails[0])
        finally:  # what left is cleared even if a later row failed: the redelivery repeats only the rest
            self.accounts.delete_outbox(done)

    def _send_lifecycle(self, row: OutboxRow) -> bool:
        self.queues.send("subscription-lifecycle", lifecycle_cloudevent(row.payload))
        log.info("lifecycle event %s %s for %s/%s", row.payload["type"], row.key, row.account_id,
                 row.payload["subscriptionId"])
        return True

    def update_index(self, hint: UpdateIndex) -> None:
        self._update_index(outbox_row(hint.account_id, hint))

    def _update_index(self, row: OutboxRow) -> bool:
        p = row.payload
        if p["index"] in ("due", "retention") and p["at"]:
            self.indexes.mark_due(row.account_id, datetime.fromisoformat(p["at"]), p["index"])
        elif p["index"] == "disabled":
            self.indexes.set_disabled(row.account_id, bool(p["present"]))
        elif p["index"] == "contact":
            self.contacts.update(p["address"], row.account_id, bool(p["present"]), int(p["revision"]))
        return True

    def _hand_off_email(self, row: OutboxRow) -> bool:
        # Emails go out from their own queue so a slow or throttled send never holds up events;
        # the row stays until the sender has sent it (see functions/email_outbox.py).
        self.queues.send("email-outbox", email_handoff(row))
        return False
