"""What the Stripe sandbox holds, and Stripe's rules for changing it: Customers, PaymentMethods,
PaymentIntents, the Idempotency-Key window, the eventually consistent search index, and the
sandbox's clock. In memory, behind one lock; the HTTP layer is in server.py.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devstack.stripe_sandbox import currency
from devstack.stripe_sandbox.cards import TestCard, card_for_magic_id
from devstack.stripe_sandbox.errors import StripeError, invalid_request, missing, unknown_parameter

DEFAULT_API_VERSION = "2026-10-28.endive"  # the version the pinned `stripe` SDK speaks
IDEMPOTENCY_WINDOW_S = 24 * 3600
_ALPHABET = string.ascii_letters + string.digits

Json = dict[str, Any]


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


class Clock:
    """The sandbox's clock: real time plus an offset tests may move forward (never backward)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._offset += seconds

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0

    def to_json(self) -> Json:
        with self._lock:
            return {"now": int(time.time() + self._offset), "offsetSeconds": self._offset}


# -- Idempotency-Key ------------------------------------------------------------------------------


@dataclass
class IdempotentAnswer:
    route: str
    params: str  # canonical JSON of the parsed form
    created: float  # sandbox clock
    finished: bool = False
    status: int = 0
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class IdempotencyKeys:
    """Stripe keeps a key's first answer for 24 hours: the same key with the same parameters
    replays it (`Idempotent-Replayed: true`); with other parameters, or on another endpoint, it is
    a 400 `idempotency_error`; while the first request still runs, a 409. Only requests that
    started executing are kept: a validation error or a rate-limited request keeps nothing."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._answers: dict[str, IdempotentAnswer] = {}

    def begin(self, key: str, route: str, params: Json) -> IdempotentAnswer | None:
        """None: go ahead (the key is now in progress); else the answer to replay."""
        canonical = json.dumps(params, sort_keys=True)
        now = self._clock.now()
        with self._lock:
            self._expire(now)
            held = self._answers.get(key)
            if held is None:
                self._answers[key] = IdempotentAnswer(route, canonical, now)
                return None
            if held.route != route:
                raise StripeError(
                    400, "idempotency_error",
                    f"Keys for idempotent requests can only be used for the same endpoint they were first used "
                    f"for ('{held.route}' vs '{route}'). Try using a key other than '{key}' if you meant to "
                    "execute a different request.",
                )
            if held.params != canonical:
                raise StripeError(
                    400, "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters they were first "
                    f"used with. Try using a key other than '{key}' if you meant to execute a different request.",
                )
            if not held.finished:
                raise StripeError(
                    409, "invalid_request_error",
                    "There is currently another in-progress request using this Stripe-Idempotency-Key. "
                    "Please try again later.",
                    code="idempotency_key_in_use",
                )
            return held

    def finish(self, key: str, status: int, body: bytes, headers: dict[str, str]) -> None:
        with self._lock:
            held = self._answers.get(key)
            if held is not None:
                held.finished, held.status, held.body, held.headers = True, status, body, dict(headers)

    def forget(self, key: str) -> None:
        with self._lock:
            held = self._answers.get(key)
            if held is not None and not held.finished:
                del self._answers[key]

    def _expire(self, now: float) -> None:
        stale = [k for k, a in self._answers.items() if a.finished and now - a.created >= IDEMPOTENCY_WINDOW_S]
        for k in stale:
            del self._answers[k]

    def count(self) -> int:
        with self._lock:
            self._expire(self._clock.now())
            return len(self._answers)


# -- parameters -----------------------------------------------------------------------------------


def check_params(params: Json, allowed: set[str]) -> None:
    for name in params:
        if name not in allowed:
            raise unknown_parameter(name)


def _bool(params: Json, name: str, default: bool = False) -> bool:
    value = params.get(name)
    if value is None:
        return default
    if value in ("true", "false"):
        return bool(value == "true")
    raise invalid_request(f"Invalid boolean: {value}", param=name, code="parameter_invalid_boolean")


def _str(params: Json, name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise invalid_request(f"Invalid string: {value!r}", param=name, code="parameter_invalid_string_empty")
    return value


def _int(params: Json, name: str, *, required: bool = False) -> int | None:
    value = params.get(name)
    if value is None:
        if required:
            raise invalid_request(f"Missing required param: {name}.", param=name, code="parameter_missing")
        return None
    if not isinstance(value, str) or not re.fullmatch(r"-?[0-9]{1,19}", value):
        raise invalid_request(f"Invalid integer: {value}", param=name, code="parameter_invalid_integer")
    return int(value)


def expand_paths(params: Json) -> list[str]:
    value = params.get("expand", [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid_request("Invalid array", param="expand")
    return value


def apply_metadata(target: Json, params: Json) -> None:
    """Stripe's metadata rules: up to 50 keys of at most 40 characters, string values of at most
    500; an empty value unsets a key, `metadata=""` unsets them all."""
    if "metadata" not in params:
        return
    value = params["metadata"]
    if value == "":
        target["metadata"] = {}
        return
    if not isinstance(value, dict):
        raise invalid_request("Invalid hash", param="metadata", code="parameter_invalid_empty")
    merged = dict(target.get("metadata") or {})
    for key, item in value.items():
        if not isinstance(item, str):
            raise invalid_request(f"Invalid value for metadata[{key}]: metadata values must be strings.",
                                  param=f"metadata[{key}]")
        if len(key) > 40:
            raise invalid_request(f"Metadata key length can't exceed 40 characters ({key}).", param="metadata")
        if len(item) > 500:
            raise invalid_request(f"Metadata values can have up to 500 characters, but you passed in a value "
                                  f"that is {len(item)} characters.", param=f"metadata[{key}]")
        if item == "":
            merged.pop(key, None)
        else:
            merged[key] = item
    if len(merged) > 50:
        raise invalid_request("You can have up to 50 metadata keys.", param="metadata")
    target["metadata"] = merged


# -- search ----------------------------------------------------------------------------------------

_CLAUSE = re.compile(
    r"""\s*(-?)(metadata\[(?:'([^']*)'|"([^"]*)")\]|[a-z_]+)\s*(:|>=|<=|>|<)\s*(?:'([^']*)'|"([^"]*)"|([0-9]+))\s*"""
)
SEARCH_FIELDS = {
    "payment_intent": {"amount", "created", "currency", "customer", "status"},
    "customer": {"created", "email", "name", "phone"},
}


