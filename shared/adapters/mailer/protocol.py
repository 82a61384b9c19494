"""The mailer as the product sees it. The operation id is ours and deterministic, so a resend
after a crash is recognised by ACS rather than delivered twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from shared.inbound.card_data import mask_card_numbers


@dataclass(frozen=True)
class OutgoingEmail:
    recipient: str
    subject: str
    html: str
    text: str
    headers: tuple[tuple[str, str], ...] = ()


class MailError(Exception):
    """Base of mailer errors. The message quotes the email service, free text from outside that
    reaches the timeline: any card number in it is masked here, whichever adapter raised it."""

    def __init__(self, reason: str) -> None:
        super().__init__(mask_card_numbers(reason))


class MailTransient(MailError):
    """Unavailable or timed out: try again later with the same operation id (the queue's
    redelivery retries it). Throttling is its own kind, `MailThrottled`."""


class MailThrottled(MailTransient):
    """The email service is over its quota (429, or 503 with `Retry-After`): nothing was sent, and
    a send under the same operation id will be taken again after `retry_after`. Never slept
    through in the invocation: the caller puts the email back for that long."""

    def __init__(self, reason: str, retry_after: timedelta) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class MailRejected(MailError):
    """The service refused this message for good (bad address, content refused, send failed).

    `bad_address` only when the refusal names the recipient's address: any other refusal is ours
    to fix, and must never be shown to the customer as "your address cannot receive mail"."""

    def __init__(self, reason: str, *, bad_address: bool = False) -> None:
        super().__init__(reason)
        self.bad_address = bad_address


class Mailer(Protocol):
    def send(self, email: OutgoingEmail, operation_id: str) -> str:
        """Send once per operation id; return the ACS message id (the operation id)."""
        ...
