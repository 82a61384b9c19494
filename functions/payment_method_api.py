"""`PUT /api/accounts/{accountId}/payment-method`: save the card, then settle everything at once."""

from __future__ import annotations

from typing import Annotated, Any

import azure.functions as func
from pydantic import Field, StrictStr

from functions.accounts_api import account_id_of
from functions.problems import invalid, json_response, not_found, problem, read_body
from shared import telemetry
from shared.adapters.gateway.stripe import TOKEN_PATTERN as STRIPE_TOKEN_PATTERN
from shared.bootstrap import services
from shared.inbound.account_body import FieldProblem, InvalidRequest, PaymentMethodBody, parse_body
from shared.services.settle_account import update_card_and_settle
from shared.web.billing_links import confirm_link

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the SDK leaves __init__ unannotated


class StripeMethodBody(PaymentMethodBody):
    """With the Stripe gateway the card may also be a PaymentMethod id (`pm_…`), contract §2."""

    token: Annotated[StrictStr, Field(pattern=STRIPE_TOKEN_PATTERN)]


@bp.function_name("put_payment_method")
@bp.route(route="accounts/{accountId}/payment-method", methods=["PUT"], auth_level=func.AuthLevel.FUNCTION)
@telemetry.http_function("accounts/{accountId}/payment-method")
def put_payment_method(req: func.HttpRequest) -> func.HttpResponse:
    svc = services()
    try:
        account_id = account_id_of(req)
        model = StripeMethodBody if svc.settings.payment_gateway == "stripe" else PaymentMethodBody
        body: PaymentMethodBody = parse_body(model, read_body(req))
    except InvalidRequest as exc:
        return invalid(exc)
    if not svc.uow.accounts.load(account_id).account.registered:
        return not_found(f"no account {account_id}")
    if svc.gateway is None:
        return problem(503, "Payment gateway not configured", "set PAYMENT_GATEWAY_URL")
    update = update_card_and_settle(svc.uow, svc.gateway, account_id, body.token)
    if update.status == "card_rejected":
        return invalid(InvalidRequest([FieldProblem("token", update.detail)]))
    if update.status == "card_declined":
        return problem(402, "Card declined", f"the card was declined ({update.detail}) when it was saved; nothing "
                       "was saved and nothing charged", type_="https://billing.example/problems/card-declined",
                       declineCode=update.detail, settled=False, paid=[], totals={}, charged={}, reactivated=[])
    if update.status == "gateway_unavailable":
        return problem(503, "Payment gateway unavailable", "the card could not be saved; nothing was charged")
    if update.status == "busy":
        return problem(409, "Settlement in progress", "another payment attempt for this account is in flight; "
                       "retry shortly", type_="https://billing.example/problems/settlement-in-progress")
    result = update.settlement
    body_out: dict[str, Any] = {"settled": update.status == "settled" and not result.unfinished, "paid": result.paid,
                                "totals": result.totals(),
                                "charged": {cur: m.to_str() for cur, m in sorted(result.charged.items())},
                                "reactivated": result.reactivated}
    if result.unfinished:  # contract §2: more charges than one request makes; the rest goes on later
        owed = svc.uow.accounts.load(account_id).account.balance()
        body_out["remaining"] = {cur: owed[cur].to_str() for cur in result.unfinished if cur in owed}
    if update.status == "outcome_unknown":
        return problem(503, "Payment outcome unknown", f"the gateway gave no usable answer for the "
                       f"{', '.join(result.unanswered)} balance; the card is saved and the charge stays recorded "
                       "under its idempotency key, so retrying this request never charges twice",
                       type_="https://billing.example/problems/payment-outcome-unknown", **body_out)
    if update.status == "refused":
        currency, refusal = result.refusals[0]
        if refusal.status in (401, 403):
            return problem(503, "Payment gateway misconfigured", f"the gateway refused our credentials "
                           f"({refusal.code}); nothing was charged for the {currency} balance", **body_out)
        errors = [{"field": "token", "message": refusal.message}] if refusal.code == "invalid_token" else None
        return problem(422, "Payment refused by the gateway", f"the gateway refused the charge for the {currency} "
                       f"balance ({refusal.code}: {refusal.message}); nothing was charged for it",
                       type_="https://billing.example/problems/payment-refused", errors=errors,
                       reason=refusal.code, **body_out)
    if update.status == "declined" and result.awaiting:
        currency, intent = result.awaiting[0]
        account = svc.uow.accounts.load(account_id).account
        url = confirm_link(svc.settings.billing_page_url, svc.settings.link_signing_key, account_id,
                           account.link_version, svc.uow.clock.now(), intent)
        return problem(402, "Authentication required", f"the customer's bank asks them to authenticate the charge "
                       f"for the {currency} balance (3-D Secure): send them to confirmUrl, where they complete it "
                       "and the account is settled at once; the card is saved, nothing declined was marked paid",
                       type_="https://billing.example/problems/authentication-required",
                       declineCode="authentication_required", confirmUrl=url, **body_out)
    if update.status == "declined":
        currency, code = result.declines[0]
        return problem(402, "Card declined", f"the card was declined ({code}) for the {currency} balance; "
                       "the card is saved, nothing declined was marked paid",
                       type_="https://billing.example/problems/card-declined", declineCode=code, **body_out)
    return json_response(body_out)
