"""The hosted billing page behind the signed link in every email: see what is owed, save a card,
and the whole account is settled at once (the same settlement the API runs).

A link that is not ours is a 403; one of ours that expired or was made before the contacts last changed a 410
saying how to get a new one (`shared.web.billing_links`). A form post must carry the page's anti-forgery
token and must not come from another site (`Origin`, `Sec-Fetch-Site`): else a 403 page."""

from __future__ import annotations

import hmac
import re
from typing import NamedTuple
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import azure.functions as func

from functions.problems import SECURITY_HEADERS
from shared import telemetry
from shared.adapters.gateway.protocol import Authentication, ChargeResult, GatewayUnavailable
from shared.adapters.gateway.stripe import TOKEN_PATTERN as STRIPE_TOKEN_PATTERN
from shared.adapters.store.leases import LeaseBusy
from shared.bootstrap import Services, services
from shared.domain.identifiers import is_identifier
from shared.domain.model import Account, Locale
from shared.inbound.account_body import TOKEN_PATTERN, InvalidRequest, refuse_card_data
from shared.notifications.catalog import catalog
from shared.notifications.formatting import format_money
from shared.services.settle_account import Settlement, complete_authentication, update_card_and_settle
from shared.web.billing_form import Notice, render_billing_page, render_refusal
from shared.web.billing_links import LinkStatus, SignedLink, check, confirm_link, form_token
from shared.web.billing_notices import card_update_notices

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the SDK leaves __init__ unannotated
HEADERS = {
    # No script at all; the form posts only to this page; nobody may frame it (clickjacking).
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    # The URL carries the signature: other sites get at most the origin. Not `no-referrer`: under it
    # a browser sends `Origin: null` with the page's own form post, which is refused as cross-site.
    "Referrer-Policy": "strict-origin",
    **SECURITY_HEADERS,  # never cached, never sniffed, HTTPS only
}


