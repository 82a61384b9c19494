"""Signed billing links: valid until they expire or the contacts change, useless once altered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from hypothesis import given
from hypothesis import strategies as st

from shared.links import LINK_LIFETIME, LinkStatus, SignedLink, billing_link, check, contacts_version, form_token

NOW = datetime(2026, 12, 1, tzinfo=UTC)
KEY = "test-key"
CONTACTS = ("billing@contoso.example", "ap@contoso.example")


def parts(url: str) -> tuple[str, SignedLink]:
    split = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(split.query).items()}
    return split.path.rsplit("/", 1)[1], SignedLink.from_query(query)


def link(account: str = "acc-1", contacts: tuple[str, ...] = CONTACTS) -> tuple[str, SignedLink]:
    return parts(billing_link("https://b.example/api/billing", KEY, account, contacts, NOW))


def test_a_fresh_link_is_valid_until_it_expires() -> None:
    account, signed = link()
    assert check(KEY, account, signed, CONTACTS, NOW) is LinkStatus.VALID
    assert check(KEY, account, signed, CONTACTS, NOW + LINK_LIFETIME - timedelta(seconds=1)) is LinkStatus.VALID
    assert check(KEY, account, signed, CONTACTS, NOW + LINK_LIFETIME + timedelta(seconds=1)) is LinkStatus.EXPIRED


def test_a_link_expires_when_the_contacts_change_or_are_erased() -> None:
    account, signed = link()
    assert check(KEY, account, signed, tuple(reversed([c.upper() for c in CONTACTS])), NOW) is LinkStatus.VALID
    assert check(KEY, account, signed, CONTACTS[:1], NOW) is LinkStatus.EXPIRED
    assert check(KEY, account, signed, (*CONTACTS, "new@contoso.example"), NOW) is LinkStatus.EXPIRED
    assert check(KEY, account, signed, (), NOW) is LinkStatus.EXPIRED


def test_the_contacts_version_says_nothing_without_the_key() -> None:
    assert contacts_version(KEY, CONTACTS) != contacts_version("other-key", CONTACTS)
    assert "contoso" not in link()[1].version


def test_another_account_key_expiry_or_version_is_not_ours() -> None:
    account, signed = link()
    assert check(KEY, "acc-2", signed, CONTACTS, NOW) is LinkStatus.INVALID
    assert check("other-key", account, signed, CONTACTS, NOW) is LinkStatus.INVALID
    later = SignedLink(str(int(signed.expires) + 1), signed.version, signed.signature)
    assert check(KEY, account, later, CONTACTS, NOW) is LinkStatus.INVALID
    _, other = link(contacts=("x@y.example",))
    assert check(KEY, account, SignedLink(signed.expires, other.version, signed.signature), ("x@y.example",),
                 NOW) is LinkStatus.INVALID
    assert check(KEY, account, SignedLink("soon", signed.version, signed.signature), CONTACTS,
                 NOW) is LinkStatus.INVALID


def test_the_form_token_is_bound_to_the_link() -> None:
    account, signed = link()
    _, other = link("acc-2")
    assert form_token(KEY, account, signed) == form_token(KEY, account, signed)
    assert form_token(KEY, account, signed) != form_token(KEY, "acc-2", other)
    assert form_token(KEY, account, signed) != form_token("other-key", account, signed)


@given(st.text(max_size=60))
def test_any_forged_signature_is_refused_without_error(sig: str) -> None:
    _, signed = link()
    assert check(KEY, "acc-1", SignedLink(signed.expires, signed.version, sig), CONTACTS, NOW) is LinkStatus.INVALID
