"""What erasure removes from the records an account keeps (contract §3): every email address and
card summary the account ever held, whatever the case it is written in.

The account's records say what that is: the profile (the contacts and card it has now), the
recipients of its mail records, and the free text of its timeline and mail records, where contact
changes, payment-method changes and quoted delivery reports name former addresses and cards.
Those exact spellings are replaced whatever their case, and so is anything in free text shaped
like an email address or a card summary (`mastercard ending 4444`). The shapes make erasure
resumable on their own: a run that resumes after a crash no longer sees what an already rewritten
row named, but finds each address or card summary left in the other rows by its shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from shared.domain.model import Profile
from shared.domain.retention import REDACTED

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ADDRESS = re.compile(rf"[^@\s<>()\[\],;:\"\x00-\x1f\x7f]{{1,64}}@{_LABEL}(?:\.{_LABEL})+")
"""An email address in free text: every billing contact the product accepts (the local part of
`shared.inbound.account_body.EMAIL_PATTERN`, unanchored), in any case, plus whatever sticks to it."""
CARD_SUMMARY = re.compile(r"(?:\b[A-Za-z][\w-]{0,30}\s+)?\bending\s+\d{4}\b", re.IGNORECASE)
"""A card summary in free text, with its brand when one precedes it: `mastercard ending 4444`."""


def card_summaries(profile: Profile) -> set[str]:
    """The profile's card as the timeline names it: `{"mastercard ending 4444", "ending 4444"}`."""
    method = profile.payment_method
    if method is None or not method.last4:
        return set()
    return {f"ending {method.last4}"} | ({f"{method.brand} ending {method.last4}"} if method.brand else set())


def profile_words(profile: Profile) -> set[str]:
    """What the profile names: its contacts (with those it has delivery reports about) and card."""
    return {*profile.billing_contacts, *profile.unreachable, *profile.reported, *profile.undelivered,
            *card_summaries(profile)}


@dataclass(frozen=True)
class Erasure:
    """Removes `words` (exact spellings the account's records name, matched whatever the case)
    and anything shaped like an address or card summary from text, writing `replacement`."""

    words: frozenset[str]
    replacement: str = REDACTED

    @classmethod
    def of(cls, named: Iterable[str], texts: Iterable[str], replacement: str = REDACTED) -> Erasure:
        """The erasure of what `named` holds (profile words, mail recipients) and of every address
        and card summary found in `texts` (the free text of the account's rows)."""
        found = {m.group() for text in texts for shape in (ADDRESS, CARD_SUMMARY) for m in shape.finditer(text)}
        return cls(frozenset(w for w in {*named, *found} if w and w != replacement), replacement)

    def scrub(self, text: str) -> str:
        """`text` with every word, address and card summary replaced; text without any comes back as it was."""
        if self._spelled is not None:
            text = self._spelled.sub(self.replacement, text)
        for shape in (ADDRESS, CARD_SUMMARY):
            text = shape.sub(self.replacement, text)
        return text

    @cached_property
    def _spelled(self) -> re.Pattern[str] | None:
        """The words as one pattern, longest first (`mastercard ending 4444` goes whole before
        `ending 4444` is tried), matched whatever the case."""
        if not self.words:
            return None
        return re.compile("|".join(re.escape(w) for w in sorted(self.words, key=lambda w: (-len(w), w))), re.IGNORECASE)
