"""What a card charge can get back, as the values the core records (the gateway adapters map every
answer of theirs to one of these; see `shared/adapters/gateway/protocol.py` for the table).

A processor's text in them (a code, a message, a reason) is free text from outside that reaches
the timeline and the logs: any card number it quotes is masked when the value is made, whichever
adapter made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from shared.domain.declines import DeclineKind, decline_kind
from shared.domain.money import Money
from shared.inbound.card_data import mask_card_numbers


@dataclass(frozen=True)
class Charged:
    """The card was charged. `amount` is what the gateway says it took, which is what we record."""

    amount: Money
    gateway_charge_id: str | None


@dataclass(frozen=True)
class Declined:
    """The card was declined (HTTP 402): nothing charged. `decline_code` is the processor's."""

    decline_code: str | None
    gateway_charge_id: str | None = None

    def __post_init__(self) -> None:
        _mask_fields(self, "decline_code")

    @property
    def kind(self) -> DeclineKind:
        return decline_kind(self.decline_code)


@dataclass(frozen=True)
class Refused:
    """The gateway refused the request itself (bad amount, unknown token, bad credentials): it
    charged nothing and kept nothing under the key. `code` is its machine code, `status` the HTTP
    status."""

    code: str
    message: str
    status: int

    def __post_init__(self) -> None:
        _mask_fields(self, "code", "message")


@dataclass(frozen=True)
class Unanswered:
    """No usable answer: the charge may or may not have been made. Only reading it back by its
    idempotency key (`find_charge`) tells; never charge again under a new key before that."""

    reason: str
    code: str = "gateway_unavailable"

    def __post_init__(self) -> None:
        _mask_fields(self, "reason", "code")


ChargeAnswer: TypeAlias = Charged | Declined | Refused | Unanswered


def _mask_fields(answer: object, *names: str) -> None:
    """A gateway's text is free text from outside, kept on the timeline and in logs: any card
    number it quotes is masked where it enters the product, whichever adapter read it."""
    for name in names:
        value = getattr(answer, name)
        if isinstance(value, str):
            object.__setattr__(answer, name, mask_card_numbers(value))
