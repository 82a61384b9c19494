"""Azure Communication Services Email through the `azure-communication-email` SDK.

Configured by app settings in one of three forms: a connection string; an endpoint and access key
(the local endpoint, which is plain http: `from_connection_string` would rewrite it to https);
or an endpoint alone with `DefaultAzureCredential` (managed identity in Azure).

Throttling is never slept through: the SDK's retry policy is built without status retries
(`retry_status=0`; see `NO_STATUS_RETRIES` for the timeouts), so a 429, or a 503 naming `Retry-After`,
comes back at once as `MailThrottled` with the wait the service named, and the caller puts the
email back for that long (`shared/services/email.py`) instead of holding a worker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from azure.communication.email import EmailClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

from shared.adapters.mailer.protocol import MailRejected, MailThrottled, MailTransient, OutgoingEmail
from shared.settings import Settings

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
NO_STATUS_RETRIES: dict[str, Any] = {"retry_status": 0, "retry_read": 0, "retry_connect": 1,
                                     "connection_timeout": 10, "read_timeout": 20}
"""azure-core's client options: no status retries (the retry policy would sleep through
`Retry-After` up to three times in the invocation), and a send that hangs ends within seconds:
10 s to connect (tried twice), 20 s for the answer and no read retry (azure-core's defaults are
300 s and three retries, which held invocations for minutes against an endpoint that stopped
answering). A timed-out send is `MailTransient`: the email is put back with its back-off, and
sent again under the same operation id, which ACS recognises if the first got through."""
DEFAULT_RETRY_AFTER = timedelta(seconds=60)
"""A 429 that names no wait (ACS always names one): about one quota window of a minute."""
MAX_RETRY_AFTER = timedelta(hours=1)
"""A longer wait named is taken as an hour (a broken header must not park an email for days)."""


class AcsMailer:
    def __init__(self, client: EmailClient, sender: str) -> None:
        self.client = client
        self.sender = sender

    @classmethod
    def from_settings(cls, settings: Settings) -> AcsMailer | None:
        if settings.acs_connection_string:
            client = EmailClient.from_connection_string(settings.acs_connection_string, **NO_STATUS_RETRIES)
        elif settings.acs_endpoint and settings.acs_access_key:
            client = EmailClient(settings.acs_endpoint, AzureKeyCredential(settings.acs_access_key),
                                 **NO_STATUS_RETRIES)
        elif settings.acs_endpoint:
            from azure.identity import DefaultAzureCredential

            client = EmailClient(settings.acs_endpoint, DefaultAzureCredential(), **NO_STATUS_RETRIES)
        else:
            return None
        return cls(client, settings.email_sender)

    def send(self, email: OutgoingEmail, operation_id: str) -> str:
        message: dict[str, Any] = {
            "senderAddress": self.sender,
            "recipients": {"to": [{"address": email.recipient}]},
            "content": {"subject": email.subject, "plainText": email.text, "html": email.html},
            "headers": dict(email.headers),
            "userEngagementTrackingDisabled": True,
        }
        try:
            # Accepted (202) is sent: the send is not polled to its end, which would hold the
            # invocation for ACS's processing; how delivery went comes back as a delivery report.
            result = self.client.begin_send(message, operation_id=operation_id, polling=False).result()
        except HttpResponseError as exc:
            wait = throttled_for(exc)
            if wait is not None:
                raise MailThrottled(f"ACS answered {exc.status_code}: {exc.reason} (retry after "
                                    f"{wait.total_seconds():g} s)", wait) from exc
            if exc.status_code in TRANSIENT_STATUS or exc.status_code in (401, 403):
                # 401/403 is our configuration, not the message: retrying after a fix must work.
                raise MailTransient(f"ACS answered {exc.status_code}: {exc.reason}") from exc
            raise MailRejected(f"ACS refused the message: {exc.status_code} {exc.message}",
                               bad_address=_names_a_recipient(exc)) from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise MailTransient(f"ACS unreachable: {exc}") from exc
        status = str((result or {}).get("status", ""))
        if status in ("Failed", "Canceled"):
            error = (result or {}).get("error") or {}
            raise MailRejected(f"ACS send {status}: {error.get('message', 'no detail')}")
        return str((result or {}).get("id", operation_id))


def throttled_for(exc: HttpResponseError) -> timedelta | None:
    """How long the service asked us to wait, if the answer is throttling: a 429 (its wait, or
    `DEFAULT_RETRY_AFTER` when it names none), or a 503 that names a wait; else None."""
    headers: Mapping[str, str] = getattr(exc.response, "headers", None) or {}
    wait = retry_after(headers, datetime.now(UTC))
    if exc.status_code == 429:
        return wait if wait is not None else DEFAULT_RETRY_AFTER
    if exc.status_code == 503 and wait is not None:
        return wait
    return None


def retry_after(headers: Mapping[str, str], now: datetime) -> timedelta | None:
    """The wait an answer names, as azure-core reads it: `retry-after-ms` or `x-ms-retry-after-ms`
    (milliseconds), else `Retry-After` (seconds, or an HTTP date); at most `MAX_RETRY_AFTER`, at
    least nothing. None when no header names a wait that can be read."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 0.001), ("x-ms-retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = (lowered.get(name) or "").strip()
        if not raw:
            continue
        try:
            seconds = float(raw) * scale
        except ValueError:
            if scale != 1.0:
                continue
            try:
                at = parsedate_to_datetime(raw)
            except (TypeError, ValueError, IndexError):
                continue
            seconds = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp() - now.timestamp()
        if not math.isfinite(seconds):
            continue
        return min(timedelta(seconds=max(seconds, 0.0)), MAX_RETRY_AFTER)
    return None


def _names_a_recipient(exc: HttpResponseError) -> bool:
    """ACS names the part of the message it refused in `error.target` (`recipients.to[0].address`)."""
    target = getattr(exc.error, "target", None) if exc.error is not None else None
    return isinstance(target, str) and target.startswith("recipients")
