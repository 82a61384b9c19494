"""Rendering the hosted billing page in the account's language (Jinja2, autoescaped).

The page is reached without a login, through the signed link in every email, so it shows only
what the customer needs to pay: names, states, amounts, the card's last digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from shared.domain.model import Account, Locale
from shared.domain.money import Money
from shared.notifications.catalog import catalog
from shared.notifications.formatting import format_money

_TEMPLATES = Path(__file__).with_name("templates")


@cache
def _env() -> Environment:
    return Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=select_autoescape(["html"]),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class Owed:
    """One line of what is still owed after a card update: the currency, its amount as the
    account's language writes it, and why it was not paid (`shared.web.billing_notices`)."""

    currency: str
    amount: str
    why: str


@dataclass(frozen=True)
class Notice:
    tone: str  # "ok", "warning", "error"
    text: str
    link: str | None = None
    link_text: str = ""
    owed: tuple[Owed, ...] = ()
    """Shown as a list under `text`: what is still owed, per currency, and why."""


def _money(monies: list[Money], locale: Locale) -> str:
    return ", ".join(format_money(m, locale) for m in sorted(monies, key=lambda m: m.currency))


def render_billing_page(account: Account, locale: Locale, support_url: str, notices: list[Notice],
                        form_token: str, token_field_error: str | None = None, form_action: str = "") -> str:
    """The page; `form_token` goes in the form's hidden field (`shared.web.billing_links.form_token`)."""
    t = catalog(locale).text
    profile = account.profile
    pm = profile.payment_method if profile else None
    rows = [
        {"name": s.name, "id": s.subscription_id, "state": t(f"page.state.{s.state}"), "raw_state": str(s.state),
         "owed": _money([c.remaining for c in account.outstanding_of(s.subscription_id)], locale)}
        for s in sorted(account.subscriptions.values(), key=lambda s: s.subscription_id)
    ]
    balance = list(account.balance().values())
    card = (t("page.card_on_file", brand=(pm.brand or "").title(), last4=pm.last4, month=pm.exp_month,
              year=pm.exp_year) if pm is not None and pm.type == "card" else t("page.no_card"))
    return _env().get_template("billing.html").render(
        lang=locale, t=t, title=t("page.title", name=profile.display_name if profile else account.account_id),
        rows=rows, balance=_money(balance, locale) if balance else None, card=card, notices=notices,
        support_url=support_url, token_field_error=token_field_error, form_token=form_token,
        form_action=form_action,
    )


def render_refusal(locale: Locale, support_url: str, message: str) -> str:
    """A page that only says why it cannot help, and links to support. `message` is a catalog key:
    `page.link_invalid`, `page.link_expired` or `page.form_refused`."""
    t = catalog(locale).text
    return _env().get_template("invalid.html").render(lang=locale, t=t, support_url=support_url,
                                                       message=t(message))
