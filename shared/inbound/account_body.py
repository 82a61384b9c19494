"""Reading the body of `PUT /api/accounts/{id}` into a `Registration`, refusing card data.

Only gateway tokens are accepted. Something that looks like a card number or carries a CVV is
refused with the field named and is never echoed back or logged.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator

from shared.domain.identifiers import ID_PATTERN, is_identifier_field
from shared.domain.limits import MAX_SUBSCRIPTIONS
from shared.inbound.card_data import contains_card_number, is_card_field, mask_card_numbers
from shared.inbound.free_text import printable
from shared.inbound.rfc3339 import parse_rfc3339

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_PATTERN = rf"^[^@\s<>()\[\],;:\"\x00-\x1f\x7f]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$"
TOKEN_PATTERN = r"^tok_[A-Za-z0-9_]{1,96}$"
_FORBIDDEN_KEYS = {"number"}  # besides every card_data.CARD_FIELD_NAMES: a card body's `number`


class FieldProblem(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidRequest(ValueError):
    """Validation problems, each naming its field (problem+json `errors`)."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


_SCALARS = (str, int, float, Decimal)  # a number is read as its digits: `4111111111111111.0` too
_LOOKS_LIKE_A_CARD = "a value that looks like a card number was refused and not stored; send a gateway token"


def refuse_card_data(body: Any, path: str = "") -> None:
    """Raise if any key, string or number in the body looks like raw card data (`shared.inbound.card_data`);
    an identifier field (`subscriptions[].id`) is an identifier, never card data (contract §1).
    The field is named with any card number in its own name masked, so it is never echoed."""
    if isinstance(body, dict):
        for key, value in body.items():
            if is_identifier_field(str(key), value):
                continue  # an identifier is applied whatever digits it holds (contract §1)
            where = f"{path}.{mask_card_numbers(str(key))}" if path else mask_card_numbers(str(key))
            if is_card_field(str(key)) or str(key).lower() in _FORBIDDEN_KEYS:
                raise InvalidRequest([FieldProblem(where, "card numbers and security codes are never accepted; "
                                                          "send a gateway token")])
            if contains_card_number(str(key)):
                raise InvalidRequest([FieldProblem(where, _LOOKS_LIKE_A_CARD)])
            refuse_card_data(value, where)
    elif isinstance(body, list):
        for i, value in enumerate(body):
            refuse_card_data(value, f"{path}.{i}" if path else str(i))
    elif isinstance(body, _SCALARS) and not isinstance(body, bool) and contains_card_number(str(body)):
        raise InvalidRequest([FieldProblem(path or "body", _LOOKS_LIKE_A_CARD)])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class CardMethodBody(_Strict):
    type: Literal["card"]
    token: Annotated[StrictStr, Field(pattern=TOKEN_PATTERN)]


class InvoiceMethodBody(_Strict):
    type: Literal["invoice"]


FreeText = Annotated[StrictStr, Field(min_length=1, max_length=200), AfterValidator(printable)]
"""A name people read in emails and on the billing page (`shared.inbound.free_text`)."""


class SubscriptionBody(_Strict):
    id: Annotated[StrictStr, Field(pattern=ID_PATTERN)]
    name: FreeText


class AccountBody(_Strict):
    displayName: FreeText
    locale: Literal["en", "zh-CN"] = "en"
    billingContacts: Annotated[list[Annotated[StrictStr, Field(pattern=EMAIL_PATTERN, max_length=254),
                                              AfterValidator(printable)]],
                               Field(min_length=1, max_length=5)]
    paymentMethod: Annotated[CardMethodBody | InvoiceMethodBody, Field(discriminator="type")] | None = None
    subscriptions: Annotated[list[SubscriptionBody], Field(max_length=MAX_SUBSCRIPTIONS)] = []

    @field_validator("subscriptions")
    @classmethod
    def _distinct_ids(cls, subs: list[SubscriptionBody]) -> list[SubscriptionBody]:
        if len({s.id for s in subs}) != len(subs):
            raise ValueError("subscription ids must be distinct")
        return subs

    @field_validator("billingContacts")
    @classmethod
    def _distinct_contacts(cls, contacts: list[str]) -> list[str]:
        if len({c.lower() for c in contacts}) != len(contacts):
            raise ValueError("billing contacts must be distinct")
        return contacts


class DunningBody(_Strict):
    """`PUT /api/accounts/{id}/dunning`: `pausedUntil`, an RFC 3339 time, or null to resume now."""

    pausedUntil: StrictStr | None

    def paused_until(self) -> datetime | None:
        if self.pausedUntil is None:
            return None
        try:
            return parse_rfc3339(self.pausedUntil)
        except ValueError as exc:
            raise InvalidRequest([FieldProblem("pausedUntil", str(exc))]) from exc


class PaymentMethodBody(_Strict):
    token: Annotated[StrictStr, Field(pattern=TOKEN_PATTERN)]


def problems_of(exc: ValidationError) -> InvalidRequest:
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith(("function-after", "tagged-union"))]
        # pydantic puts the union tag in the path; a person wants the JSON path
        loc = [p for p in loc if p not in ("card", "invoice")]
        field = ".".join(loc) or "body"
        problems.append(FieldProblem(field, err["msg"]))
    return InvalidRequest(problems)


def parse_body(model: type[_Strict], body: Any) -> Any:
    try:
        refuse_card_data(body)
    except RecursionError as exc:
        raise InvalidRequest([FieldProblem("body", "JSON nested too deeply")]) from exc
    if not isinstance(body, dict):
        raise InvalidRequest([FieldProblem("body", "must be a JSON object")])
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise problems_of(exc) from exc
