"""Signed billing links: valid until they expire, useless once altered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from hypothesis import given
from hypothesis import strategies as st

from shared.links import LINK_LIFETIME, billing_link, verify

NOW = datetime(2026, 12, 1, tzinfo=UTC)
KEY = "test-key"


def parts(url: str) -> tuple[str, str, str]:
    split = urlsplit(url)
    q = parse_qs(split.query)
    return split.path.rsplit("/", 1)[1], q["expires"][0], q["sig"][0]


def test_a_fresh_link_verifies_until_it_expires() -> None:
    account, expires, sig = parts(billing_link("https://b.example/api/billing", KEY, "acc-1", NOW))
    assert verify(KEY, account, expires, sig, NOW)
    assert verify(KEY, account, expires, sig, NOW + LINK_LIFETIME - timedelta(seconds=1))
    assert not verify(KEY, account, expires, sig, NOW + LINK_LIFETIME + timedelta(seconds=1))


def test_another_account_key_or_expiry_does_not_verify() -> None:
    account, expires, sig = parts(billing_link("https://b.example/api/billing", KEY, "acc-1", NOW))
    assert not verify(KEY, "acc-2", expires, sig, NOW)
    assert not verify("other-key", account, expires, sig, NOW)
    assert not verify(KEY, account, str(int(expires) + 1), sig, NOW)
    assert not verify(KEY, account, "soon", sig, NOW)


@given(st.text(max_size=60))
def test_any_forged_signature_is_refused_without_error(sig: str) -> None:
    _, expires, _ = parts(billing_link("https://b.example/api/billing", KEY, "acc-1", NOW))
    assert not verify(KEY, "acc-1", expires, sig, NOW)
