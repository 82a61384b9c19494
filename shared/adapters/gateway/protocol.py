"""The payment gateway as the product sees it: an interface, its value types and its errors.

Shaped after real card processors (Stripe): a card is saved from a token, a charge carries an
idempotency key, a decline is an answer (not an exception), and a charge can be read back by its
key. That read-back is how the product recovers when the gateway charged but the answer was lost
(timeout, crash) before our own commit: ask again with the same key, or `find_charge` it.

Every answer a charge can get maps to one `ChargeAnswer`:

| the gateway answered                                   | `ChargeAnswer` | money moved?        |
|--------------------------------------------------------|----------------|---------------------|
| 2xx with a readable charge                             | `Charged`      | yes, its `amount`   |
| 402 with a readable charge (any decline code)          | `Declined`     | no                  |
| 400, 401, 403, 404, 409 (not a key conflict), 422      | `Refused`      | no, nothing at all  |
| 429 or 5xx after the retries, a timeout, no connection,| `Unanswered`   | unknown: read it    |
| a malformed body, 409 `idempotency_conflict`, the rest |                | back by its key     |
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from shared.domain.charge_answers import ChargeAnswer, Charged, Declined
from shared.domain.declines import decline_kind
from shared.domain.money import Money
from shared.inbound.card_data import mask_card_numbers

ChargeResultStatus = Literal["succeeded", "declined"]


@dataclass(frozen=True)
class CardDetails:
    """What the gateway tells us about a saved card: never the number itself."""

    brand: str
    last4: str
    exp_month: int
    exp_year: int
    token: str | None = None
    """What to keep and charge from now on, when the gateway makes its own reference of the card
    (Stripe: the attached PaymentMethod and its Customer); None: the token that was given."""


@dataclass(frozen=True)
class ChargeResult:
    """The outcome of one charge attempt, as the gateway recorded it under its idempotency key."""

    idempotency_key: str
    gateway_charge_id: str | None
    status: ChargeResultStatus
    amount: Money
    decline_code: str | None
    created_at: datetime

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def soft_decline(self) -> bool:
        """True for a decline worth retrying later; False for a success or a hard decline."""
        return self.status == "declined" and decline_kind(self.decline_code) == "soft"


def answer_of(result: ChargeResult) -> Charged | Declined:
    """A charge the gateway recorded, as the answer it stands for."""
    if result.succeeded:
        return Charged(result.amount, result.gateway_charge_id)
    return Declined(result.decline_code, result.gateway_charge_id)


class GatewayError(Exception):
    """Base of every error the gateway adapters raise; `code` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        code, message = mask_card_numbers(code), mask_card_numbers(message)  # outside text, as above
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class CardRejected(GatewayError):
    """The token is unknown or invalid: there is no card to save or to charge."""


class CardDeclined(GatewayError):
    """The processor declined the card while saving it (Stripe checks a card when it is attached to
    a Customer): nothing was saved, nothing charged. `code` is the processor's decline code."""

    def __init__(self, decline_code: str, message: str) -> None:
        super().__init__(decline_code, message)


class GatewayUnavailable(GatewayError):
    """Transient trouble (network, timeout, 5xx) that outlasted the retries. The outcome of a charge
    is unknown: retry with the SAME idempotency key, or `find_charge` it, never a new key."""

    def __init__(self, message: str, code: str = "gateway_unavailable") -> None:
        super().__init__(code, message)


@runtime_checkable
class PaymentGateway(Protocol):
    def save_card(self, token: str) -> CardDetails:
        """Validate a card token and describe the card. Raises `CardRejected` if unknown/invalid."""
        ...

    def charge(
        self, *, idempotency_key: str, amount: Money, token: str, account_id: str, description: str
    ) -> ChargeAnswer:
        """Charge the card once per idempotency key; every answer is a `ChargeAnswer`, never an
        exception. A repeated key answers what the FIRST request did and charges nothing."""
        ...

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        """The charge made under this key, or None if the gateway never recorded one. Raises
        `GatewayUnavailable` when the gateway cannot say."""
        ...

    def max_charge(self, currency: str) -> int:
        """The most one charge may carry in `currency`, in minor units: the processor's limit,
        which settlement splits larger balances under."""
        ...


@dataclass(frozen=True)
class Authentication:
    """Where a charge that waits for the customer's bank stands: `redirect_url` is the bank's page
    to send the customer to; else `result` is how the charge ended (None: not ours to confirm)."""

    redirect_url: str | None = None
    result: ChargeResult | None = None


@runtime_checkable
class CustomerGateway(Protocol):
    """A gateway that keeps each account's cards on a customer of its own (Stripe's Customer): it
    needs the account to save a card and to read a charge back. The plain port's calls work too,
    with what they can find without the account."""

    def save_customer_card(self, token: str, account_id: str) -> CardDetails:
        """`save_card` for `account_id`'s customer; also raises `CardDeclined`."""
        ...

    def find_customer_charge(self, idempotency_key: str, account_id: str, token: str | None) -> ChargeResult | None:
        """`find_charge` among `account_id`'s charges (`token`: the saved card's reference)."""
        ...


@runtime_checkable
class AuthenticatingGateway(Protocol):
    """A gateway whose charges may wait for the customer's bank (3-D Secure): the hosted billing page
    sends the customer there, and reads the charge when they come back."""

    def begin_authentication(self, gateway_charge_id: str, account_id: str, return_url: str) -> Authentication:
        """Ask the bank to authenticate `account_id`'s charge on-session; the customer comes back to
        `return_url`. Raises `GatewayUnavailable`."""
        ...

    def authenticated_charge(self, gateway_charge_id: str, account_id: str) -> ChargeResult | None:
        """The charge as it stands now, if it is `account_id`'s and was made by the product (its
        `idempotency_key` is the settlement's); None otherwise. Raises `GatewayUnavailable`."""
        ...


def save_card_for(gateway: PaymentGateway, token: str, account_id: str | None) -> CardDetails:
    """Save `token` as `account_id`'s card on any gateway (a customer gateway keeps it on the account's
    customer)."""
    if account_id is not None and isinstance(gateway, CustomerGateway):
        return gateway.save_customer_card(token, account_id)
    return gateway.save_card(token)


def find_charge_for(gateway: PaymentGateway, idempotency_key: str, account_id: str | None,
                    token: str | None) -> ChargeResult | None:
    """Read back the charge made under `idempotency_key` for `account_id`, on any gateway."""
    if account_id is not None and isinstance(gateway, CustomerGateway):
        return gateway.find_customer_charge(idempotency_key, account_id, token)
    return gateway.find_charge(idempotency_key)
