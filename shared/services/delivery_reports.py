"""ACS email delivery reports (contract §4): read one from its Event Grid event, then apply it to
every account that lists the reported address.

A report is about an address, not only about a message we sent: the ACS resource may be shared,
and the message's record may be erased or lost. So the address index (`ContactIndex`) finds the
accounts; the message id is only a fallback for accounts registered before the index existed.
Report content never fails the function: a report is applied, or ignored with a reason
(`ReportIgnored`), so Event Grid does not redeliver it for a day. Storage failures do raise, so
Event Grid retries.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.domain.mail import delivery_reported
from shared.domain.mailbox import mailbox
from shared.inbound.card_data import mask_card_numbers
from shared.inbound.rfc3339 import parse_rfc3339
from shared.services.unit_of_work import UnitOfWork, commit_decision

log = logging.getLogger(__name__)
_ADDRESS_MAX = 254  # the longest billing contact the product accepts; a longer one is no contact of ours


class ReportIgnored(ValueError):
    """A report that cannot be applied, with the reason for the log."""


@dataclass(frozen=True)
class DeliveryReport:
    recipient: str
    status: str  # Delivered, Bounced, Suppressed, Failed, FilteredSpam, Quarantined
    at: datetime  # deliveryAttemptTimeStamp, UTC
    message_id: str
    detail: str  # deliveryStatusDetails.statusMessage

    def __post_init__(self) -> None:
        # Free text from outside that reaches the timeline: any card number it quotes is masked here.
        object.__setattr__(self, "status", mask_card_numbers(self.status))
        object.__setattr__(self, "detail", mask_card_numbers(self.detail))


def read_report(data: Any, event_time: datetime | None) -> DeliveryReport:
    """`Microsoft.Communication.EmailDeliveryReportReceived` data; `ReportIgnored` naming the field.
    The attempt time is `deliveryAttemptTimeStamp` (or `...Timestamp`) in RFC 3339, Azure's 7
    fractional digits included; the event's own time stands in when it is absent."""
    if not isinstance(data, Mapping):
        raise ReportIgnored("data is not an object")
    recipient, status = data.get("recipient"), data.get("status")
    if not isinstance(recipient, str) or "@" not in recipient or len(recipient) > _ADDRESS_MAX:
        raise ReportIgnored(f"recipient is not an email address: {str(recipient)[:80]!r}")
    if not isinstance(status, str) or not status:
        raise ReportIgnored("status is missing")
    stamp = data.get("deliveryAttemptTimeStamp") or data.get("deliveryAttemptTimestamp")
    if stamp is not None:
        try:
            at = parse_rfc3339(stamp)
        except ValueError as exc:
            raise ReportIgnored(f"deliveryAttemptTimeStamp {str(stamp)[:40]!r}: {exc}") from exc
    elif event_time is not None:
        at = event_time if event_time.tzinfo else event_time.replace(tzinfo=UTC)
    else:
        raise ReportIgnored("deliveryAttemptTimeStamp is missing")
    details = data.get("deliveryStatusDetails")
    detail = details.get("statusMessage") if isinstance(details, Mapping) else None
    return DeliveryReport(recipient, status, at, str(data.get("messageId") or "")[:200], str(detail or "")[:500])


def apply_report(uow: UnitOfWork, report: DeliveryReport) -> list[str]:
    """Apply the report to every account listing its address; return their ids (empty: none of ours).
    A report is about an address, whatever message it names (contract §4), and the address index
    lists every contact before any email to it leaves (the dispatcher writes index rows before it
    hands off emails), so the address alone finds the accounts."""
    accounts = uow.contacts.accounts(mailbox(report.recipient))
    for account_id in accounts:
        commit_decision(uow, account_id, lambda snap: delivery_reported(
            snap.account, report.recipient, report.status, report.at, report.detail, uow.clock.now(), uow.policy))
    return accounts
