"""A mailer for unit tests: keeps what it was asked to send, deduplicated by operation id as ACS does."""

from __future__ import annotations

from shared.adapters.mailer.protocol import MailTransient, OutgoingEmail


class FakeMailer:
    def __init__(self) -> None:
        self.sent: dict[str, OutgoingEmail] = {}
        self.fail_next = 0

    def send(self, email: OutgoingEmail, operation_id: str) -> str:
        if self.fail_next:
            self.fail_next -= 1
            raise MailTransient("throttled")
        self.sent.setdefault(operation_id, email)
        return operation_id
