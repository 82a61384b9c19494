"""Texts of the portal alerts in the account view, in the account's locale.

An alert is one or more sentences from the locale catalog (`[alert.<code>]`), joined the way the
locale joins sentences; each sentence that needs a parameter is left out when it is not given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

from shared.domain.model import Locale
from shared.domain.money import Money
from shared.notifications.catalog import catalog
from shared.notifications.formatting import format_date, format_money_list, format_names, single_line

AlertCode = Literal[
    "payment_failed",
    "service_disabled",
    "service_canceled",
    "contact_unreachable",
    "payment_method_required",
    "email_undelivered",
    "card_expiring",
    "card_expired",
]
ALERT_CODES: tuple[AlertCode, ...] = get_args(AlertCode)


@dataclass(frozen=True)
class AlertParams:
    balance: tuple[Money, ...] = ()  # what is owed, one amount per currency
    subscriptions: tuple[str, ...] = ()  # names of the subscriptions the alert is about
    disable_at: datetime | None = None
    cancel_at: datetime | None = None
    delete_at: datetime | None = None  # data deletion date (service_canceled)
    contact: str | None = None  # the unreachable billing contact's address
    card: str | None = None  # card_expiring, card_expired: the saved card ("visa 4242")
    expires_at: datetime | None = None  # card_expiring, card_expired: the end of its expiry month


def alert_message(code: AlertCode, locale: Locale, params: AlertParams) -> str:
    """The alert's text, e.g. the source document's "We couldn't charge your credit card ..."."""
    if code not in ALERT_CODES:
        raise ValueError(f"unknown alert code {code!r}")
    cat = catalog(locale)
    section = f"alert.{code}"

    balance = format_money_list(params.balance, locale) if params.balance else None
    names = format_names(params.subscriptions, locale) if params.subscriptions else None

    def on(key: str, d: datetime | None) -> str | None:
        return None if d is None else cat.text(f"{section}.{key}", date=format_date(d, locale))

    def owed() -> str | None:
        return None if balance is None else cat.text(f"{section}.balance", amount=balance)

    def about(subjects: str | None, **named: object) -> str:
        if subjects is None:
            return cat.text(f"{section}.message")
        return cat.text(f"{section}.message_named", **named)

    sentences: list[str | None]
    if code == "payment_failed":
        sentences = [cat.text("common.source_message"), owed(), on("disable_on", params.disable_at)]
    elif code == "service_disabled":
        sentences = [
            about(names, names=names, count=len(params.subscriptions)),
            owed(),
            on("cancel_on", params.cancel_at),
        ]
    elif code == "service_canceled":
        sentences = [
            about(names, names=names, count=len(params.subscriptions)),
            on("delete_on", params.delete_at),
            owed(),
        ]
    elif code in ("contact_unreachable", "email_undelivered"):
        contact = None if params.contact is None else single_line(params.contact)
        sentences = [about(contact, contact=contact), cat.text(f"{section}.action")]
    elif code in ("card_expiring", "card_expired"):
        card = None if params.card is None else single_line(params.card)
        sentences = [about(card, card=card), on("expires_on", params.expires_at), cat.text(f"{section}.action")]
    else:
        sentences = [cat.text(f"{section}.message"), owed(), on("disable_on", params.disable_at)]
    return cat.text("common.sentence_separator").join(s for s in sentences if s)
