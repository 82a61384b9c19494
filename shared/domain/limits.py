"""How much one account holds: the limits that keep its storage row under Table Storage's 1 MiB.

Everything here is counted in the account row (`shared/adapters/store/codec.state_doc`), so each count is
bounded, however the items arrive (contract §1). A decision that would take a count past its
limit is refused as a whole (`Decision.refused`) and changes nothing; one that leaves a count as
it was, or lowers it, is never refused, so an account stored over a limit before it existed
still settles, pays and is swept.

Measured worst cases per item in the stored row (64-character ids, 18-digit amounts, every date
set; the larger of Azurite's measure, UTF-8 JSON with non-ASCII escaped, and Azure's, UTF-16):
a registered subscription with a 200-character astral name 2,971 bytes (event-added, its id as
name: 666); an outstanding charge 664 bytes, plus 201 while a card charge is in flight for it; a
payment held for a charge not yet reported 226. At both limits the worst row, every charge in a
card charge in flight, is 816 KB by Azurite's measure and 773 KB by Azure's (78 % and 74 % of
1 MiB; `tests/unit/test_account_limits.py`).
"""

from __future__ import annotations

from shared.domain.model import Account

MAX_SUBSCRIPTIONS = 200
"""Subscriptions per account, whether listed by `PUT /api/accounts/{id}` or added by an event."""

MAX_OPEN_CHARGES = 500
"""Outstanding charges plus payments held for charges not yet reported, per account."""


def open_charges(account: Account) -> int:
    """What the account row keeps per charge: outstanding charges and held payments."""
    return len(account.outstanding) + len(account.earmarks)


def refusal(before: Account, after: Account) -> str | None:
    """Why `after` may not replace `before` (a limit it would pass), or None. The reason names the
    limit, for the person who reads the dead letter or the 400."""
    subs, was = len(after.subscriptions), len(before.subscriptions)
    if subs > MAX_SUBSCRIPTIONS and subs > was:
        return (f"account {after.account_id} already holds {was} subscriptions; an account holds at most "
                f"{MAX_SUBSCRIPTIONS} subscriptions (the {MAX_SUBSCRIPTIONS}-subscription limit, contract §1), "
                f"so {subs - was} more cannot be added")
    charges, had = open_charges(after), open_charges(before)
    if charges > MAX_OPEN_CHARGES and charges > had:
        return (f"account {after.account_id} already has {had} outstanding charges and held payments; an "
                f"account keeps at most {MAX_OPEN_CHARGES} (the {MAX_OPEN_CHARGES}-outstanding-charge limit), "
                "so no further one can be added until some are paid or voided")
    return None