@dataclass(frozen=True)
class Clause:
    negate: bool
    field: str  # "metadata" for metadata clauses
    key: str | None
    op: str
    value: str

    def matches(self, obj: Json) -> bool:
        have = (obj.get("metadata") or {}).get(self.key or "") if self.field == "metadata" else obj.get(self.field)
        if self.op == ":":
            ok = have is not None and str(have) == self.value
        else:
            if not isinstance(have, int):
                return False
            want = int(self.value)
            ok = {">": have > want, "<": have < want, ">=": have >= want, "<=": have <= want}[self.op]
        return ok != self.negate


def parse_query(query: str, kind: str) -> tuple[str, list[Clause]]:
    """Stripe's search query language, the part adapters use: `field:'value'` clauses (metadata
    as `metadata['key']:'value'`, numbers compared with > < >= <=, `-` negates) joined all by
    AND or all by OR. Returns ("AND" | "OR", clauses)."""
    if not query.strip():
        raise invalid_request("The query parameter is required and must not be empty.", param="query")
    parts = re.split(r"\s+(AND|OR)\s+", query.strip())
    joins = set(parts[1::2])
    if len(joins) > 1:
        raise invalid_request("Queries cannot mix AND and OR.", param="query")
    if len(parts[0::2]) > 10:
        raise invalid_request("Queries may contain at most 10 clauses.", param="query")
    clauses = []
    for text in parts[0::2]:
        m = _CLAUSE.fullmatch(text)
        if m is None:
            raise invalid_request(f"Invalid query: could not parse `{text}`. Clauses look like "
                                  "`field:'value'` or `metadata['key']:'value'`.", param="query")
        negate, name, k1, k2, op, v1, v2, v3 = m.groups()
        if name.startswith("metadata["):
            clauses.append(Clause(bool(negate), "metadata", k1 if k1 is not None else k2, ":", v1 or v2 or ""))
            continue
        if name not in SEARCH_FIELDS[kind]:
            raise invalid_request(f"Field `{name}` is an unsupported search field for resource `{kind}s`.",
                                  param="query")
        value = v1 if v1 is not None else v2 if v2 is not None else v3
        if op != ":" and v3 is None:
            raise invalid_request(f"Field `{name}` compares only with numbers.", param="query")
        clauses.append(Clause(bool(negate), name, None, op, value))
    return (joins.pop() if joins else "AND"), clauses


