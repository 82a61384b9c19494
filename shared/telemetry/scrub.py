"""What no telemetry may carry (contract §6): card numbers (the product's own detector,
`shared.inbound.card_data`), secrets (storage account keys, SAS signatures, function keys, API and
webhook keys, bearer tokens) and billing links (`/api/billing/...?...sig=`: the query is the
credential, so it goes). Run over every span name, attribute, event, status text and log record.

The product's own identifiers are not card data (contract §1): an attribute that names one
(`billing.account_id`, `cloudevents.event_id`, a log record's `account_id`, ...; `IDENTIFIER_ATTRIBUTES`)
and holds a value matching the identifier pattern is kept whole, whatever digits it holds, as the
stored id and the API's answers keep it. Free text that quotes an id may still be masked."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote_plus

from shared.domain.identifiers import is_identifier
from shared.inbound.card_data import contains_card_number, mask_card_numbers

REDACTED = "<redacted>"
# A link's query, never an empty one: a text masked twice (a log record is masked where it is made,
# then by the log processor) reads as masked once.
_BILLING_LINK = re.compile(r"(/api/billing/[^\s?#\"'<>]*)\?[^\s\"'<>]+")
_SECRETS = (
    # key=value secrets in connection strings and query strings (SAS `sig`, function keys `code`)
    re.compile(r"(?i)\b(AccountKey|SharedAccessKey|SharedAccessSignature|AccessKey|sig|code|api[_-]?key|"
               r"password|secret|client_secret|access_token|refresh_token)=([^;&\s\"'<>]+)"),
    re.compile(r"\b((?:sk|rk)_(?:test|live)_|whsec_)[0-9A-Za-z_]+"),
    re.compile(r"(?i)\b(Bearer|Basic|SharedKey(?:Lite)?)\s+[A-Za-z0-9+/=._:~-]{6,}"),
)
_HINTS = ("=", "_test_", "_live_", "whsec_", "earer", "asic", "SharedKey", "/api/billing/")
_DIGITS = re.compile(r"\d")
IDENTIFIER_ATTRIBUTES = frozenset({
    # span attributes (`shared.log_context.SPAN_ATTRIBUTES`) ...
    "billing.account_id", "billing.subscription_id", "cloudevents.event_id",
    # ... and the same ids as a log record carries them (`shared.log_context`)
    "account_id", "subscription_id", "event_id",
})


def scrub(text: str) -> str:
    """`text` with billing links' queries, secrets and card numbers masked; `text` itself (the
    same object) when there is nothing to mask, which is almost always."""
    out = text
    if any(h in out for h in _HINTS):
        out = _BILLING_LINK.sub(rf"\1?{REDACTED}", out)
        out = _SECRETS[0].sub(rf"\1={REDACTED}", out)
        out = _SECRETS[2].sub(rf"\1 {REDACTED}", out)
        out = _SECRETS[1].sub(rf"\1{REDACTED}", out)
    if len(_DIGITS.findall(out)) >= 12:  # a card number has 12 to 19 digits
        if ("%" in out or "+" in out) and contains_card_number(unquote_plus(out)):
            out = unquote_plus(out)  # `4111%201111...` in a URL
        out = mask_card_numbers(out)
    return text if out == text else out


def scrub_value(value: Any) -> Any:
    """An attribute value (a string, a sequence of them, or anything else) scrubbed."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, bytes):
        return scrub(value.decode("utf-8", "replace"))
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items = [scrub_value(v) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else tuple(items)
    if isinstance(value, Mapping):
        return {k: scrub_value(v) for k, v in value.items()}
    return value


def scrub_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A scrubbed copy, or None when nothing in `attributes` needed masking."""
    if not attributes:
        return None
    changed = False
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        clean = value if key in IDENTIFIER_ATTRIBUTES and is_identifier(value) else scrub_value(value)
        changed = changed or clean is not value
        out[key] = clean
    return out if changed else None
