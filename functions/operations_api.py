"""Operator routes: dead letters, health, and the test clock (contract §2)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import azure.functions as func

from functions.problems import invalid, json_response, not_found, page_limit, problem, read_body
from shared import telemetry
from shared.adapters.queues.protocol import QueueRole
from shared.adapters.store.system import DEADLETTER_PAGE, DEADLETTER_PAGE_MAX, DeadLetterCursor
from shared.adapters.store.tokens import BadCursor
from shared.bootstrap import services
from shared.inbound.account_body import FieldProblem, InvalidRequest
from shared.inbound.rfc3339 import format_rfc3339, parse_rfc3339

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the SDK leaves __init__ unannotated


@bp.function_name("get_deadletters")
@bp.route(route="deadletters", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
@telemetry.http_function("deadletters")
def get_deadletters(req: func.HttpRequest) -> func.HttpResponse:
    """A page of dead letters, oldest first: `limit` (1 to 50, default 20: each may hold 64 KiB
    of text) and `continuation` from the page before."""
    limit = page_limit(req.params, DEADLETTER_PAGE, DEADLETTER_PAGE_MAX)
    problems = [limit] if isinstance(limit, FieldProblem) else []
    cursor = None
    token = req.params.get("continuation")
    if token is not None:
        try:
            cursor = DeadLetterCursor.parse(token)
        except BadCursor as exc:
            problems.append(FieldProblem("continuation", str(exc)))
    if problems or isinstance(limit, FieldProblem):
        return invalid(InvalidRequest(problems))
    page = services().uow.dead_letters.page(limit, cursor)
    return json_response({"items": page.items, "continuation": page.next.token() if page.next else None})


@bp.function_name("replay_deadletter")
@bp.route(route="deadletters/{id}/replay", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
@telemetry.http_function("deadletters/{id}/replay")
def replay_deadletter(req: func.HttpRequest) -> func.HttpResponse:
    """Put a dead-lettered message back on its queue, as it was: for messages that failed for
    a passing reason (poison), or after a producer fix. The event id still guards against a second effect."""
    svc = services()
    item_id = str(req.route_params.get("id", ""))
    item = svc.uow.dead_letters.get(item_id) if re.fullmatch(r"[A-Za-z0-9._-]{1,200}", item_id) else None
    if item is None:
        return not_found(f"no dead letter {item_id}")
    if item["redacted"]:
        return problem(409, "Redacted message", "the message carried card data and is kept only redacted, which is "
                                                "not what its producer sent: the producer must send it again")
    # Back to its own queue (a poison queue's message to the queue it came from): the account's
    # step is idempotent like an event, an email is closed once under its key.
    source = str(item["source"]).removesuffix("-poison")
    own: dict[str, QueueRole] = {"sweep-work": "sweep-work", "sweep-pages": "sweep-pages",
                                 "email-outbox": "email-outbox"}
    role = own.get(source, "payment-events")
    svc.uow.queues.send(role, item["text"])
    at = svc.uow.clock.now()
    svc.uow.dead_letters.mark_replayed(item_id, at)
    return json_response({**item, "replayedAt": at.isoformat(), "replayed": True})


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@telemetry.http_function("health")
def health(req: func.HttpRequest) -> func.HttpResponse:
    try:
        services().uow.accounts.exists("health-probe")
    except Exception as exc:  # any storage failure means unhealthy; say which
        return problem(503, "Storage unreachable", type(exc).__name__)
    return json_response({"status": "ok"})


@bp.function_name("testing_clock")
@bp.route(route="testing/clock", methods=["PUT", "DELETE", "GET"], auth_level=func.AuthLevel.ADMIN)
@telemetry.http_function("testing/clock")
def testing_clock(req: func.HttpRequest) -> func.HttpResponse:
    clock = services().test_clock
    if clock is None:
        return not_found("the test clock is not enabled (BILLING_TEST_CLOCK)")
    if req.method == "DELETE":
        clock.reset()
    elif req.method == "PUT":
        try:
            body = read_body(req)
            now = _parse_now(body)
        except InvalidRequest as exc:
            return invalid(exc)
        clock.set(now)
    return json_response({"now": format_rfc3339(clock.now())})


def _parse_now(body: object) -> datetime:
    raw = body.get("now") if isinstance(body, dict) else None
    if not isinstance(raw, str):
        raise InvalidRequest([FieldProblem("now", "an RFC 3339 timestamp with an offset is required")])
    try:
        at = parse_rfc3339(raw)
    except ValueError as exc:
        raise InvalidRequest([FieldProblem("now", str(exc))]) from exc
    try:
        at = at.astimezone(UTC)
    except OverflowError as exc:
        raise InvalidRequest([FieldProblem("now", "out of range once converted to UTC")]) from exc
    if not 1970 <= at.year <= 9998:
        raise InvalidRequest([FieldProblem("now", "must be between 1970 and 9998")])
    return at
