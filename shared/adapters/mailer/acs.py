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
    def __init__(self, client: EmailClient, sender: str) -> None:
        self.client = client
        self.sender = sender

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
            # Accepted (202) is sent: the send is not polled to its end, which would hold the
            # invocation for ACS's processing; how delivery went comes back as a delivery report.
            result = self.client.begin_send(message, operation_id=operation_id, polling=False).result()
        except HttpResponseError as exc:
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


def _names_a_recipient(exc: HttpResponseError) -> bool:
    """ACS names the part of the message it refused in `error.target` (`recipients.to[0].address`)."""
    target = getattr(exc.error, "target", None) if exc.error is not None else None
    return isinstance(target, str) and target.startswith("recipients")