# -- objects ---------------------------------------------------------------------------------------


def customer_object(now: float) -> Json:
    return {
        "id": new_id("cus_", 14),
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": int(now),
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": None,
        "invoice_prefix": "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8)),
        "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None,
                             "rendering_options": None},
        "livemode": False,
        "metadata": {},
        "name": None,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def payment_method_object(card: TestCard, now: float) -> Json:
    year, month = time.gmtime(now)[:2]
    return {
        "id": new_id("pm_"),
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": {
            "address": {"city": None, "country": None, "line1": None, "line2": None, "postal_code": None,
                        "state": None},
            "email": None,
            "name": None,
            "phone": None,
        },
        "card": {
            "brand": card.brand,
            "checks": {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "pass"},
            "country": card.country,
            "display_brand": card.brand,
            "exp_month": month,
            "exp_year": year + 1,
            "fingerprint": hashlib.sha256(card.name.encode()).hexdigest()[:16],
            "funding": card.funding,
            "generated_from": None,
            "last4": card.last4,
            "networks": {"available": [card.brand], "preferred": None},
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
        "created": int(now),
        "customer": None,
        "livemode": False,
        "metadata": {},
        "type": "card",
    }


def payment_intent_object(amount: int, cur: str, now: float) -> Json:
    ident = new_id("pi_")
    return {
        "id": ident,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": f"{ident}_secret_{new_id('', 25)}",
        "confirmation_method": "automatic",
        "created": int(now),
        "currency": cur,
        "customer": None,
        "description": None,
        "invoice": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_configuration_details": None,
        "payment_method_options": {
            "card": {"installments": None, "mandate_options": None, "network": None,
                     "request_three_d_secure": "automatic"}
        },
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "requires_payment_method",
        "transfer_data": None,
        "transfer_group": None,
    }


@dataclass
class IntentNotes:
    """What the sandbox knows about a PaymentIntent beyond the object: for the dev listings."""

    idempotency_key: str | None
    card: TestCard | None = None
    attempts: int = 0
    off_session: bool = False
    created_precise: float = 0.0


@dataclass
class RequestContext:
    request_id: str
    idempotency_key: str | None
    api_version: str
    base_url: str  # where the 3-D Secure page is served


# -- the store -------------------------------------------------------------------------------------

PI_CREATE = {
    "amount", "currency", "customer", "payment_method", "confirm", "off_session", "metadata", "return_url",
    "description", "expand", "payment_method_types", "capture_method", "confirmation_method",
    "error_on_requires_action", "receipt_email", "statement_descriptor", "statement_descriptor_suffix",
    "setup_future_usage", "use_stripe_sdk", "automatic_payment_methods",
}
PI_CONFIRM = {"payment_method", "off_session", "return_url", "expand", "error_on_requires_action", "use_stripe_sdk",
              "receipt_email", "setup_future_usage"}
CUSTOMER_CREATE = {"metadata", "email", "name", "description", "phone", "payment_method", "invoice_settings",
                   "expand", "preferred_locales", "address"}
CUSTOMER_UPDATE = CUSTOMER_CREATE - {"payment_method"}


