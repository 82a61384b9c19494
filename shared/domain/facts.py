"""The facts that change an account: validated payment events, and operator/customer actions.

These are the core's inputs. Parsing the wire format into them is the shell's work
(`shared/inbound/cloudevents.py`); here they are already known to be well formed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from shared.domain.declines import DeclineReason
from shared.domain.money import Money

PaymentMethodKind = Literal["wire", "check", "card", "other"]


@dataclass(frozen=True)
class ChargeFailed:
    event_id: str
    account_id: str
    subscription_id: str
    charge_id: str
    amount: Money
    reason: DeclineReason
    time: datetime | None = None
    """The event's CloudEvents `time`: a hard decline is about the card saved at that time (§1)."""


@dataclass(frozen=True)
class ChargeSucceeded:
    event_id: str
    account_id: str
    subscription_id: str
    charge_id: str
    amount: Money


@dataclass(frozen=True)
class PaymentReceived:
    event_id: str
    account_id: str
    payment_id: str
    amount: Money
    method: PaymentMethodKind
    charge_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChargeVoided:
    event_id: str
    account_id: str
    charge_id: str


PaymentEvent = ChargeFailed | ChargeSucceeded | PaymentReceived | ChargeVoided


def charge_ids_of(event: PaymentEvent) -> tuple[str, ...]:
    """The charges an event names: the shell loads their notes before deciding."""
    if isinstance(event, PaymentReceived):
        return event.charge_ids
    return (event.charge_id,)


@dataclass(frozen=True)
class EventReceipt:
    """When and under which CloudEvent an event arrived (for the timeline)."""

    event_type: str
    occurred_at: datetime
