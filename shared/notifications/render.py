"""Billing emails: one HTML and one plain-text Jinja2 template per kind, texts from the locale catalog.

The templates hold layout only; every sentence comes from `locales/<locale>.toml` through `t()`,
already filled with dates and amounts formatted for the locale. HTML templates are autoescaped
(`.html`), plain-text ones are not (`.txt`): a customer's name is escaped in one and verbatim in the
other, and in both it is kept on a single line (`single_line`) so it cannot forge a line of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from shared.domain.effects import EmailKind
from shared.domain.model import Locale
from shared.domain.money import Money
from shared.notifications.catalog import catalog, catalogs
from shared.notifications.formatting import cldr_locale, format_date, format_money, format_money_list, single_line

EMAIL_KINDS: tuple[EmailKind, ...] = get_args(EmailKind)

DateField = Literal["disable_at", "cancel_at", "delete_at"]

# The date each kind announces (its next escalation); `next_step_at` stands in when it is not given.
DEADLINE: dict[EmailKind, DateField | None] = {
    "payment_failed": "disable_at",
    "payment_reminder": "disable_at",
    "disable_warning": "disable_at",
    "service_disabled": "cancel_at",
    "payment_settled": None,
    "service_canceled": "delete_at",
    "deletion_warning": "delete_at",
    "data_deleted": None,
    "contact_changed": None,
    "card_expiring": None,
}

# The call to action and its link to the hosted billing page. The data_deleted and contact_changed
# emails carry no billing link: the second also goes to the previous contacts, who may have left.
_BUTTON: dict[EmailKind, str | None] = {
    "payment_failed": "button.update",
    "payment_reminder": "button.update",
    "disable_warning": "button.update",
    "service_disabled": "button.update",
    "payment_settled": "button.view",
    "service_canceled": "button.pay",
    "deletion_warning": "button.pay",
    "data_deleted": None,
    "contact_changed": None,
    "card_expiring": "button.update",
}

# Decline codes of the contract (§1); an unknown one reads as `other`.
DECLINE_REASONS = (
    "card_declined",
    "insufficient_funds",
    "processing_error",
    "authentication_required",
    "card_expired",
    "lost_or_stolen",
    "other",
)

_SUBJECT_NAME_MAX = 60


def links_to_billing_page(kind: EmailKind) -> bool:
    """Whether the email of this kind carries `update_payment_url`."""
    return _BUTTON[kind] is not None


@dataclass(frozen=True)
class SubscriptionLine:
    subscription_id: str
    name: str
    outstanding: tuple[Money, ...]


@dataclass(frozen=True)
class PaidLine:
    charge_id: str
    subscription_id: str
    amount: Money


@dataclass(frozen=True)
class EmailContext:
    account_id: str
    display_name: str
    subscriptions: tuple[SubscriptionLine, ...]  # the subscriptions this email is about
    balance: tuple[Money, ...]  # total owed, one per currency
    update_payment_url: str  # signed link to the hosted billing page
    support_url: str
    next_step_at: datetime | None = None  # the next escalation date, when the specific one is not given
    disable_at: datetime | None = None
    cancel_at: datetime | None = None
    delete_at: datetime | None = None  # data deletion date
    reason: str | None = None  # decline reason code: card_declined, insufficient_funds, ...
    paid: tuple[PaidLine, ...] = ()  # payment_settled: what was paid
    reactivated: tuple[str, ...] = ()  # payment_settled: subscription ids that are active again
    old_contacts: tuple[str, ...] = ()  # contact_changed
    new_contacts: tuple[str, ...] = ()
    days_left: int | None = None  # deletion_warning: 30, 7 or 1
    already: Literal["disabled", "canceled"] | None = None  # payment_failed: the service is already this
    data_kept: bool = False  # service_canceled: a legal hold keeps the data, so there is no deletion date
    card: str | None = None  # card_expiring: the saved card ("visa ending 4242")
    card_valid_through: datetime | None = None  # card_expiring: the last day of its expiry month


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class _SubscriptionRow:
    label: str  # "Contoso Web (sub-1)"
    name: str
    id: str
    amounts: tuple[str, ...]
    amounts_text: str


@dataclass(frozen=True)
class _PaidRow:
    charge_id: str
    subscription: str
    amount: str


_TEMPLATES = Path(__file__).with_name("templates")

_ENV = Environment(
    loader=FileSystemLoader(_TEMPLATES),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    auto_reload=False,
)

catalogs()  # load and cross-check both locales now: a broken translation fails at start


def render_email(kind: EmailKind, locale: Locale, ctx: EmailContext) -> RenderedEmail:
    """Subject, HTML and plain text of one email; ValueError when the context lacks what it needs."""
    if kind not in EMAIL_KINDS:
        raise ValueError(f"unknown email kind {kind!r}")
    cldr_locale(locale)
    view = _view(kind, locale, ctx)
    return RenderedEmail(
        subject=str(view["subject"]),
        html=_ENV.get_template(f"{kind}.html").render(view),
        text=_ENV.get_template(f"{kind}.txt").render(view),
    )


def _view(kind: EmailKind, locale: Locale, ctx: EmailContext) -> dict[str, object]:
    t: Callable[..., str] = catalog(locale).text
    name = single_line(ctx.display_name)

    def date(d: datetime | None) -> str | None:
        return None if d is None else format_date(d, locale)

    dates: dict[str, str | None] = {
        "disable_at": date(ctx.disable_at),
        "cancel_at": date(ctx.cancel_at),
        "delete_at": date(ctx.delete_at),
    }
    deadline_field = _deadline_field(kind, ctx)
    deadline: str | None = None
    if deadline_field is not None:
        deadline = dates[deadline_field] or date(ctx.next_step_at)
        if deadline is None:
            raise ValueError(f"a {kind} email needs {deadline_field} (or next_step_at)")
        dates[deadline_field] = deadline
    card_valid_through = ctx.card_valid_through or ctx.next_step_at
    if kind == "card_expiring" and card_valid_through is None:
        raise ValueError("a card_expiring email needs card_valid_through (or next_step_at)")
    if kind == "deletion_warning" and (ctx.days_left is None or ctx.days_left < 0):
        raise ValueError("a deletion_warning email needs days_left (0 or more)")

    button_key = _BUTTON[kind]
    if button_key == "button.pay" and not ctx.balance:
        button_key = "button.view"
    if button_key is not None:
        _check_url(ctx.update_payment_url, "update_payment_url")
    _check_url(ctx.support_url, "support_url")

    names = {s.subscription_id: single_line(s.name) for s in ctx.subscriptions}
    subscriptions = [
        _SubscriptionRow(
            label=t("common.subscription", name=single_line(s.name), id=single_line(s.subscription_id)),
            name=single_line(s.name),
            id=single_line(s.subscription_id),
            amounts=tuple(format_money(m, locale) for m in s.outstanding),
            amounts_text=format_money_list(s.outstanding, locale),
        )
        for s in ctx.subscriptions
    ]
    paid = [
        _PaidRow(
            charge_id=single_line(p.charge_id),
            subscription=names.get(p.subscription_id, single_line(p.subscription_id)),
            amount=format_money(p.amount, locale),
        )
        for p in ctx.paid
    ]
    paid_totals = _totals(p.amount for p in ctx.paid)

    reason = None
    if ctx.reason is not None:
        code = ctx.reason if ctx.reason in DECLINE_REASONS else "other"
        reason = t(f"reason.{code}")

    subject_name = name if len(name) <= _SUBJECT_NAME_MAX else name[: _SUBJECT_NAME_MAX - 1] + "…"
    return {
        "t": t,
        "lang": locale,
        "kind": kind,
        "already": ctx.already,
        "data_kept": ctx.data_kept,
        "subject": t(f"{kind}.subject_undated" if kind == "service_canceled" and ctx.data_kept else f"{kind}.subject",
                     name=subject_name, date=deadline),
        "name": name,
        "account_id": single_line(ctx.account_id),
        **dates,
        "deadline": deadline,
        "days_left": ctx.days_left,
        "reason": reason,
        "authenticate": ctx.reason == "authentication_required",
        "subscriptions": subscriptions,
        "balance": tuple(format_money(m, locale) for m in ctx.balance),
        "balance_text": format_money_list(ctx.balance, locale),
        "paid": paid,
        "paid_totals": tuple(format_money(m, locale) for m in paid_totals),
        "paid_totals_text": format_money_list(paid_totals, locale),
        "reactivated": [names.get(i, single_line(i)) for i in ctx.reactivated],
        "old_contacts": [single_line(c) for c in ctx.old_contacts],
        "new_contacts": [single_line(c) for c in ctx.new_contacts],
        "button": None if button_key is None else t(button_key),
        "update_payment_url": single_line(ctx.update_payment_url) if button_key is not None else None,
        "support_url": single_line(ctx.support_url),
        "card": single_line(ctx.card) if ctx.card else None,
        "card_valid_through": date(card_valid_through),
    }


def _deadline_field(kind: EmailKind, ctx: EmailContext) -> DateField | None:
    """A new failure on a service that is already disabled announces its cancellation; on one
    already canceled, no date (a payment no longer brings it back). A cancellation under a legal
    hold announces no deletion date: the data is kept, and deletion warnings come once it is lifted."""
    if kind == "payment_failed" and ctx.already == "disabled":
        return "cancel_at"
    if (kind == "payment_failed" and ctx.already == "canceled") or (kind == "service_canceled" and ctx.data_kept):
        return None
    return DEADLINE[kind]


def _totals(amounts: Iterable[Money]) -> tuple[Money, ...]:
    """One sum per currency, in the order the currencies first appear."""
    sums: dict[str, Money] = {}
    for m in amounts:
        sums[m.currency] = sums[m.currency] + m if m.currency in sums else m
    return tuple(sums.values())


def _check_url(url: str, field: str) -> None:
    """Only absolute http(s) links: a `javascript:` or relative link must never reach an email."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc or single_line(url) != url or " " in url:
        raise ValueError(f"{field} must be an absolute http(s) URL, got {url!r}")
