"""Signed, expiring links to the hosted billing page, in every email, bound to the contact list.

The page trusts the link without a login, so the link must not be forgeable, reusable forever, or
outlive the people it was sent to. A link carries `expires` (Unix seconds), `v` (a version of the
account's billing contacts: an HMAC of the sorted, lower-cased addresses, so it says nothing about
them) and `sig`, an HMAC-SHA256 with `BILLING_LINK_SIGNING_KEY` over the account id, `expires` and
`v`. It stops working 30 days after it was made, or as soon as the contacts change or the account's
customer data is erased (no contacts left): the page then says it expired. The page's form carries
`form_token`, derived from the same link, so a form posted from anywhere else is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import quote, urlencode

from shared.numerals import parse_whole

LINK_LIFETIME = timedelta(days=30)


class LinkStatus(StrEnum):
    VALID = "valid"
    EXPIRED = "expired"  # genuine, but past its date or made for other contacts
    INVALID = "invalid"  # not made by us (forged, altered, truncated)


@dataclass(frozen=True)
class SignedLink:
    """The query parameters of a billing link, as they came (unchecked)."""

    expires: str
    version: str
    signature: str

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> SignedLink:
        return cls(query.get("expires", ""), query.get("v", ""), query.get("sig", ""))


def _mac(key: str, *parts: str) -> str:
    digest = hmac.new(key.encode(), "|".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def contacts_version(key: str, contacts: Iterable[str]) -> str:
    """A short keyed fingerprint of the contact list (order and case do not matter)."""
    return _mac(key, "contacts", *sorted(c.lower() for c in contacts))[:16]


def _signature(key: str, account_id: str, expires: int, version: str) -> str:
    return _mac(key, account_id, str(expires), version)


def billing_link(base_url: str, key: str | None, account_id: str, contacts: Iterable[str], now: datetime) -> str:
    """The billing page of `account_id` for these contacts, signed when a key is configured
    (it always is in Azure; without one the page refuses every link)."""
    url = f"{base_url.rstrip('/')}/{quote(account_id)}"
    if not key:
        return url
    expires = int((now + LINK_LIFETIME).timestamp())
    version = contacts_version(key, contacts)
    query = {"expires": expires, "v": version, "sig": _signature(key, account_id, expires, version)}
    return f"{url}?{urlencode(query)}"


def check(key: str, account_id: str, link: SignedLink, contacts: Iterable[str], now: datetime) -> LinkStatus:
    """Whether `link` opens the page of `account_id` whose billing contacts are now `contacts`."""
    try:
        when = parse_whole(link.expires, max_digits=12)  # ASCII digits: int() would take any script's
    except ValueError:
        return LinkStatus.INVALID
    expected = _signature(key, account_id, when, link.version)
    # Bytes, not str: compare_digest refuses non-ASCII text, and a forged link may carry some.
    if not hmac.compare_digest(expected.encode(), link.signature.encode("utf-8", "replace")):
        return LinkStatus.INVALID
    if when < now.timestamp():
        return LinkStatus.EXPIRED
    if not hmac.compare_digest(link.version.encode("utf-8", "replace"), contacts_version(key, contacts).encode()):
        return LinkStatus.EXPIRED
    return LinkStatus.VALID


def form_token(key: str, account_id: str, link: SignedLink) -> str:
    """The anti-forgery token of the page's form: bound to the link, unknowable without the key."""
    return _mac(key, "form", account_id, link.expires, link.version, link.signature)
