"""`ContactDirectory` (`shared/adapters/store/contact_index.py`): which accounts list an address,
kept by revision so a late, older outbox row never overwrites or drops a newer row."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters.store.protocol import ContactDirectory

ADDRESS = "ap@contoso.example"


def test_accounts_listing_an_address_come_back_sorted(contacts: ContactDirectory) -> None:
    contacts.update(ADDRESS, "acc-b", True, 1)
    contacts.update(ADDRESS, "acc-a", True, 3)
    contacts.update("other@contoso.example", "acc-c", True, 1)
    assert contacts.accounts(ADDRESS) == ["acc-a", "acc-b"]
    assert contacts.accounts("nobody@contoso.example") == []


def test_an_address_with_characters_keys_forbid_is_found(contacts: ContactDirectory) -> None:
    odd = "a/b#c?d%e'f\"g\\h@x.example"
    contacts.update(odd, "acc-1", True, 1)
    assert contacts.accounts(odd) == ["acc-1"]
    assert contacts.accounts("a/b#c?d%e'f\"g\\h@X.example") == []  # spelled exactly as `mailbox()` gives it


def test_an_older_revision_never_overwrites_or_drops_a_newer_row(contacts: ContactDirectory) -> None:
    contacts.update(ADDRESS, "acc-1", True, 5)
    contacts.update(ADDRESS, "acc-1", False, 4)  # a late drop from before
    assert contacts.accounts(ADDRESS) == ["acc-1"]
    contacts.update(ADDRESS, "acc-1", False, 5)  # the same revision again changes nothing
    assert contacts.accounts(ADDRESS) == ["acc-1"]
    contacts.update(ADDRESS, "acc-1", False, 6)
    assert contacts.accounts(ADDRESS) == []
    contacts.update(ADDRESS, "acc-1", False, 7)  # dropping a row that is gone: no error
    assert contacts.accounts(ADDRESS) == []


def test_a_drop_leaves_no_row_so_a_later_delivered_older_listing_comes_back(contacts: ContactDirectory) -> None:
    """What both implementations do: a dropped row keeps no revision, so an older listing delivered
    after the drop writes the row again. Harmless because the index is a hint (a report's handler
    acts only on an account that still lists the address), but it is so."""
    contacts.update(ADDRESS, "acc-1", True, 1)
    contacts.update(ADDRESS, "acc-1", False, 3)
    contacts.update(ADDRESS, "acc-1", True, 2)
    assert contacts.accounts(ADDRESS) == ["acc-1"]


UPDATES = st.lists(st.tuples(st.integers(1, 6), st.booleans()), min_size=1, max_size=6,
                   unique_by=lambda u: u[0])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(updates=UPDATES, data=st.data())
def test_in_any_order_the_newest_listing_stays(contacts: ContactDirectory, updates: list[tuple[int, bool]],
                                                data: st.DataObject) -> None:
    order = data.draw(st.permutations(updates))
    account = f"acc-{next(_serial)}"
    for revision, listed in order:
        contacts.update(ADDRESS, account, listed, revision)
    _, newest_listed = max(updates)
    present = account in contacts.accounts(ADDRESS)
    if newest_listed:
        assert present  # nothing older may drop it
    # The row, if any, is what the newest update applied since the last drop said.
    expected = _replay(order)
    assert present is expected


def _replay(order: list[tuple[int, bool]]) -> bool:
    held: int | None = None
    for revision, listed in order:
        if held is not None and held >= revision:
            continue
        held = revision if listed else None
    return held is not None


_serial = itertools.count()
