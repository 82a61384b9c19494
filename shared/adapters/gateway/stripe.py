"""The payment gateway on Stripe, through the official `stripe` SDK (`PAYMENT_GATEWAY=stripe`).

- **Customers.** Each account is one Stripe Customer with `metadata[accountId]`. It is found by
  Search, else created with the Idempotency-Key `customer-{accountId}`: Search lags behind writes
  (eventually consistent), and inside Stripe's 24-hour key window the create replays the customer
  made a moment ago instead of making a second one; after the window Search has long caught up.
  Once known, the customer travels with the saved card: the token the product keeps is
  `cus_…/pm_…` (`StripeCard`), so charging and reading back never depend on Search.
- **Saving a card.** A `pm_…` id is attached as it is, a `tok_…` token is first made a
  PaymentMethod; the attached one becomes the customer's default
  (`invoice_settings.default_payment_method`). Brand, last4 and expiry come from the
  PaymentMethod. Stripe checks a card when it is attached: a decline there raises `CardDeclined`
  (nothing is saved).
- **Charging.** A PaymentIntent with `confirm=true`, `off_session=true`, `metadata[accountId]` and
  `metadata[idempotencyKey]`, sent with the settlement's key as Stripe's `Idempotency-Key`.
- **Reading back** (`find_customer_charge`): the customer's PaymentIntents are listed (lists are
  read from Stripe's primary store, unlike Search) and matched on `metadata[idempotencyKey]`,
  which works inside the key window and long after it. Without an account (`find_charge`, the
  plain port), Search is all there is, and a miss is only "not yet".
- **Answers.** `CardError` is `Declined` with Stripe's decline code (soft or hard per
  `shared.domain.declines`); `RateLimitError`, `APIError`, `APIConnectionError` (after the SDK's own
  `max_network_retries`, which reuse the Idempotency-Key) and an idempotency conflict are
  `Unanswered`; `InvalidRequestError` and authentication/permission errors are `Refused`. An amount
  outside Stripe's currency rules is refused before any call (`stripe_amounts`).
- **3-D Secure.** Off-session, a card that needs authentication is declined with
  `authentication_required`; `begin_authentication` confirms that PaymentIntent on-session with a
  `return_url` and hands back the bank's page (`next_action.redirect_to_url`).

Secrets and card data never reach logs or exception messages: only Stripe's codes and messages,
which `GatewayError` and the charge answers mask.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe

from shared.adapters.gateway.protocol import (
    Authentication,
    CardDeclined,
    CardDetails,
    CardRejected,
    ChargeResult,
    GatewayUnavailable,
    answer_of,
)
from shared.adapters.gateway.stripe_amounts import AmountRefused, from_stripe, max_charge, to_stripe
from shared.domain.charge_answers import ChargeAnswer, Declined, Refused, Unanswered
from shared.domain.money import Money, MoneyError
from shared.telemetry import TracingSession

log = logging.getLogger(__name__)

AUTHENTICATION_REQUIRED = "authentication_required"
TOKEN_PATTERN = r"^(?:tok|pm)_[A-Za-z0-9_]{1,96}$"
"""What a customer may give as a card with the Stripe gateway: a token or a PaymentMethod id."""
_TRANSIENT = (stripe.RateLimitError, stripe.APIConnectionError, stripe.APIError)


@dataclass(frozen=True)
class StripeCard:
    """The saved card's reference as the product keeps it: `cus_…/pm_…`, or a bare `pm_…`/`tok_…`
    saved without an account (its customer is then found when it is charged)."""

    payment_method: str
    customer: str | None = None

    @classmethod
    def parse(cls, token: str) -> StripeCard:
        customer, sep, pm = token.partition("/")
        if sep and customer.startswith("cus_"):
            return cls(pm, customer)
        return cls(token)

    def __str__(self) -> str:
        return f"{self.customer}/{self.payment_method}" if self.customer else self.payment_method


class StripeGateway:
    """`PaymentGateway`, `CustomerGateway` and `AuthenticatingGateway` on Stripe."""

    def __init__(self, api_key: str, *, api_base: str | None = None, max_network_retries: int = 2,
                 timeout: float = 30.0, client: stripe.StripeClient | None = None) -> None:
        if client is None:
            client = stripe.StripeClient(
                api_key,
                base_addresses={"api": api_base} if api_base else None,
                max_network_retries=max_network_retries,
                http_client=stripe.RequestsClient(timeout=timeout, session=TracingSession()),  # traceparent
            )
        self._client = client
        self.api_base = api_base
        self._customers: dict[str, str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show the API key
        return f"StripeGateway({self.api_base or 'https://api.stripe.com'!r})"

    # -- cards ----------------------------------------------------------------------------------

    def save_card(self, token: str) -> CardDetails:
        """A card with no account: made a PaymentMethod (not attached yet; it is attached to the
        account's customer when first charged)."""
        return self._save(token, None)

    def save_customer_card(self, token: str, account_id: str) -> CardDetails:
        return self._save(token, account_id)

    def _save(self, token: str, account_id: str | None) -> CardDetails:
        if not token.startswith(("pm_", "tok_")):
            raise CardRejected("invalid_token", "a Stripe PaymentMethod id (pm_…) or token (tok_…) is expected")
        try:
            pm = self._payment_method(token)
            customer = None
            if account_id is not None:
                customer = self._customer(account_id)
                pm = self._client.v1.payment_methods.attach(pm.id, params={"customer": customer})
                self._client.v1.customers.update(
                    customer, params={"invoice_settings": {"default_payment_method": pm.id}})
        except stripe.CardError as exc:
            err = exc.error
            code = (err.decline_code if err else None) or exc.code or "card_declined"
            raise CardDeclined(code, exc.user_message or "the card was declined") from None
        except stripe.InvalidRequestError as exc:
            raise CardRejected("invalid_token", exc.user_message or "Stripe does not know this card") from None
        except (stripe.AuthenticationError, stripe.PermissionError) as exc:
            raise GatewayUnavailable("Stripe refused our credentials",
                                     code=exc.code or "authentication_error") from None
        except stripe.StripeError as exc:
            raise GatewayUnavailable(f"Stripe did not answer: {type(exc).__name__}", code=exc.code or "api_error") \
                from None
        card = pm.card
        if card is None:
            raise CardRejected("invalid_token", "the PaymentMethod is not a card")
        return CardDetails(brand=str(card.brand), last4=str(card.last4), exp_month=int(card.exp_month),
                           exp_year=int(card.exp_year), token=str(StripeCard(pm.id, customer)))

    def _payment_method(self, token: str) -> stripe.PaymentMethod:
        if token.startswith("tok_"):
            return self._client.v1.payment_methods.create(params={"type": "card", "card": {"token": token}})
        return self._client.v1.payment_methods.retrieve(token)

    def _customer(self, account_id: str) -> str:
        """The account's Customer: remembered, else found by Search, else created (idempotently)."""
        with self._lock:
            known = self._customers.get(account_id)
        if known is not None:
            return known
        found = self._client.v1.customers.search(
            params={"query": f"metadata['accountId']:'{_quoted(account_id)}'", "limit": 1})
        if found.data:
            customer = found.data[0].id
        else:
            customer = self._client.v1.customers.create(
                params={"metadata": {"accountId": account_id}},
                options={"idempotency_key": f"customer-{account_id}"}).id
        with self._lock:
            self._customers[account_id] = customer
        return customer

    # -- charges --------------------------------------------------------------------------------

    def charge(self, *, idempotency_key: str, amount: Money, token: str, account_id: str,
               description: str) -> ChargeAnswer:
        try:
            units = to_stripe(amount)
        except AmountRefused as exc:
            return Refused(exc.code, exc.message, 400)
        except MoneyError as exc:
            return Refused("invalid_currency", str(exc), 400)
        try:
            card = self._chargeable(StripeCard.parse(token), account_id)
            intent = self._client.v1.payment_intents.create(
                params={
                    "amount": units,
                    "currency": amount.currency.lower(),
                    "customer": card.customer or "",
                    "payment_method": card.payment_method,
                    "confirm": True,
                    "off_session": True,
                    "description": description,
                    "metadata": {"accountId": account_id, "idempotencyKey": idempotency_key},
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            return _declined(exc)
        except stripe.IdempotencyError as exc:
            # Something is kept under our key with other parameters: only reading it back says what.
            return Unanswered(exc.user_message or "the idempotency key was used otherwise", "idempotency_error")
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 409:  # the first request with this key is still running
                return Unanswered(exc.user_message or "a request with this key is in progress",
                                  exc.code or "idempotency_key_in_use")
            return Refused(exc.code or "invalid_request", exc.user_message or "Stripe refused the request",
                           exc.http_status or 400)
        except (stripe.AuthenticationError, stripe.PermissionError) as exc:
            return Refused(exc.code or "authentication_error", exc.user_message or "Stripe refused our credentials",
                           exc.http_status or 401)
        except _TRANSIENT as exc:
            return Unanswered(f"Stripe gave no usable answer ({type(exc).__name__})", _code(exc))
        except stripe.StripeError as exc:
            return Unanswered(f"unexpected answer from Stripe ({type(exc).__name__})", _code(exc))
        if intent.status == "processing":
            return Unanswered("Stripe is still processing the charge", "processing")
        try:
            return answer_of(result_of(intent.to_dict(), idempotency_key))
        except ValueError as exc:
            return Unanswered(str(exc), "malformed_answer")

    def _chargeable(self, card: StripeCard, account_id: str) -> StripeCard:
        """A card saved without an account is attached to the account's customer first."""
        if card.customer is not None:
            return card
        customer = self._customer(account_id)
        pm = self._payment_method(card.payment_method)
        if pm.customer is None:
            pm = self._client.v1.payment_methods.attach(pm.id, params={"customer": customer})
        return StripeCard(pm.id, customer)

    def max_charge(self, currency: str) -> int:
        return max_charge(currency)

    # -- reading back ---------------------------------------------------------------------------

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        """Without the account, only Search can find it, and Search lags: None means "not found
        yet". The settlement always reads back through `find_customer_charge`."""
        try:
            found = self._client.v1.payment_intents.search(
                params={"query": f"metadata['idempotencyKey']:'{_quoted(idempotency_key)}'", "limit": 10})
            return _best([pi.to_dict() for pi in found.data], idempotency_key)
        except stripe.StripeError as exc:
            raise GatewayUnavailable(f"Stripe could not say ({type(exc).__name__})", code=_code(exc)) from None

    def find_customer_charge(self, idempotency_key: str, account_id: str, token: str | None) -> ChargeResult | None:
        """Every PaymentIntent of the account's customer, newest first, matched on
        `metadata[idempotencyKey]`: a list is consistent at once, inside the key window and after."""
        try:
            card = StripeCard.parse(token) if token else None
            customer = card.customer if card and card.customer else self._customer(account_id)
            page = self._client.v1.payment_intents.list(params={"customer": customer, "limit": 100})
            intents = (pi.to_dict() for pi in page.auto_paging_iter())
            matches = [pi for pi in intents if (pi.get("metadata") or {}).get("idempotencyKey") == idempotency_key]
            return _best(matches, idempotency_key)
        except stripe.StripeError as exc:
            raise GatewayUnavailable(f"Stripe could not say ({type(exc).__name__})", code=_code(exc)) from None

    # -- 3-D Secure -----------------------------------------------------------------------------

    def begin_authentication(self, gateway_charge_id: str, account_id: str, return_url: str) -> Authentication:
        try:
            intent = self._own_intent(gateway_charge_id, account_id)
            if intent is None:
                return Authentication()
            if intent.status in ("requires_payment_method", "requires_confirmation"):
                error = intent.last_payment_error
                pm = intent.payment_method or (error.payment_method if error else None)
                pm_id = pm if isinstance(pm, str) else pm.id if pm is not None else None
                if pm_id is None:
                    return Authentication()
                intent = self._client.v1.payment_intents.confirm(
                    intent.id, params={"payment_method": pm_id, "return_url": return_url})
            action = intent.next_action
            if intent.status == "requires_action" and action is not None and action.redirect_to_url is not None:
                return Authentication(redirect_url=action.redirect_to_url.url)
            return Authentication(result=result_of(intent.to_dict(), None))
        except stripe.CardError as exc:
            pi = exc.error.payment_intent if exc.error else None
            return Authentication(result=result_of(pi.to_dict(), None) if pi is not None else None)
        except stripe.StripeError as exc:
            raise GatewayUnavailable(f"Stripe could not confirm ({type(exc).__name__})", code=_code(exc)) from None
        except ValueError as exc:
            raise GatewayUnavailable(str(exc), code="malformed_answer") from None

    def authenticated_charge(self, gateway_charge_id: str, account_id: str) -> ChargeResult | None:
        try:
            intent = self._own_intent(gateway_charge_id, account_id)
            return result_of(intent.to_dict(), None) if intent is not None else None
        except stripe.StripeError as exc:
            raise GatewayUnavailable(f"Stripe could not say ({type(exc).__name__})", code=_code(exc)) from None
        except ValueError as exc:
            raise GatewayUnavailable(str(exc), code="malformed_answer") from None

    def _own_intent(self, ident: str, account_id: str) -> stripe.PaymentIntent | None:
        if not ident.startswith("pi_"):
            return None
        try:
            intent = self._client.v1.payment_intents.retrieve(ident)
        except stripe.InvalidRequestError:
            return None
        meta = intent.to_dict().get("metadata") or {}
        if meta.get("accountId") != account_id or not meta.get("idempotencyKey"):
            return None
        return intent


def result_of(intent: dict[str, Any], idempotency_key: str | None) -> ChargeResult:
    """A PaymentIntent (as a dict: an SDK object's `to_dict()` or a webhook's `data.object`) as the
    charge it stands for. `idempotency_key` None: the one in its metadata. Raises ValueError for an
    intent that has no outcome yet or cannot be read."""
    try:
        meta = intent.get("metadata") or {}
        key = idempotency_key or str(meta["idempotencyKey"])
        status = intent["status"]
        amount = from_stripe(int(intent["amount"]), str(intent["currency"]))
        created = datetime.fromtimestamp(int(intent["created"]), UTC)
        ident = str(intent["id"])
    except (KeyError, TypeError, ValueError, MoneyError) as exc:
        raise ValueError("Stripe answered with an unreadable PaymentIntent") from exc
    if status == "succeeded":
        return ChargeResult(key, ident, "succeeded", amount, None, created)
    if status == "requires_action":
        return ChargeResult(key, ident, "declined", amount, AUTHENTICATION_REQUIRED, created)
    error = intent.get("last_payment_error") or {}
    if status == "requires_payment_method" and error:
        code = error.get("decline_code") or error.get("code") or "card_declined"
        return ChargeResult(key, ident, "declined", amount, str(code), created)
    if status == "canceled":
        return ChargeResult(key, ident, "declined", amount, "canceled", created)
    raise ValueError(f"the PaymentIntent has no outcome yet ({status})")


def _best(intents: list[dict[str, Any]], key: str) -> ChargeResult | None:
    """The charge under `key` among intents carrying it: a success wins, else the newest outcome."""
    results = []
    for intent in intents:
        try:
            results.append(result_of(intent, key))
        except ValueError as exc:
            raise GatewayUnavailable(str(exc), code="outcome_pending") from None
    if not results:
        return None
    return max(results, key=lambda r: (r.succeeded, r.created_at))


def _declined(exc: stripe.CardError) -> Declined:
    err = exc.error
    code = (err.decline_code if err else None) or exc.code or "card_declined"
    intent = err.payment_intent if err else None
    return Declined(code, intent.id if intent is not None else None)


def _code(exc: stripe.StripeError) -> str:
    if isinstance(exc, stripe.RateLimitError):
        return "rate_limit"
    if isinstance(exc, stripe.APIConnectionError):
        return "network_error"
    return exc.code or (f"http_{exc.http_status}" if exc.http_status else "api_error")


def _quoted(value: str) -> str:
    """A value inside a Search query's single quotes (identifiers never hold one; escape anyway)."""
    return value.replace("\\", "\\\\").replace("'", "\\'")
