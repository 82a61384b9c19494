"""`POST /api/webhooks/stripe` (contract §2): Stripe's events, verified as Stripe's libraries verify
them (`stripe.Webhook.construct_event` with `STRIPE_WEBHOOK_SECRET`, 300 s tolerance).

A missing, forged or stale signature is a 400 problem and changes nothing. `payment_intent.succeeded`
and `payment_intent.payment_failed` for a PaymentIntent the product made (its metadata names an
account of ours and the settlement's idempotency key) are recorded once per key, however often
and in whatever order they come, racing the settlement that made them
(`shared.services.settle_account.record_reported_charge`). Every other event, and intents the
product did not make, answer 200 and change nothing. While the account is busy for long, a 503
asks Stripe to deliver again later (it retries for days)."""

from __future__ import annotations

import json
import logging
from typing import Any

import azure.functions as func
import stripe

from functions.problems import json_response, problem
from shared import telemetry
from shared.adapters.gateway.stripe import result_of
from shared.adapters.store.leases import LeaseBusy
from shared.bootstrap import services
from shared.domain.identifiers import is_identifier
from shared.services.settle_account import record_reported_charge

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the SDK leaves __init__ unannotated
log = logging.getLogger(__name__)
RECORDED_TYPES = frozenset({"payment_intent.succeeded", "payment_intent.payment_failed"})


@bp.function_name("stripe_webhooks")
@bp.route(route="webhooks/stripe", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@telemetry.http_function("webhooks/stripe")
def stripe_webhooks(req: func.HttpRequest) -> func.HttpResponse:
    svc = services()
    secret = svc.settings.stripe_webhook_secret
    if not secret:  # this deployment does not take Stripe's events (STRIPE_WEBHOOK_SECRET unset)
        return problem(404, "Not found", "Stripe webhooks are not enabled here: STRIPE_WEBHOOK_SECRET is not set")
    payload = req.get_body()
    signature = req.headers.get("stripe-signature")
    if not signature:
        return problem(400, "Signature missing", "a Stripe event carries a Stripe-Signature header")
    try:
        text = payload.decode("utf-8")
        stripe.Webhook.construct_event(text, signature, secret)
    except (stripe.SignatureVerificationError, ValueError):
        return problem(400, "Signature refused", "the Stripe-Signature does not verify with the endpoint's secret, "
                       "or is older than 5 minutes; nothing was recorded")
    try:
        event: Any = json.loads(text)
        kind = event["type"]
        intent = event["data"]["object"]
        meta = intent.get("metadata") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        return problem(400, "Unreadable event", "the event is not a Stripe event object")
    account_id = meta.get("accountId") if isinstance(meta, dict) else None
    key = meta.get("idempotencyKey") if isinstance(meta, dict) else None
    if kind not in RECORDED_TYPES or not isinstance(account_id, str) or not isinstance(key, str) \
            or not is_identifier(account_id) or not svc.uow.accounts.load(account_id).account.registered:
        return json_response({"received": True, "recorded": False})
    try:
        found = result_of(intent, key)
    except ValueError:
        return json_response({"received": True, "recorded": False})
    try:
        result = record_reported_charge(svc.uow, account_id, found)
    except LeaseBusy:
        return problem(503, "Account busy", "a settlement of this account is running; deliver the event again later")
    log.info("stripe event %s for account %s, key %s: %s", kind, account_id, key,
             "recorded" if result.paid or result.charged or result.declines else "already known")
    return json_response({"received": True, "recorded": bool(result.charged or result.declines)})
