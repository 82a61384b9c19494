"""The hosted billing page behind the signed link in every email: see what is owed, save a card,
and the whole account is settled at once (the same settlement the API runs)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs

import azure.functions as func

from shared.bootstrap import Services, services
from shared.gateway.protocol import contract_reason
from shared.intake import is_identifier
from shared.lifecycle.model import Account, Locale
from shared.links import verify
from shared.notifications.catalog import catalog
from shared.notifications.formatting import format_money
from shared.pages.billing import Notice, render_billing_page, render_link_invalid
from shared.registration import TOKEN_PATTERN, InvalidRequest, refuse_card_data
from shared.settlement import CardUpdate, update_card_and_settle

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the SDK leaves __init__ unannotated
HEADERS = {
    # No script at all; the form posts only to this page; nobody may frame it (clickjacking).
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the URL carries the signature
    "X-Content-Type-Options": "nosniff",
}


def _page(html: str, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(html, status_code=status, mimetype="text/html", charset="utf-8", headers=HEADERS)


@bp.function_name("billing_page")
@bp.route(route="billing/{accountId}", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
def billing_page(req: func.HttpRequest) -> func.HttpResponse:
    svc = services()
    account_id = str(req.route_params.get("accountId", ""))
    key = svc.settings.link_signing_key
    now = svc.lifecycle.clock.now()
    account = svc.store.load(account_id).account if is_identifier(account_id) else None
    profile = account.profile if account else None
    locale: Locale = profile.locale if profile else "en"
    if account is None or profile is None or not key or not verify(
            key, account_id, req.params.get("expires", ""), req.params.get("sig", ""), now):
        return _page(render_link_invalid(locale, svc.settings.support_url), 403)
    if req.method != "POST":
        return _page(render_billing_page(account, locale, svc.settings.support_url, []))
    return _submit(svc, req, account_id, locale)


def _submit(svc: Services, req: func.HttpRequest, account_id: str, locale: Locale) -> func.HttpResponse:
    t = catalog(locale).text
    fields = parse_qs(req.get_body().decode("utf-8", "replace")[:4096])
    try:
        refuse_card_data(fields)
    except InvalidRequest:
        return _again(svc, account_id, locale, t("page.card_data_refused"), 400)
    if any(len(values) > 1 for values in fields.values()):  # `token=a&token=b`: which is meant is ambiguous
        return _again(svc, account_id, locale, t("page.card_rejected"), 400)
    form = {k: v[0] for k, v in fields.items()}
    token = form.get("token", "").strip()
    if not re.fullmatch(TOKEN_PATTERN, token):
        return _again(svc, account_id, locale, t("page.card_rejected"), 400)
    if svc.gateway is None:
        return _again(svc, account_id, locale, t("page.unavailable"), 503)
    update = update_card_and_settle(svc.lifecycle, svc.gateway, svc.leases, account_id, token)
    if update.status == "card_rejected":
        return _again(svc, account_id, locale, t("page.card_rejected"), 400)
    account = svc.store.load(account_id).account
    return _page(render_billing_page(account, locale, svc.settings.support_url, _notices(update, locale, account)))


def _again(svc: Services, account_id: str, locale: Locale, error: str, status: int) -> func.HttpResponse:
    account = svc.store.load(account_id).account
    return _page(render_billing_page(account, locale, svc.settings.support_url, [Notice("error", error)],
                                     token_field_error=error), status)


def _notices(update: CardUpdate, locale: Locale, account: Account) -> list[Notice]:
    t = catalog(locale).text
    result = update.settlement
    if update.status == "declined":
        reason = result.declines[0][1] or "declined"
        return [Notice("error", t("page.declined", reason=t(f"reason.{contract_reason(reason)}")))]
    if update.status == "busy":
        return [Notice("error", t("page.busy"))]
    if update.status in ("gateway_unavailable", "outcome_unknown", "refused"):
        return [Notice("error", t("page.unavailable"))]
    notices: list[Notice] = []
    if result.charged:
        amount = ", ".join(format_money(m, locale) for _, m in sorted(result.charged.items()))
        notices.append(Notice("ok", t("page.paid", amount=amount)))
    if result.reactivated:
        subs = account.subscriptions
        names = ", ".join(subs[s].name if s in subs else s for s in result.reactivated)
        notices.append(Notice("ok", t("page.reactivated", names=names)))
    return notices
