"""A mailer for unit tests: keeps what it was asked to send, deduplicated by operation id as ACS does."""

from __future__ import annotations

from datetime import timedelta

from shared.adapters.mailer.protocol import MailThrottled, MailTransient, OutgoingEmail


class FakeMailer:
    def __init__(self) -> None:
        self.sent: dict[str, OutgoingEmail] = {}
        self.fail_next = 0
        self.throttle_next = 0
        """The next sends answer as a throttled ACS does (`MailThrottled`, waiting `retry_after`)."""
        self.retry_after = timedelta(seconds=60)
        self.attempts = 0

    def send(self, email: OutgoingEmail, operation_id: str) -> str:
        self.attempts += 1
        if self.throttle_next:
            self.throttle_next -= 1
            raise MailThrottled("ACS answered 429: Too Many Requests", self.retry_after)
        if self.fail_next:
            self.fail_next -= 1
            raise MailTransient("throttled")
        self.sent.setdefault(operation_id, email)
        return operation_id
