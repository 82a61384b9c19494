"""What the hosted billing page tells the customer after they saved a card: what was paid, which
services are back, and, when the card paid only part of what is owed (the API's `settled: false`
with `remaining`, or a decline, refusal or unanswered charge in one currency while another was
paid), what is still owed in each currency and why.

Texts come from the locale catalogs (`page.*`); amounts are written as CLDR writes them in the
account's language (`¥500` in `en`, `JP¥500` in `zh-CN`). Everything here is plain text: the
template escapes it.
"""

from __future__ import annotations

from shared.domain.declines import WAITS_FOR_CUSTOMER, contract_reason
from shared.domain.model import Account, Locale
from shared.notifications.catalog import catalog
from shared.notifications.formatting import format_money
from shared.services.settle_account import CardUpdate, Settlement
from shared.web.billing_form import Notice, Owed


def card_update_notices(update: CardUpdate, locale: Locale, account: Account) -> list[Notice]:
    """The notices for the page shown after a card update; `account` as it is afterwards."""
    t = catalog(locale).text
    result = update.settlement
    if update.status == "card_declined":  # declined as it was saved: nothing saved, nothing charged
        return [Notice("error", t("page.declined", reason=t(f"reason.{contract_reason(update.detail)}")))]
    if update.status == "busy":
        return [Notice("error", t("page.busy"))]
    if update.status in ("gateway_unavailable", "card_rejected"):  # the card was not saved
        return [Notice("error", t("page.unavailable"))]
    notices = paid_notices(result, locale, account)
    owed = account.balance()
    if not owed:
        return notices
    if not result.charged and not result.unfinished:
        # Nothing was paid: one message says it all when every currency failed the same plain way
        # (the table below shows what is owed).
        if result.declines and not result.unanswered and not result.refusals:
            code = result.declines[0][1]
            if all(c == code for _, c in result.declines) and set(owed) <= {cur for cur, _ in result.declines}:
                return [Notice("error", t("page.declined", reason=t(f"reason.{contract_reason(code)}")))]
        if result.refusals and not result.declines and not result.unanswered:
            return [Notice("error", t("page.refused"))]
    return [*notices, remaining_notice(result, locale, account)]


def paid_notices(result: Settlement, locale: Locale, account: Account) -> list[Notice]:
    """What the settlement paid, and the services it brought back."""
    t = catalog(locale).text
    notices: list[Notice] = []
    if result.charged:
        amount = ", ".join(format_money(m, locale) for _, m in sorted(result.charged.items()))
        notices.append(Notice("ok", t("page.paid", amount=amount)))
    if result.reactivated:
        subs = account.subscriptions
        names = ", ".join(subs[s].name if s in subs else s for s in result.reactivated)
        notices.append(Notice("ok", t("page.reactivated", names=names)))
    return notices


def remaining_notice(result: Settlement, locale: Locale, account: Account) -> Notice:
    """What is still owed after the card was saved, one line per currency with its reason."""
    t = catalog(locale).text
    declined = dict(reversed(result.declines))  # the first decline of a currency is the one that counts
    refused = {cur for cur, _ in result.refusals}
    lines = []
    for currency, money in sorted(account.balance().items()):
        code = declined.get(currency)
        if currency in result.unanswered or (currency in account.settling and currency not in declined):
            why = t("page.remaining.in_flight")
        elif currency in declined and code in WAITS_FOR_CUSTOMER:
            why = t("page.remaining.authenticate")
        elif currency in declined:
            why = t("page.remaining.declined", reason=t(f"reason.{contract_reason(code)}"))
        elif currency in refused:
            why = t("page.remaining.refused")
        elif currency in result.unfinished:
            why = t("page.remaining.over_limit")
        else:
            why = t("page.remaining.not_charged")
        lines.append(Owed(currency, format_money(money, locale), why))
    return Notice("warning", t("page.remaining.heading"), owed=tuple(lines))
