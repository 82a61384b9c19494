"""HTTP answers: JSON bodies and RFC 9457 problem details."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import azure.functions as func

from shared.inbound import json_reader
from shared.inbound.account_body import FieldProblem, InvalidRequest
from shared.inbound.card_data import mask_card_numbers
from shared.inbound.numerals import parse_whole

MAX_BODY_BYTES = 64 * 1024
SECURITY_HEADERS = {
    "Cache-Control": "no-store",  # account views and dead letters hold personal data: no cache keeps them
    "X-Content-Type-Options": "nosniff",  # JSON is never read as a script or a page
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",  # HTTPS only, from the first answer on
}
"""On every answer of the app's own routes, JSON and HTML alike."""


def json_response(body: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, ensure_ascii=False), status_code=status,
                             mimetype="application/json", charset="utf-8", headers=SECURITY_HEADERS)


def problem(status: int, title: str, detail: str, *, type_: str = "about:blank",
            errors: list[dict[str, str]] | None = None, **extra: Any) -> func.HttpResponse:
    # A problem may quote what the caller sent (a route parameter, a field name): never a card number.
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": mask_card_numbers(detail)}
    if errors is not None:
        body["errors"] = [{k: mask_card_numbers(v) for k, v in e.items()} for e in errors]
    body.update(extra)
    return func.HttpResponse(json.dumps(body, ensure_ascii=False), status_code=status,
                             mimetype="application/problem+json", charset="utf-8", headers=SECURITY_HEADERS)


def invalid(exc: InvalidRequest) -> func.HttpResponse:
    return problem(400, "Invalid request", str(exc) if len(exc.problems) == 1 else "the request has invalid fields",
                   type_="https://billing.example/problems/validation",
                   errors=[{"field": p.field, "message": p.message} for p in exc.problems])


def not_found(detail: str) -> func.HttpResponse:
    return problem(404, "Not found", detail)


def read_body(req: func.HttpRequest) -> Any:
    """The body as JSON, or `InvalidRequest` naming the body (never a 500 for bad input)."""
    from shared.inbound.account_body import FieldProblem

    raw = req.get_body()
    if not raw:
        raise InvalidRequest([FieldProblem("body", "a JSON body is required")])
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequest([FieldProblem("body", f"at most {MAX_BODY_BYTES} bytes are accepted")])
    try:
        return json_reader.read_json(raw)
    except json_reader.JsonRefused as exc:  # the reason names its field first, as a dead letter's does
        field = exc.field or "body"
        raise InvalidRequest([FieldProblem(field, exc.reason.removeprefix(f"{field}: "))]) from exc


def page_limit(params: Mapping[str, str], default: int, maximum: int) -> int | FieldProblem:
    """The query's `limit` (`default` when absent), or the problem naming `limit` when it is not
    a whole number from 1 to `maximum` in ASCII digits."""
    try:
        limit = parse_whole(params.get("limit", str(default)), max_digits=4)
    except ValueError:
        limit = 0
    return limit if 1 <= limit <= maximum else FieldProblem("limit", f"a whole number from 1 to {maximum}")
