"""Operator actions on an account: a legal hold suspends the data deletion of a subscription; a
pause of the account's dunning moves its escalation dates (contract §3)."""

from __future__ import annotations

import azure.functions as func

from functions.accounts_api import account_id_of
from functions.problems import invalid, json_response, not_found, read_body
from shared import telemetry
from shared.bootstrap import services
from shared.domain.identifiers import is_identifier
from shared.domain.pausing import PauseRefused
from shared.domain.retention import set_legal_hold
from shared.inbound.account_body import DunningBody, FieldProblem, InvalidRequest, parse_body
from shared.services.dunning_controls import UnknownAccount, pause_dunning
from shared.services.unit_of_work import commit_decision
from shared.services.views import account_view

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the SDK leaves __init__ unannotated


@bp.function_name("put_legal_hold")
@bp.route(route="accounts/{accountId}/subscriptions/{subscriptionId}/legal-hold", methods=["PUT"],
          auth_level=func.AuthLevel.ADMIN)
@telemetry.http_function("accounts/{accountId}/subscriptions/{subscriptionId}/legal-hold")
def put_legal_hold(req: func.HttpRequest) -> func.HttpResponse:
    svc = services()
    try:
        account_id = account_id_of(req)
        subscription_id = str(req.route_params.get("subscriptionId", ""))
        body = read_body(req)
        hold = body.get("hold") if isinstance(body, dict) else None
        if not isinstance(hold, bool):
            raise InvalidRequest([FieldProblem("hold", "must be true or false")])
    except InvalidRequest as exc:
        return invalid(exc)
    account = svc.uow.accounts.load(account_id).account
    if not is_identifier(subscription_id) or subscription_id not in account.subscriptions:
        return not_found(f"no subscription {subscription_id} in account {account_id}")
    now, policy = svc.uow.clock.now(), svc.settings.policy
    decision = commit_decision(svc.uow, account_id,
                               lambda snap: set_legal_hold(snap.account, subscription_id, hold, now, policy))
    return json_response(account_view(decision.account, svc.settings.policy, svc.uow.clock.now()))


@bp.function_name("put_dunning")
@bp.route(route="accounts/{accountId}/dunning", methods=["PUT"], auth_level=func.AuthLevel.FUNCTION)
@telemetry.http_function("accounts/{accountId}/dunning")
def put_dunning(req: func.HttpRequest) -> func.HttpResponse:
    """Pause the account's dunning until `pausedUntil`, or resume it now with null (contract §2, §3)."""
    svc = services()
    try:
        account_id = account_id_of(req)
        body = parse_body(DunningBody, read_body(req))
        until = body.paused_until()
        decision = pause_dunning(svc.uow, account_id, until)
    except InvalidRequest as exc:
        return invalid(exc)
    except PauseRefused as exc:
        return invalid(InvalidRequest([FieldProblem("pausedUntil", str(exc))]))
    except UnknownAccount:
        return not_found(f"no account {account_id}")
    return json_response(account_view(decision.account, svc.settings.policy, svc.uow.clock.now()))
