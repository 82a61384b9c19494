"""The dunning policy of contract §3 as one value, every number an app setting.

Built once from the environment and validated at start, so a typo in a setting fails the
deployment instead of silently changing when customers lose service.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from shared.inbound.numerals import parse_whole


class PolicyError(ValueError):
    """A dunning setting that cannot be a policy."""


def whole_days(text: str, name: str) -> int:
    """A setting's whole number of days: ASCII digits only (`int()` takes any script's digits),
    surrounding blanks allowed; `PolicyError` naming the setting otherwise."""
    try:
        return parse_whole(text.strip(" \t"), max_digits=5)
    except ValueError as exc:
        raise PolicyError(f"{name} must be a whole number of days in ASCII digits, got {text!r}") from exc


def _days(text: str, name: str) -> tuple[int, ...]:
    try:
        values = tuple(whole_days(part, name) for part in text.split(",") if part.strip(" \t"))
    except PolicyError as exc:
        raise PolicyError(f"{name} must be comma-separated whole days, got {text!r}") from exc
    if any(v < 0 for v in values) or list(values) != sorted(set(values)):
        raise PolicyError(f"{name} must be ascending, distinct, non-negative days, got {text!r}")
    return values


@dataclass(frozen=True)
class DunningPolicy:
    """Days are counted from `pastDueSince` (retries, reminders, disable, cancel) or from the
    cancellation (deletion warnings, deletion)."""

    retry_days: tuple[int, ...] = (1, 3, 5, 7)
    reminder_days: tuple[int, ...] = (7, 14, 21)
    disable_warning_day: int = 27
    disable_day: int = 30
    cancel_day: int = 90
    deletion_warning_days: tuple[int, ...] = (60, 83, 89)
    delete_after_cancel_days: int = 90
    max_pause_days: int = 90
    """The longest pause of an account's dunning (`PUT /api/accounts/{id}/dunning`). Not part of an
    episode's schedule: the current setting always applies."""
    card_expiry_notice_days: int = 30
    """How long before a saved card expires its `card_expiring` notice goes. Not part of an
    episode's schedule either."""
    settings_prefix: str = field(default="DUNNING_", repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.disable_day < self.cancel_day:
            raise PolicyError("the disable day must come after day 0 and before the cancel day")
        if not 0 <= self.disable_warning_day <= self.disable_day:
            raise PolicyError("the disable warning must come before the disable day")
        if any(d >= self.delete_after_cancel_days for d in self.deletion_warning_days):
            raise PolicyError("deletion warnings must come before the deletion day")
        if self.delete_after_cancel_days <= 0:
            raise PolicyError("customer data is deleted a positive number of days after cancellation")
        if not 1 <= self.max_pause_days <= 3650:
            raise PolicyError("DUNNING_MAX_PAUSE_DAYS must be from 1 to 3650 days")
        if not 0 <= self.card_expiry_notice_days <= 365:
            raise PolicyError("DUNNING_CARD_EXPIRY_NOTICE_DAYS must be from 0 to 365 days")

    def schedule_values(self) -> dict[str, int | list[int]]:
        """The values an episode of past due keeps (contract §3, "the policy an episode started
        under stays with it"), under their `DUNNING_*` names without the prefix."""
        return {
            "RETRY_DAYS": list(self.retry_days), "REMINDER_DAYS": list(self.reminder_days),
            "DISABLE_WARNING_DAY": self.disable_warning_day, "DISABLE_DAY": self.disable_day,
            "CANCEL_DAY": self.cancel_day, "DELETION_WARNING_DAYS": list(self.deletion_warning_days),
            "DELETE_AFTER_CANCEL_DAYS": self.delete_after_cancel_days,
        }

    @property
    def version(self) -> str:
        """A short name of the schedule values: equal values, equal version, on every host."""
        text = json.dumps(self.schedule_values(), sort_keys=True, separators=(",", ":"))
        return "p-" + hashlib.sha256(text.encode()).hexdigest()[:10]

    def for_episode(self) -> DunningPolicy:
        """The schedule part alone (the other settings at their defaults): what an episode keeps."""
        return DunningPolicy.from_values(self.schedule_values())

    @classmethod
    def from_values(cls, values: Mapping[str, object]) -> DunningPolicy:
        """The inverse of `schedule_values` (an episode's policy as stored)."""
        def days(name: str) -> tuple[int, ...]:
            raw = values[name]
            assert isinstance(raw, list | tuple)
            return tuple(int(v) for v in raw)

        def day(name: str) -> int:
            raw = values[name]
            assert isinstance(raw, int)
            return raw

        return cls(retry_days=days("RETRY_DAYS"), reminder_days=days("REMINDER_DAYS"),
                   disable_warning_day=day("DISABLE_WARNING_DAY"), disable_day=day("DISABLE_DAY"),
                   cancel_day=day("CANCEL_DAY"), deletion_warning_days=days("DELETION_WARNING_DAYS"),
                   delete_after_cancel_days=day("DELETE_AFTER_CANCEL_DAYS"))

    @property
    def grace(self) -> timedelta:
        return timedelta(days=self.disable_day)

    @classmethod
    def from_settings(cls, env: Mapping[str, str] | None = None) -> DunningPolicy:
        """Read `DUNNING_*` app settings; unset ones keep the contract's defaults."""
        env = os.environ if env is None else env
        d = cls()

        def one(name: str, default: int) -> int:
            raw = env.get(f"DUNNING_{name}")
            if raw is None:
                return default
            return whole_days(raw, f"DUNNING_{name}")

        def many(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
            raw = env.get(f"DUNNING_{name}")
            return default if raw is None else _days(raw, f"DUNNING_{name}")

        return cls(
            retry_days=many("RETRY_DAYS", d.retry_days),
            reminder_days=many("REMINDER_DAYS", d.reminder_days),
            disable_warning_day=one("DISABLE_WARNING_DAY", d.disable_warning_day),
            disable_day=one("DISABLE_DAY", d.disable_day),
            cancel_day=one("CANCEL_DAY", d.cancel_day),
            deletion_warning_days=many("DELETION_WARNING_DAYS", d.deletion_warning_days),
            delete_after_cancel_days=one("DELETE_AFTER_CANCEL_DAYS", d.delete_after_cancel_days),
            max_pause_days=one("MAX_PAUSE_DAYS", d.max_pause_days),
            card_expiry_notice_days=one("CARD_EXPIRY_NOTICE_DAYS", d.card_expiry_notice_days),
        )
