"""Signed, expiring links to the hosted billing page, one per account, in every email.

HMAC-SHA256 over the account id and the expiry with `BILLING_LINK_SIGNING_KEY`: the page trusts
the link without a login, so the link must not be forgeable or reusable forever.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta
from urllib.parse import quote, urlencode

from shared.numerals import parse_whole

LINK_LIFETIME = timedelta(days=30)


def _signature(key: str, account_id: str, expires: int) -> str:
    mac = hmac.new(key.encode(), f"{account_id}|{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def billing_link(base_url: str, key: str | None, account_id: str, now: datetime) -> str:
    """The billing page of `account_id`, signed when a key is configured (it always is in Azure)."""
    url = f"{base_url.rstrip('/')}/{quote(account_id)}"
    if not key:
        return url
    expires = int((now + LINK_LIFETIME).timestamp())
    return f"{url}?{urlencode({'expires': expires, 'sig': _signature(key, account_id, expires)})}"


def verify(key: str, account_id: str, expires: str, signature: str, now: datetime) -> bool:
    try:
        when = parse_whole(expires, max_digits=12)
    except ValueError:
        return False
    if when < now.timestamp():
        return False
    # Bytes, not str: compare_digest refuses non-ASCII text, and a forged link may carry some.
    return hmac.compare_digest(_signature(key, account_id, when).encode(), signature.encode("utf-8", "replace"))
