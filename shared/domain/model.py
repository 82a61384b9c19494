"""The account as the lifecycle sees it: plain immutable values, no I/O.

Personal data (`Profile`) is kept apart from the financial facts (`Charge`, credit, the
subscriptions' states) so retention cleanup can erase the one and keep the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Literal

from shared.domain.effects import short_hash
from shared.domain.money import Money, totals
from shared.domain.policy import DunningPolicy

Locale = Literal["en", "zh-CN"]

Span = tuple[datetime, datetime]
"""A paused interval of an account's dunning, [from, to)."""


class SubscriptionState(StrEnum):
    ACTIVE = "active"
    PAST_DUE = "past_due"
    DISABLED = "disabled"
    CANCELED = "canceled"
    DELETED = "deleted"

    @property
    def recoverable(self) -> bool:
        """Past due and disabled come back to active the moment nothing is owed; later ones do not."""
        return self in (SubscriptionState.PAST_DUE, SubscriptionState.DISABLED)


class ChargeStatus(StrEnum):
    OUTSTANDING = "outstanding"
    PAID = "paid"
    VOIDED = "voided"


@dataclass(frozen=True)
class PaymentMethod:
    """A gateway token and its display summary. Never a card number, never a CVV."""

    type: Literal["card", "invoice"]
    token: str | None = None
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None


@dataclass(frozen=True)
class Profile:
    display_name: str
    locale: Locale
    billing_contacts: tuple[str, ...]
    payment_method: PaymentMethod | None = None
    unreachable: Mapping[str, datetime] = field(default_factory=dict)
    """Billing contacts whose mail is not delivered, since the report that said so."""
    reported: Mapping[str, datetime] = field(default_factory=dict)
    """Per contact, the attempt time of the newest delivery report applied: an older one arriving
    late changes nothing."""
    undelivered: Mapping[str, datetime] = field(default_factory=dict)
    """Billing contacts an email was given up for (throttled past `EMAIL_GIVE_UP_AFTER_HOURS`, or
    failing until its retries ran out), since then; a later email sent to the contact clears it."""


@dataclass(frozen=True)
class Charge:
    """One charge of the billing engine. `applied` is what payments and credit covered so far."""

    charge_id: str
    subscription_id: str
    amount: Money
    status: ChargeStatus
    reason: str
    outstanding_since: datetime
    applied: int = 0
    settled_at: datetime | None = None
    settled_by: str | None = None

    @property
    def remaining(self) -> Money:
        return Money(self.amount.minor - self.applied, self.amount.currency)


@dataclass(frozen=True)
class ChargeNote:
    """What is remembered of a charge that is not outstanding: enough to make late or repeated
    events about it harmless (a `charge.failed` after its `charge.succeeded`)."""

    charge_id: str
    status: ChargeStatus
    subscription_id: str | None = None
    amount: Money | None = None
    settled_at: datetime | None = None
    settled_by: str | None = None
    paid_by_card: bool = False
    """A card payment is a fact about the charge: a second report of it must not count twice."""


@dataclass(frozen=True)
class Subscription:
    subscription_id: str
    name: str
    state: SubscriptionState = SubscriptionState.ACTIVE
    past_due_since: datetime | None = None
    disabled_at: datetime | None = None
    canceled_at: datetime | None = None
    deleted_at: datetime | None = None
    steps_done: frozenset[str] = frozenset()
    legal_hold: bool = False
    episode: int = 0
    """How many times it has gone past due: names each occasion, even under a frozen test clock."""
    policy: DunningPolicy | None = None
    """The schedule its current episode began under (`DunningPolicy.for_episode`); None outside an
    episode, and for episodes begun before policies were kept (the settings of the day apply)."""


@dataclass(frozen=True)
class PendingCharge:
    """A card charge recorded *before* the gateway is called, under a deterministic idempotency key.
    If we crash after the gateway charged, the record is how we ask the gateway instead of
    charging again."""

    idempotency_key: str
    amount: Money
    parts: tuple[tuple[str, int], ...]  # (charge id, minor units of it this charge pays)
    started_at: datetime


@dataclass(frozen=True)
class AwaitingCharge:
    """A card charge the customer's bank asked the customer to authenticate (3-D Secure): what it
    was planned to pay, and the gateway's charge (a PaymentIntent) the confirm step completes."""

    pending: PendingCharge
    gateway_charge_id: str | None


MAX_AWAITING = 20
"""Charges waiting for the customer's bank kept per account (the newest): each comes from a card
update the customer made, never from an automatic retry."""


