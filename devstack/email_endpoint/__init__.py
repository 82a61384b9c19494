"""A local, dev-only stand-in for Azure Communication Services (ACS) Email.

It speaks the part of the ACS Email REST protocol (api-version 2025-09-01, also 2023-03-31 and
2024-07-01-preview) that the real `azure-communication-email` SDK uses, so the product sends
through its real client code and tests read back what was "sent":

* ``POST /emails:send`` – the SDK's HMAC-SHA256 access-key signature is verified exactly as ACS
  does (``x-ms-date;host;x-ms-content-sha256``, body hash checked, 15 min clock skew), so a wrong
  key or a tampered body fails here as it would in Azure (401). The message is validated
  minimally (sender, ``recipients.to``, subject, plainText or html; 400 with an ACS-style error
  JSON otherwise) and stored. Answer: 202, ``Operation-Location``, ``retry-after-ms: 10`` and
  ``{"id", "status": "Running"}``.
* Deduplication by ``Operation-Id`` (the header the SDK sends for ``begin_send(...,
  operation_id=...)``; it must be a UUID as in the ACS spec): a repeated id answers 202 for the
  same operation again and stores no second message, only counts ``submissions``. This is how the
  product proves "no duplicate email" after a crash between send and bookkeeping.
* ``GET /emails/operations/{id}`` – signed too; 200 ``{"id", "status": "Succeeded"}`` or 404.
* Quotas, as ACS enforces them per resource (contract §5): ``PUT /quota`` with ``{"perMinute":
  N, "perHour": M}`` (either null or left out: no such limit) refuses a new send beyond N
  accepted in the last 60 s, or M in the last 3,600 s (sliding windows over the accepted sends'
  times), with 429, ``Retry-After`` (whole seconds until a send would be accepted, rounded up, at
  least 1; the whole window when the limit is 0), ``x-ms-error-code: TooManyRequests`` and ACS's
  ``{"error": {"code": "TooManyRequests", ...}}``, and stores nothing. ``GET /quota`` reads it,
  ``DELETE /quota`` lifts it. A resubmitted operation is not a new email: neither refused nor
  counted. The windows hold every send accepted since the last ``DELETE /messages``, with or
  without a quota. A bad body is a 400 ``application/problem+json`` naming the field. Start with
  one by ``--quota PER_MINUTE[,PER_HOUR]``.

Test and developer helpers (unsigned, not part of ACS): ``GET/DELETE /messages``
(``?bodies=false``: without HTML and text), ``GET /messages/{id}``, ``GET/POST/DELETE /faults``
(inject 4xx/5xx answers to the next sends, before any validation or quota: ``POST /faults`` with
``{"status": 429, "count": 300, "retryAfter": 1}`` answers the next 300 sends 429 with
``Retry-After: 1``), ``GET /stats`` and an inbox web page at ``/``. Everything is kept in
memory. Never deploy it: it lives in devstack/,
which .funcignore keeps out of the Function App.

Run it with ``python -m devstack.email_endpoint [--host 127.0.0.1] [--port 7075]
[--access-key BASE64KEY] [--quota PER_MINUTE[,PER_HOUR]]``; in tests use
:func:`start_in_thread` or :func:`running` (both take ``quota=`` and a ``clock=`` for the windows).
"""

from devstack.email_endpoint.server import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_HOST,
    DEFAULT_PORT,
    EmailEndpoint,
    Quota,
    running,
    start_in_thread,
)

__all__ = [
    "DEFAULT_ACCESS_KEY",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "EmailEndpoint",
    "Quota",
    "running",
    "start_in_thread",
]