def _page(html: str, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(html, status_code=status, mimetype="text/html", charset="utf-8", headers=HEADERS)


class _Opened(NamedTuple):
    """A billing link that checked out: whose account, in which language, and the link itself."""

    account_id: str
    account: Account
    locale: Locale
    link: SignedLink
    key: str


def _open(svc: Services, req: func.HttpRequest) -> _Opened | func.HttpResponse:
    """The account a page request's signed link opens, or the refusal page: 410 for one of ours
    that expired (or was made before the contacts last changed, or the account was erased), 403
    for any other (`shared.web.billing_links`)."""
    account_id = str(req.route_params.get("accountId", ""))
    key = svc.settings.link_signing_key
    account = svc.uow.accounts.load(account_id).account if is_identifier(account_id) else None
    profile = account.profile if account else None
    locale: Locale = profile.locale if profile else "en"
    link = SignedLink.from_query(req.params)
    status = LinkStatus.INVALID
    if key and account is not None:
        version = account.link_version if profile else None  # erased: every link has expired
        status = check(key, account_id, link, version, svc.uow.clock.now())
    if status is LinkStatus.EXPIRED:
        return _page(render_refusal(locale, svc.settings.support_url, "page.link_expired"), 410)
    if status is not LinkStatus.VALID or account is None or not key:
        return _page(render_refusal(locale, svc.settings.support_url, "page.link_invalid"), 403)
    return _Opened(account_id, account, locale, link, key)


@bp.function_name("billing_page")
@bp.route(route="billing/{accountId}", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
@telemetry.http_function("billing/{accountId}")
def billing_page(req: func.HttpRequest) -> func.HttpResponse:
    svc = services()
    opened = _open(svc, req)
    if isinstance(opened, func.HttpResponse):
        return opened
    account_id, account, locale, link, key = opened
    token = form_token(key, account_id, link)
    if req.method != "POST":
        return _page(render_billing_page(account, locale, svc.settings.support_url, [], token))
    if _cross_site(req, svc.settings.billing_page_url):
        return _page(render_refusal(locale, svc.settings.support_url, "page.form_refused"), 403)
    return _submit(svc, req, account_id, locale, token)


def _origin(url: str) -> str:
    """`scheme://host[:port]` as a browser writes an `Origin`: lower case, no default port; ""
    (no one's origin) for a URL that cannot be read."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:  # `http://[::1`: an IPv6 bracket left open in a Referer was a 500
        return ""
    host = (parts.hostname or "").lower()
    host = f"[{host}]" if ":" in host else host
    scheme = parts.scheme.lower()
    return f"{scheme}://{host}" if port in (None, {"http": 80, "https": 443}.get(scheme)) else f"{scheme}://{host}:{port}"


def _cross_site(req: func.HttpRequest, page_url: str) -> bool:
    """Whether the browser says the form was sent from another site: `Sec-Fetch-Site` other than
    same-origin or none (typed, bookmarked), or an `Origin` other than the configured page's
    (`BILLING_PAGE_URL`, where every emailed link points; `null` included), or, from a browser
    that sends no `Origin`, a `Referer` from elsewhere. Without any of them the anti-forgery token
    decides. The request's own `Host` is no proof: a DNS-rebinding page sends its own name there,
    with a matching `Origin` and `Sec-Fetch-Site: same-origin`."""
    site = (req.headers.get("sec-fetch-site") or "").strip().lower()
    if site and site not in ("same-origin", "none"):
        return True
    ours = _origin(page_url)
    origin = req.headers.get("origin")
    if origin is not None:
        return _origin(origin) != ours
    referer = req.headers.get("referer")
    return referer is not None and _origin(referer) != ours


def _submit(svc: Services, req: func.HttpRequest, account_id: str, locale: Locale,
            expected_form_token: str) -> func.HttpResponse:
    t = catalog(locale).text
    fields = parse_qs(req.get_body().decode("utf-8", "replace")[:4096])
    given = fields.get("form_token", [])
    if len(given) != 1 or not hmac.compare_digest(given[0].encode("utf-8", "replace"), expected_form_token.encode()):
        return _page(render_refusal(locale, svc.settings.support_url, "page.form_refused"), 403)
    try:
        refuse_card_data(fields)
    except InvalidRequest:
        return _again(svc, account_id, locale, t("page.card_data_refused"), 400, expected_form_token)
    if any(len(values) > 1 for values in fields.values()):  # `token=a&token=b`: which is meant is ambiguous
        return _again(svc, account_id, locale, t("page.card_rejected"), 400, expected_form_token)
    form = {k: v[0] for k, v in fields.items()}
    token = form.get("token", "").strip()
    pattern = STRIPE_TOKEN_PATTERN if svc.settings.payment_gateway == "stripe" else TOKEN_PATTERN
    if not re.fullmatch(pattern, token):
        return _again(svc, account_id, locale, t("page.card_rejected"), 400, expected_form_token)
    if svc.gateway is None:
        return _again(svc, account_id, locale, t("page.unavailable"), 503, expected_form_token)
    update = update_card_and_settle(svc.uow, svc.gateway, account_id, token)
    if update.status == "card_rejected":
        return _again(svc, account_id, locale, t("page.card_rejected"), 400, expected_form_token)
    account = svc.uow.accounts.load(account_id).account
    notices = card_update_notices(update, locale, account)  # what was paid, and what is still owed and why
    if update.status == "declined" and update.settlement.awaiting:
        confirm = confirm_link(svc.settings.billing_page_url, svc.settings.link_signing_key, account_id,
                               account.link_version, svc.uow.clock.now(), update.settlement.awaiting[0][1])
        notices = [Notice("error", t("page.authenticate"), confirm, t("page.authenticate_link"))]
    return _page(render_billing_page(account, locale, svc.settings.support_url, notices, expected_form_token))


def _again(svc: Services, account_id: str, locale: Locale, error: str, status: int,
           form_token: str) -> func.HttpResponse:
    account = svc.uow.accounts.load(account_id).account
    return _page(render_billing_page(account, locale, svc.settings.support_url, [Notice("error", error)],
                                     form_token, token_field_error=error), status)


@bp.function_name("billing_confirm")
@bp.route(route="billing/{accountId}/confirm", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@telemetry.http_function("billing/{accountId}/confirm")
def billing_confirm(req: func.HttpRequest) -> func.HttpResponse:
    """The confirm step of a charge the customer's bank must authenticate (3-D Secure): opened from
    the `confirmUrl` of a 402 or the page's notice, it sends the customer to their bank's page (a
    303 to Stripe's `next_action.redirect_to_url`), which sends them back here with `returned=1`;
    then the charge is read from the gateway (never from the redirect's own parameters), recorded,
    and the rest of the account settled at once. A plain link (GET), not a form: a page's
    `form-action` would stop the form's redirect to the bank."""
    svc = services()
    opened = _open(svc, req)
    if isinstance(opened, func.HttpResponse):
        return opened
    account_id, account, locale, link, key = opened
    intent = req.params.get("intent", "")
    if re.fullmatch(r"pi_[A-Za-z0-9_]{1,96}", intent) is None:
        return _page(render_refusal(locale, svc.settings.support_url, "page.link_invalid"), 403)
    t = catalog(locale).text
    token = form_token(key, account_id, link)
    signed = urlencode({"expires": link.expires, "v": link.version, "sig": link.signature})
    page_url = f"{svc.settings.billing_page_url.rstrip('/')}/{quote(account_id)}?{signed}"
    here = f"{svc.settings.billing_page_url.rstrip('/')}/{quote(account_id)}/confirm?{signed}&" + \
        urlencode({"intent": intent})

    def shown(notices: list[Notice], code: int = 200) -> func.HttpResponse:
        fresh = svc.uow.accounts.load(account_id).account
        return _page(render_billing_page(fresh, locale, svc.settings.support_url, notices, token,
                                         form_action=page_url), code)

    authenticator, gateway = svc.authenticator, svc.gateway
    if authenticator is None or gateway is None:
        return shown([Notice("error", t("page.unavailable"))], 503)
    try:
        if req.params.get("returned") == "1":
            found = authenticator.authenticated_charge(intent, account_id)
        elif not _still_awaited(account, intent):
            # Paid otherwise since (another card, a transfer) or never ours to confirm: the
            # customer is not sent to their bank to pay it again.
            return shown([Notice("ok", t("page.nothing_to_confirm"))])
        else:
            auth = authenticator.begin_authentication(intent, account_id, here + "&returned=1")
            if auth.redirect_url is not None:
                return func.HttpResponse(status_code=303, headers={**HEADERS, "Location": auth.redirect_url})
            found = auth.result
    except GatewayUnavailable:
        return shown([Notice("error", t("page.unavailable"))], 503)
    if found is None:
        return _page(render_refusal(locale, svc.settings.support_url, "page.link_invalid"), 403)
    if not found.succeeded:
        return shown([Notice("error", t("page.authentication_failed"), here, t("page.authenticate_link"))])
    try:
        result = complete_authentication(svc.uow, gateway, account_id, found)
    except LeaseBusy:
        return shown([Notice("error", t("page.busy"))], 409)
    notices = _settled_notices(result, locale, svc.uow.accounts.load(account_id).account, found)
    following = [i for _, i in result.awaiting if i != intent]
    if following:
        # A card that asks for authentication on every payment: each currency's charge goes to the
        # bank in turn, and the customer comes back here after the last.
        there = f"{svc.settings.billing_page_url.rstrip('/')}/{quote(account_id)}/confirm?{signed}&" + \
            urlencode({"intent": following[0]})
        try:
            step: Authentication | None = authenticator.begin_authentication(following[0], account_id,
                                                                             there + "&returned=1")
        except GatewayUnavailable:
            step = None
        if step is not None and step.redirect_url is not None:
            return func.HttpResponse(status_code=303, headers={**HEADERS, "Location": step.redirect_url})
        notices.append(Notice("error", t("page.authenticate"), there, t("page.authenticate_link")))
    return shown(notices)


def _still_awaited(account: Account, intent: str) -> bool:
    """Whether `intent` is a charge the account still waits for the bank to confirm, for charges
    still owed (`Account.awaiting`)."""
    return any(w.gateway_charge_id == intent and any(cid in account.outstanding for cid, _ in w.pending.parts)
               for w in account.awaiting.values())


def _settled_notices(result: Settlement, locale: Locale, account: Account, found: ChargeResult) -> list[Notice]:
    t = catalog(locale).text
    charged = dict(result.charged) or {found.amount.currency: found.amount}
    amount = ", ".join(format_money(m, locale) for _, m in sorted(charged.items()))
    notices = [Notice("ok", t("page.paid", amount=amount))]
    if result.reactivated:
        subs = account.subscriptions
        names = ", ".join(subs[s].name if s in subs else s for s in result.reactivated)
        notices.append(Notice("ok", t("page.reactivated", names=names)))
    return notices
