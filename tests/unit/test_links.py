"""Signed billing links: valid until they expire or the account's link version moves on, useless
once altered; the lifecycle core moves the version forward with every change of contacts and with
erasure, so no sequence of changes ever brings an older link back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from hypothesis import given
from hypothesis import strategies as st

from shared.adapters.store.codec import account_of, profile_doc, state_doc
from shared.domain.model import Account, Profile
from shared.domain.payments import Registration, register
from shared.domain.policy import DunningPolicy
from shared.domain.retention import erase_profile
from shared.web.billing_links import (
    LINK_LIFETIME,
    RETIRED,
    LinkStatus,
    SignedLink,
    _signature,
    billing_link,
    check,
    form_token,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
KEY = "test-key"
CONTACTS = ("billing@contoso.example", "ap@contoso.example")
POLICY = DunningPolicy()


def parts(url: str) -> tuple[str, SignedLink]:
    split = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(split.query).items()}
    return split.path.rsplit("/", 1)[1], SignedLink.from_query(query)


def link(account: str = "acc-1", version: int | None = 3) -> tuple[str, SignedLink]:
    return parts(billing_link("https://b.example/api/billing", KEY, account, version, NOW))


def test_a_fresh_link_is_valid_until_it_expires() -> None:
    account, signed = link()
    assert check(KEY, account, signed, 3, NOW) is LinkStatus.VALID
    assert check(KEY, account, signed, 3, NOW + LINK_LIFETIME - timedelta(seconds=1)) is LinkStatus.VALID
    assert check(KEY, account, signed, 3, NOW + LINK_LIFETIME + timedelta(seconds=1)) is LinkStatus.EXPIRED


def test_a_link_of_another_version_or_of_an_erased_account_has_expired() -> None:
    account, signed = link()
    assert check(KEY, account, signed, 4, NOW) is LinkStatus.EXPIRED
    assert check(KEY, account, signed, 2, NOW) is LinkStatus.EXPIRED
    assert check(KEY, account, signed, None, NOW) is LinkStatus.EXPIRED


def test_a_link_for_a_removed_contact_opens_nothing() -> None:
    account, signed = link(version=None)
    assert signed.version == RETIRED
    assert all(check(KEY, account, signed, v, NOW) is LinkStatus.EXPIRED for v in (None, 0, 1, 2))


def test_a_link_from_before_versions_were_counters_has_expired() -> None:
    """Links signed over the old contact-list fingerprint are genuine: the page says they expired."""
    expires = int((NOW + LINK_LIFETIME).timestamp())
    old = SignedLink(str(expires), "Zq3Vb0c9x1YtN2aB", _signature(KEY, "acc-1", expires, "Zq3Vb0c9x1YtN2aB"))
    assert check(KEY, "acc-1", old, 0, NOW) is LinkStatus.EXPIRED


def test_another_account_key_expiry_or_version_is_not_ours() -> None:
    account, signed = link()
    assert check(KEY, "acc-2", signed, 3, NOW) is LinkStatus.INVALID
    assert check("other-key", account, signed, 3, NOW) is LinkStatus.INVALID
    later = SignedLink(str(int(signed.expires) + 1), signed.version, signed.signature)
    assert check(KEY, account, later, 3, NOW) is LinkStatus.INVALID
    assert check(KEY, account, SignedLink(signed.expires, "4", signed.signature), 4, NOW) is LinkStatus.INVALID
    assert check(KEY, account, SignedLink("soon", signed.version, signed.signature), 3, NOW) is LinkStatus.INVALID


def test_the_form_token_is_bound_to_the_link() -> None:
    account, signed = link()
    _, other = link("acc-2")
    assert form_token(KEY, account, signed) == form_token(KEY, account, signed)
    assert form_token(KEY, account, signed) != form_token(KEY, "acc-2", other)
    assert form_token(KEY, account, signed) != form_token("other-key", account, signed)


@given(st.text(max_size=60))
def test_any_forged_signature_is_refused_without_error(sig: str) -> None:
    _, signed = link()
    assert check(KEY, "acc-1", SignedLink(signed.expires, signed.version, sig), 3, NOW) is LinkStatus.INVALID


MAILBOXES = ("a@x.example", "b@x.example", "c@x.example", "B@X.EXAMPLE")
CHANGE = st.one_of(st.just("erase"), st.lists(st.sampled_from(MAILBOXES), min_size=1, max_size=3, unique=True))


def _registered(account: Account, contacts: list[str]) -> Account:
    return register(account, Registration(Profile("Contoso", "en", tuple(contacts)), (("s1", "Web"),)), NOW,
                    POLICY).account


@given(st.lists(st.sampled_from(MAILBOXES), min_size=1, max_size=3, unique=True), st.lists(CHANGE, max_size=12))
def test_no_sequence_of_contact_changes_revalidates_an_older_link(first: list[str], changes: list[object]) -> None:
    """Register, then any changes (restoring earlier lists, renaming a domain's case, erasing and
    registering again): the version never goes back, each change of mailboxes moves it on, and
    only the link made at the latest version opens the page."""
    account = _registered(Account("acc-1"), first)
    links = [(account.link_version, link("acc-1", account.link_version)[1])]
    for change in changes:
        before = account
        if change == "erase":
            account = erase_profile(account, NOW, POLICY).account
        else:
            assert isinstance(change, list)
            account = _registered(account, change)
        listed = [{c.split("@")[0] + "@" + c.split("@")[1].lower() for c in a.profile.billing_contacts}
                  if a.profile else set() for a in (before, account)]
        assert account.link_version == before.link_version + (listed[0] != listed[1])
        links.append((account.link_version, link("acc-1", account.link_version)[1]))
    current = account.link_version if account.profile else None
    for version, signed in links:
        status = check(KEY, "acc-1", signed, current, NOW)
        assert status is (LinkStatus.VALID if version == current else LinkStatus.EXPIRED)


def test_registration_renaming_and_delivery_news_keep_the_version_contact_changes_move_it() -> None:
    account = _registered(Account("acc-1"), ["a@x.example"])
    assert account.link_version == 1  # registration: links made for nobody before do not open it
    renamed = register(account, Registration(Profile("Renamed", "zh-CN", ("a@X.example",)), (("s1", "New"),)), NOW,
                       POLICY).account
    assert renamed.link_version == 1
    removed = _registered(renamed, ["a@x.example", "b@x.example"])
    restored = _registered(_registered(removed, ["a@x.example"]), ["a@x.example", "b@x.example"])
    assert (removed.link_version, restored.link_version) == (2, 4)
    assert erase_profile(restored, NOW, POLICY).account.link_version == 5


def test_the_link_version_is_stored_with_the_account_and_an_older_row_reads_as_the_first() -> None:
    account = _registered(_registered(Account("acc-1"), ["a@x.example"]), ["b@x.example"])
    assert account.profile is not None
    state, profile = state_doc(account), profile_doc(account.profile)
    assert account_of("acc-1", state, profile).link_version == account.link_version == 2
    before_versions = {k: v for k, v in state.items() if k != "linkVersion"}
    assert account_of("acc-1", before_versions, profile).link_version == 0
    assert _registered(account_of("acc-1", before_versions, profile), ["a@x.example"]).link_version == 1
