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
from shared.telemetry import current_fields, parse_traceparent, producer, stored_or_current

log = logging.getLogger(__name__)
EVENT_SOURCE = "/billing/past-due-lifecycle"


def lifecycle_cloudevent(payload: dict[str, Any], trace: dict[str, str] | None = None) -> str:
    """Contract §4: CloudEvents JSON on `subscription-lifecycle`, with the distributed-tracing
    extension (`traceparent`, `tracestate`) of the trace that caused it when there is one (§6)."""
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
        **(trace or {}),
    }, separators=(",", ":"))




class MalformedHandoff(ValueError):
    """An `email-outbox` message that is not a hand-off: dead-lettered at once, never retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class EmailHandoff:
    """The `email-outbox` message naming the outbox row to send: JSON `{"accountId", "key"}`, and
    `slot` (ISO time) when the sender put it back with a slot of the email budget reserved for it
    (`shared/services/email.py`). Optionally `traceparent` / `tracestate`: the trace the sender
    continues (contract §6; a malformed one is ignored, never a reason to dead-letter)."""

    account_id: str
    key: str
    slot: datetime | None = None
    traceparent: str | None = None


def email_handoff(row: OutboxRow, trace: dict[str, str] | None = None) -> str:
    """The hand-off of `row`, carrying `trace` (by default the current trace's fields)."""
    return json.dumps({"accountId": row.account_id, "key": row.key,
                       **(current_fields() if trace is None else trace)})


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
    traceparent = doc.get("traceparent")
    return EmailHandoff(account_id, key, _slot(doc.get("slot")),
                        traceparent if parse_traceparent(traceparent) is not None else None)


def _slot(raw: Any) -> datetime | None:
    """A hand-off's reserved slot; one that cannot be read counts as none (a new one is reserved)."""
    if not isinstance(raw, str):
        return None
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


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
        here = current_fields()  # for rows written before they carried their decision's trace
        done: list[OutboxRow] = []
        try:
            for row in ordered[:len(ordered) - len(emails)]:
                if self._carry[row.kind](row):
                    done.append(row)
            if len(emails) > 1:
                with ThreadPoolExecutor(min(HANDOFF_THREADS, len(emails)), thread_name_prefix="handoff") as pool:
                    list(pool.map(lambda row: self._hand_off_email(row, here), emails))
            elif emails:
                self._hand_off_email(emails[0], here)
        finally:  # what left is cleared even if a later row failed: the redelivery repeats only the rest
            self.accounts.delete_outbox(done)

    def _send_lifecycle(self, row: OutboxRow) -> bool:
        p = row.payload
        with producer("subscription-lifecycle", p, {"cloudevents.event_id": row.key, "cloudevents.event_type":
                                                    p["type"], "billing.account_id": row.account_id}) as trace:
            self.queues.send("subscription-lifecycle", lifecycle_cloudevent(p, trace))
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

    def _hand_off_email(self, row: OutboxRow, here: dict[str, str] | None = None) -> bool:
        # Emails go out from their own queue so a slow or throttled send never holds up events;
        # the row stays until the sender has sent it (see functions/email_outbox.py). The hand-off
        # carries the trace of the decision that wrote the row.
        self.queues.send("email-outbox", email_handoff(row, stored_or_current(row.payload, here or {})))
        return False