@dataclass(frozen=True)
class Account:
    account_id: str
    profile: Profile | None = None
    subscriptions: Mapping[str, Subscription] = field(default_factory=dict)
    outstanding: Mapping[str, Charge] = field(default_factory=dict)
    credit: Mapping[str, int] = field(default_factory=dict)
    earmarks: Mapping[str, Money] = field(default_factory=dict)
    """Money paid for a named charge we have not heard of yet, held for it."""
    revision: int = 0
    """Counts committed decisions: orders the timeline even when the test clock stands still."""
    settling: Mapping[str, PendingCharge] = field(default_factory=dict)
    """Card charges in flight, one per currency at most."""
    settlement_attempts: int = 0
    next_due_at: datetime | None = None
    """When the dunning sweep next has work for this account (mirrored into the due index)."""
    next_retention_at: datetime | None = None
    """When the retention sweep next has work for this account (deletion warnings, deletions, erasure)."""
    retry_blocked: bool = False
    """The saved card was hard-declined: no automatic retries until a new card is saved."""
    pauses: tuple[Span, ...] = ()
    """The account's paused intervals of dunning, oldest first, never overlapping: the days of
    contract §3 count only the time outside them. Only those that can still move a date are kept."""
    paused_until: datetime | None = None
    """The end of the latest pause while its end is not yet recorded on the timeline."""
    card_saved_at: datetime | None = None
    """When the saved card was saved (None: before this was kept). A hard decline dated before it
    is about an earlier card."""
    card_noticed: str | None = None
    """`card_key` of the card its `card_expiring` notice went out for (or that had expired when it
    was due): saving that card again sends no second notice."""
    awaiting: Mapping[str, AwaitingCharge] = field(default_factory=dict)
    """Charges the product made that wait for the customer's bank, by idempotency key: only these
    (and the ones in `settling`) are recorded when the gateway reports them succeeded, so a
    charge the product did not make changes nothing (contract §2, Stripe webhooks)."""
    settle_again_at: datetime | None = None
    """A settlement stopped at its most charges per request (the processor's largest charge each)
    with money still owed: from this time the dunning sweep goes on charging the saved card,
    whatever the retry days (contract §2: "the rest is charged by the next request or the next
    sweep"). None once a settlement ends with nothing left for that reason."""
    link_version: int = 0
    """The version billing links must carry to open the billing page (`shared.web.billing_links`). Only ever
    grows: one step with every change of the billing contacts' mailboxes (registration included)
    and with erasure, so no older link works again, even when earlier contacts come back."""

    @property
    def registered(self) -> bool:
        return self.profile is not None

    def outstanding_of(self, subscription_id: str) -> list[Charge]:
        return [c for c in self.outstanding.values() if c.subscription_id == subscription_id]

    def balance(self) -> dict[str, Money]:
        """What is owed, one total per currency."""
        return totals(c.remaining for c in self.outstanding.values())

    def credit_money(self) -> dict[str, Money]:
        return {cur: Money(minor, cur) for cur, minor in sorted(self.credit.items()) if minor}

    @property
    def card_token(self) -> str | None:
        """The gateway token of the saved card, if the account pays by card."""
        pm = self.profile.payment_method if self.profile else None
        return pm.token if pm is not None and pm.type == "card" and pm.token else None

    @property
    def card(self) -> PaymentMethod | None:
        pm = self.profile.payment_method if self.profile else None
        return pm if pm is not None and pm.type == "card" and pm.token else None

    @property
    def card_key(self) -> str | None:
        """Names the saved card by what the customer holds: brand, last4 and expiry. The same card
        saved again (even under a new processor reference, as Stripe gives each save) keeps its
        name, so its `card_expiring` notice goes once; another card, or a renewed expiry, is new.
        Without brand and last4 (a gateway that did not say), the token stands in for them."""
        card = self.card
        if card is None:
            return None
        held = f"{card.brand}|{card.last4}" if card.last4 else f"token|{card.token}"
        return short_hash(f"{held}|{card.exp_year}-{card.exp_month}")[:16]

    def erasure_due_at(self) -> datetime | None:
        """Once every subscription's data is deleted, the account's own customer data goes too."""
        subs = list(self.subscriptions.values())
        if self.profile is None or not subs or any(s.state is not SubscriptionState.DELETED for s in subs):
            return None
        return max((s.deleted_at for s in subs if s.deleted_at), default=None)

    def with_subscription(self, sub: Subscription) -> Account:
        return replace(self, subscriptions={**self.subscriptions, sub.subscription_id: sub})
