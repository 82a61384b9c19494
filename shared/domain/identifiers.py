"""Identifiers (contract §1): `accountId`, `subscriptionId`, `chargeId`, `paymentId`, and the
CloudEvents `id` that names an event.

An identifier that matches `ID_PATTERN` is an identifier, whatever digits it holds: billing
engines number payments by date and sequence (`pay-20261201-00000001`), databases by sequence or
snowflake (`1764477712343`), and about one in ten such numbers passes the Luhn check. So the card
detector (`shared.inbound.card_data`) never reads an identifier field as card data: it guards free text.
"""

from __future__ import annotations

import re

IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# For pydantic and OpenAPI (Rust regex and ECMA: `$` ends the text). Python code calls
# `is_identifier`: Python's `re.match(...$)` also accepts a final newline.
ID_PATTERN = rf"^{IDENTIFIER.pattern}$"

IDENTIFIER_FIELDS = frozenset({"id", "accountId", "subscriptionId", "chargeId", "paymentId", "chargeIds"})
"""JSON keys whose values (or, for `chargeIds`, whose list items) are identifiers wherever they
appear: a CloudEvent's envelope and `data`, an account's `subscriptions[]`, the product's own queue
messages."""


def is_identifier(value: object) -> bool:
    """An identifier as contract §1 defines them: ASCII letters and digits, then up to 63 of
    those, `.`, `_` or `-`."""
    return isinstance(value, str) and IDENTIFIER.fullmatch(value) is not None


def is_identifier_field(key: str, value: object) -> bool:
    """A JSON member that holds an identifier: its key is one of `IDENTIFIER_FIELDS` and its value
    (a string, or each string of a list) matches the pattern. Such a value is never card data."""
    if key not in IDENTIFIER_FIELDS:
        return False
    if isinstance(value, list):
        return all(is_identifier(v) for v in value)
    return is_identifier(value)
