"""Continuation tokens of the paged reads (the timeline, the dead letters): a small JSON object
written as URL-safe base64 without padding, and read back only in exactly that form.

The token is opaque to clients; each reader checks the fields it finds (`BadCursor` otherwise),
so a token of one list is never read as a position in another.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from shared.inbound.json_reader import read_json

TOKEN = re.compile(r"[A-Za-z0-9_-]{1,400}")  # as `encode_token` writes them: URL-safe base64, unpadded


class BadCursor(ValueError):
    """A continuation token this API did not issue (for this list, or for this order)."""


def encode_token(fields: dict[str, Any]) -> str:
    """`fields` (JSON-serialisable, compact) as a token of at most 400 characters."""
    text = json.dumps(fields, separators=(",", ":"))
    token = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    if len(token) > 400:
        raise ValueError("a continuation token holds at most 400 characters")
    return token


def decode_token(token: str) -> dict[str, Any]:
    """The object in `token`; `BadCursor` if it is not a token `encode_token` could have written."""
    if TOKEN.fullmatch(token) is None:  # base64 decoding skips what is not base64: `tok\n` read as `tok`
        raise BadCursor("not a continuation token of this API")
    try:
        doc = read_json(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise BadCursor("not a continuation token of this API") from exc
    if not isinstance(doc, dict):
        raise BadCursor("not a continuation token of this API")
    return doc
