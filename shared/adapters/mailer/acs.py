"""Azure Communication Services Email through the `azure-communication-email` SDK.

Configured by app settings in one of three forms: a connection string; an endpoint and access key
(the local endpoint, which is plain http: `from_connection_string` would rewrite it to https);
or an endpoint alone with `DefaultAzureCredential` (managed identity in Azure).
"""

from __future__ import annotations

from typing import Any

from azure.communication.email import EmailClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

from shared.adapters.mailer.protocol import MailRejected, MailTransient, OutgoingEmail
from shared.settings import Settings

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class AcsMailer:
    def __init__(self, client: EmailClient, sender: str, poll_seconds: float = 1.0, timeout: float = 60.0) -> None:
        self.client = client
        self.sender = sender
        self.poll_seconds = poll_seconds
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> AcsMailer | None:
        if settings.acs_connection_string:
            client = EmailClient.from_connection_string(settings.acs_connection_string)
        elif settings.acs_endpoint and settings.acs_access_key:
            client = EmailClient(settings.acs_endpoint, AzureKeyCredential(settings.acs_access_key))
        elif settings.acs_endpoint:
            from azure.identity import DefaultAzureCredential

            client = EmailClient(settings.acs_endpoint, DefaultAzureCredential())
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
            poller = self.client.begin_send(message, operation_id=operation_id, polling_interval=self.poll_seconds)
            result = poller.result(timeout=self.timeout)
        except HttpResponseError as exc:
            if exc.status_code in TRANSIENT_STATUS or exc.status_code in (401, 403):
                # 401/403 is our configuration, not the message: retrying after a fix must work.
                raise MailTransient(f"ACS answered {exc.status_code}: {exc.reason}") from exc
            raise MailRejected(f"ACS refused the message: {exc.status_code} {exc.message}",
                               bad_address=_names_a_recipient(exc)) from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise MailTransient(f"ACS unreachable: {exc}") from exc
        if result is None:
            raise MailTransient("ACS did not finish the send in time; it will be polled again")
        status = str(result.get("status", ""))
        if status != "Succeeded":
            error = result.get("error") or {}
            raise MailRejected(f"ACS send {status}: {error.get('message', 'no detail')}")
        return str(result.get("id", operation_id))


def _names_a_recipient(exc: HttpResponseError) -> bool:
    """ACS names the part of the message it refused in `error.target` (`recipients.to[0].address`)."""
    target = getattr(exc.error, "target", None) if exc.error is not None else None
    return isinstance(target, str) and target.startswith("recipients")
