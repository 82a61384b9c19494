"""HTTP API on accounts (contract §2): register, view, timeline."""

from __future__ import annotations

from collections.abc import Mapping

import azure.functions as func

from functions.problems import invalid, json_response, not_found, page_limit, problem, read_body
from shared import telemetry
from shared.adapters.gateway.protocol import CardDeclined, CardRejected, GatewayUnavailable
from shared.adapters.store.timeline import DEFAULT_LIMIT, MAX_LIMIT, BadCursor, Cursor, Order
from shared.bootstrap import services
from shared.domain.identifiers import ID_PATTERN, is_identifier
from shared.domain.model import PaymentMethod, Profile
from shared.domain.payments import Registration
from shared.inbound.account_body import (
    AccountBody,
    CardMethodBody,
    FieldProblem,
    InvalidRequest,
    parse_body,
)
from shared.services.settle_account import check_card
from shared.services.unit_of_work import Refused, register_account
from shared.services.views import account_view

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the SDK leaves __init__ unannotated


def account_id_of(req: func.HttpRequest) -> str:
    account_id = str(req.route_params.get("accountId", ""))
    if not is_identifier(account_id):
        raise InvalidRequest([FieldProblem("accountId", f"must match {ID_PATTERN}")])
    return account_id  # whatever digits it holds: an identifier, never card data (contract §1)


@bp.function_name("put_account")
@bp.route(route="accounts/{accountId}", methods=["PUT"], auth_level=func.AuthLevel.FUNCTION)
@telemetry.http_function("accounts/{accountId}")
def put_account(req: func.HttpRequest) -> func.HttpResponse:
    svc = services()
    try:
        account_id = account_id_of(req)
        body: AccountBody = parse_body(AccountBody, read_body(req))
    except InvalidRequest as exc:
        return invalid(exc)
    method: PaymentMethod | None = None
    if isinstance(body.paymentMethod, CardMethodBody):
        if svc.gateway is None:
            return problem(503, "Payment gateway not configured", "set PAYMENT_GATEWAY_URL")
        try:  # with the account's id: a gateway that keeps cards per customer (Stripe) attaches it there
            method = check_card(svc.gateway, body.paymentMethod.token, account_id)
        except CardRejected as exc:
            return invalid(InvalidRequest([FieldProblem("paymentMethod.token", exc.message)]))
        except CardDeclined as exc:  # a processor that checks the card as it saves it (Stripe) declined it
            return problem(402, "Card declined", f"the card was declined ({exc.code}) when it was saved; the "
                           "account was not registered", type_="https://billing.example/problems/card-declined",
                           declineCode=exc.code)
        except GatewayUnavailable:
            return problem(503, "Payment gateway unavailable", "the card could not be checked; try again")
    elif body.paymentMethod is not None:
        method = PaymentMethod("invoice")
    reg = Registration(
        Profile(body.displayName, body.locale, tuple(body.billingContacts), method),
        tuple((s.id, s.name) for s in body.subscriptions),
    )
    try:
        account = register_account(svc.uow, account_id, reg)
    except Refused as exc:  # the listed subscriptions would take the account past 200 (contract §1)
        return invalid(InvalidRequest([FieldProblem("subscriptions", exc.reason)]))
    return json_response(account_view(account, svc.settings.policy, svc.uow.clock.now()))


@bp.function_name("get_account")
@bp.route(route="accounts/{accountId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@telemetry.http_function("accounts/{accountId}")
def get_account(req: func.HttpRequest) -> func.HttpResponse:
    svc = services()
    try:
        account_id = account_id_of(req)
    except InvalidRequest as exc:
        return invalid(exc)
    snap = svc.uow.accounts.load(account_id)
    if snap.etag is None:
        return not_found(f"no account {account_id}")
    return json_response(account_view(snap.account, svc.settings.policy, svc.uow.clock.now()))


@bp.function_name("get_timeline")
@bp.route(route="accounts/{accountId}/timeline", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@telemetry.http_function("accounts/{accountId}/timeline")
def get_timeline(req: func.HttpRequest) -> func.HttpResponse:
    """A page of the account's history: `limit` (1 to 500, default 100), `order` (`oldest`, the
    default, or `newest`), and `continuation` from the page before."""
    svc = services()
    try:
        account_id = account_id_of(req)
        limit, order, cursor = page_request(req.params)
    except InvalidRequest as exc:
        return invalid(exc)
    snap = svc.uow.accounts.load(account_id)
    if snap.etag is None:
        return not_found(f"no account {account_id}")
    page = svc.uow.accounts.timeline_page(account_id, limit=limit, order=order, cursor=cursor,
                                          revision=snap.account.revision)
    return json_response({"accountId": account_id, "order": order, "entries": page.entries,
                          "continuation": page.next.token() if page.next else None})


def page_request(params: Mapping[str, str]) -> tuple[int, Order, Cursor | None]:
    """`limit`, `order` and `continuation` from the query, or `InvalidRequest` naming the field."""
    limit = page_limit(params, DEFAULT_LIMIT, MAX_LIMIT)
    problems = [limit] if isinstance(limit, FieldProblem) else []
    order = params.get("order", "oldest")
    if order not in ("oldest", "newest"):
        problems.append(FieldProblem("order", "oldest or newest"))
    cursor: Cursor | None = None
    token = params.get("continuation")
    if token is not None and not problems:
        try:
            cursor = Cursor.parse(token, order)  # type: ignore[arg-type]
        except BadCursor as exc:
            problems.append(FieldProblem("continuation", str(exc)))
    if problems:
        raise InvalidRequest(problems)
    return limit, order, cursor  # type: ignore[return-value]
