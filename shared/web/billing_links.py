"""Signed, expiring links to the hosted billing page, in every email, bound to the account's link version.

The page trusts the link without a login, so the link must not be forgeable, reusable forever, or
outlive the people it was sent to. A link carries `expires` (Unix seconds), `v` (the account's
link version, `Account.link_version`: a counter that only moves forward, bumped by the lifecycle
core whenever the set of billing contacts changes or the account's customer data is erased) and
`sig`, an HMAC-SHA256 with `BILLING_LINK_SIGNING_KEY` over the account id, `expires` and `v`. It
stops working 30 days after it was made, or as soon as the account's version moves past its `v`:
restoring an earlier contact list never brings an old link back, since the version only grows.
The page then says it expired. A genuine link whose `v` is no current version at all (`RETIRED`,
made for a recipient no longer a contact, or a link from before versions were counters) has
expired too. The page's form carries `form_token`, derived from the same link, so a form posted
from anywhere else is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import quote, urlencode

from shared.inbound.numerals import parse_whole

LINK_LIFETIME = timedelta(days=30)


class LinkStatus(StrEnum):
    VALID = "valid"
    EXPIRED = "expired"  # genuine, but past its date or an older link version
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


RETIRED = "retired"
"""The `v` of a link made for someone who is no longer a billing contact: never a current version."""


def _signature(key: str, account_id: str, expires: int, version: str) -> str:
    return _mac(key, account_id, str(expires), version)


def billing_link(base_url: str, key: str | None, account_id: str, version: int | None, now: datetime) -> str:
    """The billing page of `account_id` at link version `version` (None: `RETIRED`, a link that
    opens nothing), signed when a key is configured (it always is in Azure; without one the page
    refuses every link)."""
    url = f"{base_url.rstrip('/')}/{quote(account_id)}"
    if not key:
        return url
    expires = int((now + LINK_LIFETIME).timestamp())
    v = RETIRED if version is None else str(version)
    query = {"expires": expires, "v": v, "sig": _signature(key, account_id, expires, v)}
    return f"{url}?{urlencode(query)}"


def confirm_link(base_url: str, key: str | None, account_id: str, version: int | None, now: datetime,
                 gateway_charge_id: str) -> str:
    """The billing page's confirm step for a charge the customer's bank must authenticate (contract
    §2's `confirmUrl`): `{page}/{accountId}/confirm?…&intent=…`, opened by the same signature as the
    page (the charge itself is checked against the account when the page is opened)."""
    page = billing_link(base_url, key, account_id, version, now)
    path, _, query = page.partition("?")
    extra = urlencode({"intent": gateway_charge_id})
    return f"{path}/confirm?{query}&{extra}" if query else f"{path}/confirm?{extra}"


def check(key: str, account_id: str, link: SignedLink, version: int | None, now: datetime) -> LinkStatus:
    """Whether `link` opens the page of `account_id`, whose link version is now `version` (None:
    no link opens it, its customer data is erased)."""
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
    if version is None or link.version != str(version):  # signed by us: no secret to compare in constant time
        return LinkStatus.EXPIRED
    return LinkStatus.VALID


def form_token(key: str, account_id: str, link: SignedLink) -> str:
    """The anti-forgery token of the page's form: bound to the link, unknowable without the key."""
    return _mac(key, "form", account_id, link.expires, link.version, link.signature)
