"""The product's payment gateway adapter: a client for the gateway's REST API.

Every call is retried on connection errors, timeouts, 429 and 5xx with exponential backoff. That
is safe for charges because each one carries its idempotency key: a retried charge the gateway
already made is answered from its record and charges nothing. The card token travels in request
bodies only and is never logged, nor put in an exception message.

A charge never raises: every HTTP answer maps to one `ChargeAnswer` (see shared.adapters.gateway.protocol),
and the processor's per-charge maximum lives here (`max_charge`), where settlement reads it.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from shared.adapters.gateway.protocol import (
    CardDetails,
    CardRejected,
    ChargeResult,
    GatewayError,
    GatewayUnavailable,
    answer_of,
)
from shared.domain.charge_answers import ChargeAnswer, Refused, Unanswered
from shared.domain.money import Money, MoneyError
from shared.inbound.json_reader import JsonRefused, read_json
from shared.inbound.numerals import parse_whole
from shared.inbound.rfc3339 import parse_rfc3339
from shared.telemetry import TracingSession

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_REFUSALS = frozenset({400, 401, 403, 404, 409, 422})
# Stripe's ceiling for one charge: eight digits of minor units ($999,999.99, ¥99,999,999), which
# the sandbox gateway enforces too.
STRIPE_MAX_CHARGE_MINOR = 99_999_999


class HttpPaymentGateway:
    """`PaymentGateway` over HTTP. `timeout` is per attempt, in seconds; up to `max_attempts`
    attempts are made, `backoff` seconds apart at first, doubling (with jitter) up to 2 s.
    `max_charge_minor` is the processor's per-charge limit, in minor units of any currency."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout: float = 10,
        *,
        max_attempts: int = 4,
        backoff: float = 0.2,
        session: requests.Session | None = None,
        max_charge_minor: int = STRIPE_MAX_CHARGE_MINOR,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_charge_minor = max_charge_minor
        # Each request is a CLIENT span and carries W3C `traceparent` (contract §6).
        self._session = session or TracingSession()
        self._session.headers.update(
            {
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "User-Agent": "past-due-billing/1",
            }
        )

    def __repr__(self) -> str:  # never show the API key
        return f"HttpPaymentGateway({self.base_url!r})"

    def close(self) -> None:
        self._session.close()

    # -- the PaymentGateway interface -----------------------------------------------------------

    def save_card(self, token: str) -> CardDetails:
        response = self._send("POST", "/v1/cards", body={"token": token})
        if response.status_code == 200:
            data = _json(response)
            try:
                return CardDetails(
                    brand=str(data["brand"]),
                    last4=str(data["last4"]),
                    exp_month=_whole(data["expMonth"]),
                    exp_year=_whole(data["expYear"]),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise GatewayUnavailable("the gateway answered with an unreadable card") from exc
        raise self._error(response)

    def charge(
        self, *, idempotency_key: str, amount: Money, token: str, account_id: str, description: str
    ) -> ChargeAnswer:
        try:
            response = self._send(
                "POST",
                "/v1/charges",
                body={
                    "amount": amount.to_str(),
                    "currency": amount.currency,
                    "token": token,
                    "accountId": account_id,
                    "description": description,
                },
                headers={"Idempotency-Key": idempotency_key},
            )
        except GatewayUnavailable as exc:
            return Unanswered(exc.message, exc.code)
        answer = charge_answer(response, idempotency_key)
        if response.headers.get("Idempotent-Replayed") == "true":
            log.info("gateway replayed its answer for key %s: %s", idempotency_key, type(answer).__name__)
        return answer

    def max_charge(self, currency: str) -> int:
        return self.max_charge_minor

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        response = self._send("GET", "/v1/charges/" + quote(idempotency_key, safe=""))
        if response.status_code == 404 and error_of(response)[0] == "charge_not_found":
            return None  # the gateway's own word that nothing was ever recorded under the key
        if response.status_code == 200:
            result = _charge_result(response)
            if result.idempotency_key == idempotency_key:
                return result
        raise self._error(response)

    # -- transport ------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        url = self.base_url + path
        retrying = Retrying(
            retry=retry_if_exception_type(GatewayUnavailable),
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential_jitter(multiplier=self.backoff, max=2.0, jitter=self.backoff),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                number = attempt.retry_state.attempt_number
                try:
                    response = self._session.request(
                        method, url, json=body, headers=headers, timeout=self.timeout
                    )
                except requests.Timeout as exc:
                    log.warning("gateway %s %s timed out (attempt %d)", method, path, number)
                    raise GatewayUnavailable(f"the gateway did not answer within {self.timeout} s") from exc
                except requests.ConnectionError as exc:
                    log.warning("gateway %s %s: connection failed (attempt %d)", method, path, number)
                    raise GatewayUnavailable("could not connect to the gateway") from exc
                except requests.RequestException as exc:
                    # Anything else from requests, without its text: it may quote the request.
                    raise GatewayUnavailable(f"gateway request failed: {type(exc).__name__}") from exc
                if response.status_code in _RETRYABLE_STATUS:
                    log.warning(
                        "gateway %s %s answered %d (attempt %d)", method, path, response.status_code, number
                    )
                    raise GatewayUnavailable(
                        f"the gateway answered {response.status_code}", code=f"http_{response.status_code}"
                    )
                return response
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    def _error(self, response: requests.Response) -> GatewayError:
        """What a card save or a read-back answered that is not a result: an unknown token, or a
        gateway that cannot say (its refusals of our own requests are our configuration's fault)."""
        code, message = error_of(response)
        if code == "invalid_token":
            return CardRejected(code, message)
        return GatewayUnavailable(f"unexpected answer {response.status_code} from the gateway", code=code)


def error_of(response: requests.Response) -> tuple[str, str]:
    """The gateway's machine code and message from an error body, or generic ones."""
    try:
        error = _json(response)["error"]
        return str(error["code"])[:64], str(error.get("message", ""))[:500]
    except (GatewayUnavailable, KeyError, TypeError, AttributeError):
        return "http_error", f"the gateway answered {response.status_code}"


def charge_answer(response: requests.Response, idempotency_key: str) -> ChargeAnswer:
    """One HTTP answer to a charge, as the outcome it stands for (the table in the protocol)."""
    status = response.status_code
    if status in (200, 201, 402):
        try:
            result = _charge_result(response)
        except GatewayUnavailable as exc:
            return Unanswered(exc.message, "malformed_answer")
        answer = answer_of(result)
        if result.idempotency_key != idempotency_key or (status == 402) != (result.status == "declined"):
            return Unanswered(f"the gateway answered {status} with a charge that does not match",
                              "malformed_answer")
        return answer
    code, message = error_of(response)
    if status == 409 and code == "idempotency_conflict":
        # Something is recorded under our key: only reading it back says what.
        return Unanswered(message or "the key was used for another amount", code)
    if status in _REFUSALS:
        return Refused(code, message or f"the gateway refused the charge ({status})", status)
    return Unanswered(f"unexpected answer {status} from the gateway", f"http_{status}")


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        data = read_json(response.content)
    except JsonRefused as exc:
        raise GatewayUnavailable("the gateway answered with something that is not JSON") from exc
    if not isinstance(data, dict):
        raise GatewayUnavailable("the gateway answered with something that is not a JSON object")
    return data


def _whole(value: object) -> int:
    """A JSON integer, or a string of ASCII digits (`int()` alone takes any script's digits)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        return parse_whole(value, max_digits=9)
    raise ValueError(f"not a whole number: {value!r}")


def _charge_result(response: requests.Response) -> ChargeResult:
    """Read a charge. An unreadable answer leaves the outcome unknown, hence `GatewayUnavailable`:
    the caller then retries with the same key or calls `find_charge`."""
    data = _json(response)
    try:
        status = data["status"]
        if status not in ("succeeded", "declined"):
            raise ValueError(f"unknown charge status {status!r}")
        created_at = parse_rfc3339(str(data["createdAt"]))
        charge_id = data.get("id")
        decline_code = data.get("declineCode")
        return ChargeResult(
            idempotency_key=str(data["idempotencyKey"]),
            gateway_charge_id=str(charge_id) if charge_id else None,
            status=status,
            amount=Money.parse(data["amount"], str(data["currency"])),
            decline_code=str(decline_code) if decline_code else None,
            created_at=created_at,
        )
    except (KeyError, TypeError, ValueError, MoneyError) as exc:
        raise GatewayUnavailable("the gateway answered with an unreadable charge") from exc
