"""Stripe's error objects: `{"error": {"type", "code", "message", "param", "decline_code", ...}}`."""

from __future__ import annotations

from typing import Any

DOCS = "https://stripe.com/docs/error-codes"


class StripeError(Exception):
    """An answer in Stripe's error shape."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
        body: dict[str, Any] = {"type": type_, "message": message}
        if code is not None:
            body["code"] = code
            body["doc_url"] = f"{DOCS}/{code.replace('_', '-')}"
        if param is not None:
            body["param"] = param
        body.update({k: v for k, v in extra.items() if v is not None})
        self.body = body

    def with_status(self, status: int) -> StripeError:
        self.status = status
        return self

    def to_json(self) -> dict[str, Any]:
        return {"error": self.body}


def invalid_request(message: str, *, param: str | None = None, code: str | None = None,
                    status: int = 400) -> StripeError:
    return StripeError(status, "invalid_request_error", message, code=code, param=param)


def missing(kind: str, ident: str, param: str) -> StripeError:
    return StripeError(404, "invalid_request_error", f"No such {kind}: '{ident}'", code="resource_missing",
                       param=param)


def unknown_parameter(name: str) -> StripeError:
    return invalid_request(f"Received unknown parameter: {name}", param=name, code="parameter_unknown")


def rate_limited() -> StripeError:
    return StripeError(
        429,
        "invalid_request_error",
        "Request rate limit exceeded. You can learn more about rate limits here "
        "https://stripe.com/docs/rate-limits.",
        code="rate_limit",
        headers={"Stripe-Should-Retry": "true", "Stripe-Rate-Limited-Reason": "global-rate"},
    )
