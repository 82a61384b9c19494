"""From an email outbox row and the account as it is now, to the rendered email.

Rendering happens at send time, from the facts the decision recorded (the amount that failed,
the dates it announced) plus the account's current names and balance.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from shared.adapters.mailer.protocol import OutgoingEmail
from shared.domain import schedule
from shared.domain.effects import SendEmail
from shared.domain.mailbox import same_mailbox
from shared.domain.model import Account, SubscriptionState
from shared.domain.money import Money, totals
from shared.domain.policy import DunningPolicy
from shared.notifications import EmailContext, PaidLine, SubscriptionLine, render_email
from shared.settings import Settings
from shared.web.billing_links import billing_link


def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def compose(account: Account, email: SendEmail, settings: Settings, policy: DunningPolicy,
            now: datetime) -> OutgoingEmail:
    """The email one outbox row stands for. ValueError if it cannot be written (data deleted)."""
    profile = account.profile
    if profile is None:
        raise ValueError("the account's customer data is gone")
    facts: dict[str, Any] = email.facts
    sub_ids = email.subscription_ids
    subs = [account.subscriptions[s] for s in sub_ids if s in account.subscriptions]
    names: dict[str, str] = facts.get("names") or {}  # deleted subscriptions' names travel with the email
    lines = tuple(
        SubscriptionLine(s.subscription_id, names.get(s.subscription_id, s.name),
                         tuple(_owed(account, s.subscription_id).values()))
        for s in subs
    )
    first = subs[0] if subs else None
    pauses = account.pauses
    ctx = EmailContext(
        account_id=account.account_id,
        display_name=profile.display_name,
        subscriptions=lines,
        balance=tuple(m for _, m in sorted(account.balance().items())),
        update_payment_url=billing_link(settings.billing_page_url, settings.link_signing_key, account.account_id,
                                        _link_version(account, profile.billing_contacts, email.recipient), now),
        support_url=settings.support_url,
        disable_at=_dt(facts.get("disableAt")) or (schedule.disable_at(first, policy, pauses) if first else None),
        cancel_at=_dt(facts.get("cancelAt")) or (schedule.cancel_at(first, policy, pauses) if first else None),
        delete_at=_dt(facts.get("deleteAt")) or (schedule.delete_at(first, policy, pauses) if first else None),
        reason=facts.get("reason"),
        paid=tuple(PaidLine(p["chargeId"], p["subscriptionId"] or "", Money(int(p["minor"]), p["currency"]))
                   for p in facts.get("paid", [])),
        reactivated=tuple(facts.get("reactivated", [])),
        old_contacts=tuple(facts.get("oldContacts", [])),
        new_contacts=tuple(facts.get("newContacts", [])),
        days_left=facts.get("daysLeft"),
        already=_already(facts.get("state") or (str(first.state) if first else None)),
        data_kept=bool(first and first.legal_hold),
        card=" ".join(str(facts[k]) for k in ("brand", "last4") if facts.get(k)) or None,
        card_valid_through=(e - timedelta(microseconds=1)) if (e := _dt(facts.get("expiresAt"))) else None,
    )
    rendered = render_email(email.kind, profile.locale, ctx)
    return OutgoingEmail(email.recipient, rendered.subject, rendered.html, rendered.text,
                         (("X-Billing-Account", account.account_id), ("X-Billing-Email-Kind", email.kind)))


def _already(state: str | None) -> Literal["disabled", "canceled"] | None:
    """What a failure email must say of a service that is no longer merely past due."""
    if state == SubscriptionState.DISABLED:
        return "disabled"
    if state in (SubscriptionState.CANCELED, SubscriptionState.DELETED):
        return "canceled"
    return None


def _link_version(account: Account, contacts: tuple[str, ...], recipient: str) -> int | None:
    """The link version a billing link is made at: the account's, when the recipient is still one
    of its contacts; else none (`shared.web.billing_links.RETIRED`), so a mail still owed to a removed contact
    carries a link that has expired."""
    return account.link_version if any(same_mailbox(c, recipient) for c in contacts) else None


def _owed(account: Account, subscription_id: str) -> dict[str, Money]:
    return totals(c.remaining for c in account.outstanding_of(subscription_id))