class Store:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.customers: dict[str, Json] = {}
        self.payment_methods: dict[str, Json] = {}
        self.intents: dict[str, Json] = {}
        self.notes: dict[str, IntentNotes] = {}
        self._seq: dict[str, int] = {}
        self._snapshots: dict[str, list[tuple[float, Json]]] = {}
        self.search_lag = 1.0  # seconds before a change shows in search results
        self.validate_on_attach = True
        self.on_event: Callable[[Json], None] = lambda event: None
        self.events: list[Json] = []
        self.pm_cards: dict[str, TestCard] = {}  # which test card each PaymentMethod is
        self._return_urls: dict[str, str | None] = {}

    # -- bookkeeping

    def _keep(self, table: dict[str, Json], obj: Json, *, indexed: bool) -> None:
        ident = obj["id"]
        if ident not in self._seq:
            self._seq[ident] = len(self._seq)
        table[ident] = obj
        if indexed:
            visible = self.clock.now() + self.search_lag
            snaps = self._snapshots.setdefault(ident, [])
            snaps.append((visible, copy.deepcopy(obj)))
            now = self.clock.now()
            while len(snaps) > 1 and snaps[1][0] <= now:  # drop what a newer visible snapshot hides
                snaps.pop(0)

    def _order(self, ident: str) -> tuple[int, int]:
        table = self.intents if ident.startswith("pi_") else self.customers
        return table[ident]["created"], self._seq[ident]

    def _event(self, kind: str, obj: Json, ctx: RequestContext | None) -> None:
        event = {
            "id": new_id("evt_"),
            "object": "event",
            "api_version": ctx.api_version if ctx else DEFAULT_API_VERSION,
            "created": int(self.clock.now()),
            "data": {"object": copy.deepcopy(obj)},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": ctx.request_id if ctx else None,
                        "idempotency_key": ctx.idempotency_key if ctx else None},
            "type": kind,
        }
        self.events.append(event)
        self.on_event(event)

    # -- customers

    def create_customer(self, params: Json) -> Json:
        check_params(params, CUSTOMER_CREATE)
        with self.lock:
            cus = customer_object(self.clock.now())
            self._customer_fields(cus, params)
            pm_ref = _str(params, "payment_method")
            if pm_ref is not None:
                pm = self.materialise(pm_ref, "payment_method")
                self._attach(pm, cus)
            self._default_pm(cus, params)
            self._keep(self.customers, cus, indexed=True)
            return cus

    def update_customer(self, ident: str, params: Json) -> Json:
        check_params(params, CUSTOMER_UPDATE)
        with self.lock:
            cus = self.get_customer(ident)
            updated = copy.deepcopy(cus)
            self._customer_fields(updated, params)
            self._default_pm(updated, params)
            self._keep(self.customers, updated, indexed=True)
            return updated

    def get_customer(self, ident: str, *, param: str = "id", status: int = 404) -> Json:
        with self.lock:
            cus = self.customers.get(ident)
            if cus is None:
                raise missing("customer", ident, param).with_status(status)
            return cus

    def _customer_fields(self, cus: Json, params: Json) -> None:
        for name in ("email", "name", "description", "phone"):
            if name in params:
                cus[name] = _str(params, name)
        apply_metadata(cus, params)

    def _default_pm(self, cus: Json, params: Json) -> None:
        settings = params.get("invoice_settings")
        if settings is None:
            return
        if not isinstance(settings, dict):
            raise invalid_request("Invalid hash", param="invoice_settings")
        for name in settings:
            if name not in ("default_payment_method", "custom_fields", "footer", "rendering_options"):
                raise unknown_parameter(f"invoice_settings[{name}]")
        if "default_payment_method" in settings:
            ref = settings["default_payment_method"]
            param = "invoice_settings[default_payment_method]"
            if ref == "":
                cus["invoice_settings"]["default_payment_method"] = None
                return
            pm = self.payment_methods.get(ref) if isinstance(ref, str) else None
            if pm is None or pm["customer"] != cus["id"]:
                raise invalid_request(
                    f"The customer does not have a payment method with the ID {ref}. The payment method must "
                    "be attached to the customer.", param=param, code="resource_missing")
            cus["invoice_settings"]["default_payment_method"] = ref

    # -- payment methods

    def materialise(self, ref: str, param: str, *, status: int = 400) -> Json:
        """A stored PaymentMethod by id; a magic test id (`pm_card_visa`) makes a new one each
        time, as Stripe does."""
        with self.lock:
            if ref in self.payment_methods:
                return self.payment_methods[ref]
            card = card_for_magic_id(ref) if ref.startswith("pm_card_") else None
            if card is None:
                raise missing("PaymentMethod", ref, param).with_status(status)
            return self._new_pm(card, {})

    def _new_pm(self, card: TestCard, params: Json) -> Json:
        pm = payment_method_object(card, self.clock.now())
        apply_metadata(pm, params)
        self.pm_cards[pm["id"]] = card
        self._keep(self.payment_methods, pm, indexed=False)
        return pm

    def create_payment_method(self, params: Json) -> Json:
        check_params(params, {"type", "card", "billing_details", "metadata", "expand"})
        kind = _str(params, "type")
        if kind is None:
            raise invalid_request("Missing required param: type.", param="type", code="parameter_missing")
        if kind != "card":
            raise invalid_request(f"The sandbox only makes card PaymentMethods, not `{kind}`.", param="type",
                                  code="parameter_invalid_empty")
        card_params = params.get("card")
        if not isinstance(card_params, dict):
            raise invalid_request("Missing required param: card.", param="card", code="parameter_missing")
        if "number" in card_params:
            raise invalid_request(
                "Sending credit card numbers directly to the Stripe API is generally unsafe. To continue "
                "processing use Stripe.js, the Stripe mobile bindings, or Stripe Elements. In test mode use a "
                "test token (`tok_visa`) or test PaymentMethod (`pm_card_visa`).", param="card[number]")
        for name in card_params:
            if name != "token":
                raise unknown_parameter(f"card[{name}]")
        token = card_params.get("token")
        card = card_for_magic_id(token) if isinstance(token, str) and token.startswith("tok_") else None
        if card is None:
            raise invalid_request(f"No such token: '{token}'", param="card[token]", code="resource_missing")
        with self.lock:
            return self._new_pm(card, params)

    def attach(self, ref: str, params: Json) -> Json:
        check_params(params, {"customer", "expand"})
        customer = _str(params, "customer")
        if customer is None:
            raise invalid_request("Missing required param: customer.", param="customer", code="parameter_missing")
        with self.lock:
            pm = self.materialise(ref, "payment_method", status=404)
            cus = self.get_customer(customer, param="customer", status=400)
            self._attach(pm, cus)
            return pm

    def _attach(self, pm: Json, cus: Json) -> None:
        if pm["customer"] == cus["id"]:
            return
        if pm["customer"] is not None:
            raise invalid_request("The payment method you provided has already been attached to a customer.",
                                  param="payment_method", code="payment_method_unexpected_state")
        card = self.pm_cards.get(pm["id"])
        if self.validate_on_attach and card is not None and card.declines and card.declines_on_attach:
            raise StripeError(402, "card_error", card.message or "Your card was declined.", code=card.code,
                              decline_code=card.decline_code, param="", payment_method=copy.deepcopy(pm))
        pm["customer"] = cus["id"]

    # -- payment intents

    def create_intent(self, params: Json, ctx: RequestContext, decline: Callable[[], str | None]) -> Json:
        """Create (and with confirm=true, charge) a PaymentIntent. A decline raises the 402
        card_error with the PaymentIntent embedded, after the intent was kept."""
        check_params(params, PI_CREATE)
        amount = _int(params, "amount", required=True)
        cur = _str(params, "currency")
        if cur is None:
            raise invalid_request("Missing required param: currency.", param="currency", code="parameter_missing")
        if not currency.is_supported(cur.lower()):
            raise invalid_request(f"Invalid currency: {cur.lower()}. Stripe currently supports ISO 4217 "
                                  "currencies in lower case.", param="currency")
        assert amount is not None
        problem = currency.amount_problem(amount, cur)
        if problem is not None:
            raise invalid_request(problem[1], param="amount", code=problem[0])
        confirm = _bool(params, "confirm")
        off_session = self._off_session(params)
        if off_session and not confirm:
            raise invalid_request("You may only specify `off_session` when `confirm` is `true`.",
                                  param="off_session")
        if params.get("capture_method") not in (None, "automatic", "automatic_async"):
            raise invalid_request("The sandbox captures automatically only.", param="capture_method")
        with self.lock:
            pi = payment_intent_object(amount, cur.lower(), self.clock.now())
            cus_id = _str(params, "customer")
            if cus_id is not None:
                self.get_customer(cus_id, param="customer", status=400)
                pi["customer"] = cus_id
            for name in ("description", "receipt_email", "statement_descriptor", "statement_descriptor_suffix",
                         "setup_future_usage"):
                if name in params:
                    pi[name] = _str(params, name)
            apply_metadata(pi, params)
            pm_ref = _str(params, "payment_method")
            pm = self._intent_pm(pi, pm_ref) if pm_ref is not None else None
            if pm is not None:
                pi["payment_method"] = pm["id"]
                pi["status"] = "requires_confirmation"
            if confirm and pm is None:
                raise invalid_request(
                    "You cannot confirm this PaymentIntent because it's missing a payment method. To confirm the "
                    "PaymentIntent with cus_xxx, specify a payment method attached to this customer along with "
                    "the customer ID.", param="payment_method", code="payment_intent_unexpected_state")
            self.notes[pi["id"]] = IntentNotes(ctx.idempotency_key, created_precise=self.clock.now())
            self._keep(self.intents, pi, indexed=True)
            self._event("payment_intent.created", pi, ctx)
        if confirm:
            assert pm is not None
            return self._attempt(pi["id"], pm, params, off_session, ctx, decline)
        return pi

    def confirm_intent(self, ident: str, params: Json, ctx: RequestContext,
                       decline: Callable[[], str | None]) -> Json:
        check_params(params, PI_CONFIRM)
        off_session = self._off_session(params)
        with self.lock:
            pi = self.get_intent(ident)
            if pi["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
                raise invalid_request(
                    f"You cannot confirm this PaymentIntent because it has a status of {pi['status']}. Only a "
                    "PaymentIntent with one of the following statuses may be confirmed: requires_confirmation, "
                    "requires_payment_method, requires_action.", param=None,
                    code="payment_intent_unexpected_state")
            pm_ref = _str(params, "payment_method") or pi["payment_method"]
            if pm_ref is None:
                raise invalid_request(
                    "You cannot confirm this PaymentIntent because it's missing a payment method.",
                    param="payment_method", code="payment_intent_unexpected_state")
            pm = self._intent_pm(pi, pm_ref)
        return self._attempt(ident, pm, params, off_session, ctx, decline)

    def get_intent(self, ident: str) -> Json:
        with self.lock:
            pi = self.intents.get(ident)
            if pi is None:
                raise missing("payment_intent", ident, "intent")
            return pi

    def _off_session(self, params: Json) -> bool:
        value = params.get("off_session")
        if value in ("one_off", "recurring"):
            return True
        return _bool(params, "off_session")

    def _intent_pm(self, pi: Json, ref: str) -> Json:
        pm = self.materialise(ref, "payment_method")
        if pi["customer"] is not None and pm["customer"] not in (None, pi["customer"]):
            raise invalid_request(f"The provided PaymentMethod {pm['id']} belongs to another Customer than "
                                  f"{pi['customer']}.", param="payment_method")
        return pm

    def _attempt(self, ident: str, pm: Json, params: Json, off_session: bool, ctx: RequestContext,
                 decline: Callable[[], str | None]) -> Json:
        """Charge the PaymentIntent with `pm`, as Stripe's confirmation does."""
        card = self.pm_cards.get(pm["id"])
        forced = decline()
        with self.lock:
            pi = copy.deepcopy(self.intents[ident])
            notes = self.notes[ident]
            notes.attempts += 1
            notes.card, notes.off_session = card, off_session
            pi["payment_method"], pi["next_action"], pi["last_payment_error"] = pm["id"], None, None
            return_url = _str(params, "return_url")
            no_action = off_session or _bool(params, "error_on_requires_action")
            code = decline_code = message = None
            if forced is not None:
                code = forced if forced in _OWN_CODES else "card_declined"
                decline_code, message = forced, _MESSAGES.get(forced, "Your card was declined.")
            elif card is not None and card.declines:
                code, decline_code, message = card.code, card.decline_code, card.message
            elif card is not None and card.requires_authentication and no_action:
                code = decline_code = "authentication_required"
                message = "Your card was declined. This transaction requires authentication."
            elif card is not None and card.requires_authentication:
                url = f"{ctx.base_url}/3ds/{ident}?client_secret={pi['client_secret']}"
                pi["status"] = "requires_action"
                if return_url is not None:
                    pi["next_action"] = {"type": "redirect_to_url",
                                         "redirect_to_url": {"return_url": return_url, "url": url}}
                else:
                    pi["next_action"] = {"type": "use_stripe_sdk",
                                         "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": url,
                                                            "source": new_id("src_")}}
                self._return_urls[ident] = return_url
                self._keep(self.intents, pi, indexed=True)
                self._event("payment_intent.requires_action", pi, ctx)
                return pi
            charge = new_id("ch_")
            pi["latest_charge"] = charge
            if code is None:
                pi["status"], pi["amount_received"] = "succeeded", pi["amount"]
                self._keep(self.intents, pi, indexed=True)
                self._event("payment_intent.succeeded", pi, ctx)
                return pi
            error = {"charge": charge, "code": code, "decline_code": decline_code,
                     "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
                     "message": message, "payment_method": copy.deepcopy(pm), "type": "card_error"}
            pi["status"], pi["payment_method"], pi["last_payment_error"] = "requires_payment_method", None, error
            self._keep(self.intents, pi, indexed=True)
            self._event("payment_intent.payment_failed", pi, ctx)
            raise StripeError(402, "card_error", message or "Your card was declined.", code=code,
                              decline_code=decline_code, charge=charge, payment_intent=copy.deepcopy(pi),
                              payment_method=copy.deepcopy(pm))

    def authenticate(self, ident: str, success: bool, base_url: str) -> tuple[Json, str | None]:
        """The customer's answer on the 3-D Secure page. Returns the intent and its return_url."""
        ctx = RequestContext(new_id("req_", 14), None, DEFAULT_API_VERSION, base_url)
        with self.lock:
            pi = copy.deepcopy(self.get_intent(ident))
            if pi["status"] != "requires_action":
                return pi, self._return_urls.get(ident)
            pm = self.payment_methods[pi["payment_method"]]
            pi["next_action"] = None
            pi["latest_charge"] = new_id("ch_")
            if success:
                pi["status"], pi["amount_received"] = "succeeded", pi["amount"]
                self._keep(self.intents, pi, indexed=True)
                self._event("payment_intent.succeeded", pi, ctx)
            else:
                pi["status"], pi["payment_method"] = "requires_payment_method", None
                pi["last_payment_error"] = {
                    "code": "payment_intent_authentication_failure",
                    "doc_url": "https://stripe.com/docs/error-codes/payment-intent-authentication-failure",
                    "message": "The provided PaymentMethod has failed authentication. You can provide "
                               "payment_method_data or a new PaymentMethod to attempt to fulfill this "
                               "PaymentIntent again.",
                    "payment_method": copy.deepcopy(pm),
                    "type": "invalid_request_error",
                }
                self._keep(self.intents, pi, indexed=True)
                self._event("payment_intent.payment_failed", pi, ctx)
            return pi, self._return_urls.get(ident)

    # -- lists and search

    def list_intents(self, params: Json) -> Json:
        check_params(params, {"customer", "limit", "starting_after", "ending_before", "expand", "created"})
        limit = _limit(params)
        customer = _str(params, "customer")
        after, before = _str(params, "starting_after"), _str(params, "ending_before")
        created = params.get("created")
        with self.lock:
            rows = [pi for pi in self.intents.values() if customer is None or pi["customer"] == customer]
            if created is not None:
                rows = [pi for pi in rows if _created_matches(pi["created"], created)]
            rows.sort(key=lambda pi: self._order(pi["id"]), reverse=True)  # newest first
            if after is not None:
                ids = [pi["id"] for pi in rows]
                if after not in self.intents:
                    raise missing("payment_intent", after, "starting_after").with_status(400)
                rows = rows[ids.index(after) + 1:] if after in ids else []
            elif before is not None:
                ids = [pi["id"] for pi in rows]
                if before not in self.intents:
                    raise missing("payment_intent", before, "ending_before").with_status(400)
                rows = rows[: ids.index(before)] if before in ids else []
                return {"object": "list", "data": rows[-limit:], "has_more": len(rows) > limit,
                        "url": "/v1/payment_intents"}
            return {"object": "list", "data": rows[:limit], "has_more": len(rows) > limit,
                    "url": "/v1/payment_intents"}

    def search(self, kind: str, params: Json) -> Json:
        check_params(params, {"query", "limit", "page", "expand"})
        join, clauses = parse_query(_str(params, "query") or "", kind)
        limit = _limit(params)
        page = _str(params, "page")
        offset = 0
        if page is not None:
            m = re.fullmatch(r"page_([0-9]{1,9})", page)
            if m is None:
                raise invalid_request(f"Invalid page: {page}", param="page")
            offset = int(m.group(1))
        now = self.clock.now()
        table = self.intents if kind == "payment_intent" else self.customers
        with self.lock:
            found = []
            for ident in table:
                visible = [snap for at, snap in self._snapshots.get(ident, []) if at <= now]
                if not visible:
                    continue
                snap = visible[-1]
                hits = [c.matches(snap) for c in clauses]
                if (all(hits) if join == "AND" else any(hits)):
                    found.append(copy.deepcopy(snap))
            found.sort(key=lambda o: self._order(o["id"]), reverse=True)
        data = found[offset: offset + limit]
        more = len(found) > offset + limit
        return {"object": "search_result", "data": data, "has_more": more,
                "next_page": f"page_{offset + limit}" if more else None,
                "url": f"/v1/{kind}s/search"}

    # -- expansion

    def expand(self, obj: Json, paths: list[str]) -> Json:
        """Stripe's `expand[]` for the fields adapters expand: a PaymentIntent's `payment_method` and
        `customer`, a Customer's `invoice_settings.default_payment_method`; lists and search results
        take `data.` in front."""
        if not paths:
            return obj
        out = copy.deepcopy(obj)
        with self.lock:
            for path in paths:
                self._expand_one(out, path.split("."), path)
        return out

    def _expand_one(self, obj: Json, parts: list[str], full: str) -> None:
        if obj.get("object") in ("list", "search_result") and parts[0] == "data":
            for item in obj["data"]:
                self._expand_one(item, parts[1:], full)
            return
        kind, name = obj.get("object"), parts[0]
        if kind == "customer" and parts == ["invoice_settings", "default_payment_method"]:
            ref = obj["invoice_settings"]["default_payment_method"]
            if isinstance(ref, str):
                obj["invoice_settings"]["default_payment_method"] = copy.deepcopy(self.payment_methods[ref])
            return
        if len(parts) == 1 and name in ("customer", "payment_method") and kind in ("payment_intent",
                                                                                    "payment_method"):
            ref = obj.get(name)
            table = self.customers if name == "customer" else self.payment_methods
            if isinstance(ref, str) and ref in table:
                obj[name] = copy.deepcopy(table[ref])
            return
        raise invalid_request(f"This property cannot be expanded ({full}).", param="expand")


_OWN_CODES = {"expired_card", "incorrect_cvc", "processing_error", "incorrect_number", "authentication_required"}
_MESSAGES = {
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
    "authentication_required": "Your card was declined. This transaction requires authentication.",
}


def _limit(params: Json) -> int:
    limit = _int(params, "limit")
    if limit is None:
        return 10
    if not 1 <= limit <= 100:
        raise invalid_request("This value must be between 1 and 100.", param="limit",
                              code="parameter_invalid_integer")
    return limit


def _created_matches(created: int, spec: Any) -> bool:
    if isinstance(spec, str):
        return created == int(spec) if spec.isdigit() else False
    if not isinstance(spec, dict):
        return False
    for op, value in spec.items():
        if not isinstance(value, str) or not value.isdigit():
            raise invalid_request(f"Invalid integer: {value}", param=f"created[{op}]")
        bound = int(value)
        ok = {"gt": created > bound, "gte": created >= bound, "lt": created < bound,
              "lte": created <= bound}.get(op)
        if ok is None:
            raise unknown_parameter(f"created[{op}]")
        if not ok:
            return False
    return True
