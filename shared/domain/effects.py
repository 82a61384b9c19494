"""What a decision asks the world to do, as plain data.

The shell writes these as outbox rows in the same transaction as the new state, then carries
them out; each has a deterministic key, so a retried decision produces the same rows and the
outbox (not the caller) guarantees at most one email per kind and occasion and exactly one
lifecycle event per transition.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

LifecycleEventType = Literal[
    "subscription.past_due", "subscription.disabled", "subscription.reactivated",
    "subscription.canceled", "subscription.data_deleted",
]
EmailKind = Literal[
    "payment_failed", "payment_reminder", "disable_warning", "service_disabled", "payment_settled",
    "service_canceled", "deletion_warning", "data_deleted", "contact_changed", "card_expiring",
]


_MAIL_NAMESPACE = uuid.UUID("6f1c2a52-8d1e-4c55-9a57-3f0c0b7e9a41")
EMAIL_KEY = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
"""An email's key as `SendEmail.key` writes it, which is also its ACS operation id: a UUID (uuid5 of
its kind, occasion and recipient) in lower-case ASCII hex."""


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class EmitLifecycleEvent:
    account_id: str
    subscription_id: str
    type: LifecycleEventType
    reason: str
    effective_at: datetime
    occasion: str

    @property
    def key(self) -> str:
        """Also the CloudEvent `id`, so a consumer can recognise a repeat."""
        return f"evt-{short_hash(f'{self.account_id}|{self.subscription_id}|{self.type}|{self.occasion}')}"


@dataclass(frozen=True)
class SendEmail:
    account_id: str
    kind: EmailKind
    occasion: str
    recipient: str
    subscription_ids: tuple[str, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict, compare=False)  # JSON-able

    @property
    def key(self) -> str:
        """Also the ACS operation id (a UUID, as ACS requires): a resend after a crash is recognised by
        ACS, not delivered twice."""
        name = f"{self.account_id}|{self.kind}|{self.occasion}|{self.recipient.lower()}"
        return str(uuid.uuid5(_MAIL_NAMESPACE, name))


@dataclass(frozen=True)
class UpdateIndex:
    """Keep a cross-account index (another partition, so not in the decision's transaction) in
    step with the account: `due` and `retention` point the dunning and retention sweeps at accounts
    with work due; `disabled`
    lists accounts with disabled subscriptions for the reconciliation sweep. Both are hints."""

    account_id: str
    index: Literal["due", "retention", "disabled"]
    at: datetime | None
    present: bool
    revision: int

    @property
    def key(self) -> str:
        return f"idx-{short_hash(f'{self.account_id}|{self.index}|{self.revision}')}"


@dataclass(frozen=True)
class IndexContact:
    """Keep the address index (mailbox -> the accounts that list it as a billing contact) in step
    with the account: a delivery report names only the address. Another partition, so carried out
    from the outbox; the revision orders late deliveries of these rows."""

    account_id: str
    address: str  # as `mailbox()` spells it
    listed: bool
    revision: int

    @property
    def key(self) -> str:
        return f"idx-{short_hash(f'{self.account_id}|contact|{self.address}|{self.revision}')}"


Effect = EmitLifecycleEvent | SendEmail | UpdateIndex | IndexContact


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str
    detail: str
    subscription_id: str | None = None
