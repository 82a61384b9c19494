"""RFC 3339 timestamps from outside (CloudEvents `time`, Event Grid reports, the test clock), and
the one way the product writes a time people or programs read (`format_rfc3339`).

One parser for the product, strict where the RFC is and no further:
- ASCII digits only (`datetime.fromisoformat` and `\\d` take every script's digits);
- `T`/`t` between date and time, `Z`/`z` or `+HH:MM`/`-HH:MM` (hours 00-23, minutes 00-59;
  `-00:00`, "offset unknown", is read as UTC); no offset at all is refused;
- a fraction of any length up to 9 digits, truncated (never rounded) to microseconds, so the
  7-digit fractions Azure writes are read;
- a leap second (`23:59:60` in UTC) is read as the last microsecond before the next minute;
  second 60 at any other time is refused.
Returns a timezone-aware datetime in UTC; `ValueError` with a reason otherwise.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_RFC3339 = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt](?P<h>[0-9]{2}):(?P<m>[0-9]{2}):(?P<s>[0-9]{2})"
    r"(?:\.(?P<frac>[0-9]{1,9}))?(?:(?P<z>[Zz])|(?P<sign>[+-])(?P<oh>[0-9]{2}):(?P<om>[0-9]{2}))"
)
EXAMPLE = "2026-12-01T09:00:00Z"


def format_rfc3339(at: datetime) -> str:
    """`at` in UTC with `Z` (`2027-02-15T23:01:00Z`): the account view, the timeline, problem
    details, the test clock's answer."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    """`text` as a UTC datetime, or `ValueError` saying what is wrong."""
    match = _RFC3339.fullmatch(text) if isinstance(text, str) and len(text) <= 40 else None
    if match is None:
        raise ValueError(f"must be an RFC 3339 timestamp with an offset, such as {EXAMPLE}")
    hour, minute, second = int(match["h"]), int(match["m"]), int(match["s"])
    micro = int((match["frac"] or "").ljust(6, "0")[:6])
    offset = timedelta(0)
    if match["sign"]:
        oh, om = int(match["oh"]), int(match["om"])
        if oh > 23 or om > 59:
            raise ValueError(f"offset {match['sign']}{match['oh']}:{match['om']} is not a valid UTC offset")
        offset = (-1 if match["sign"] == "-" else 1) * timedelta(hours=oh, minutes=om)
    leap = second == 60
    try:
        local = datetime.fromisoformat(match["date"]).replace(hour=hour, minute=minute, second=59 if leap else second,
                                                              microsecond=999_999 if leap else micro,
                                                              tzinfo=timezone(offset))
        at = local.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"not a valid date and time: {exc}") from exc
    if leap and (at.hour, at.minute) != (23, 59):
        raise ValueError("second 60 is only a leap second at 23:59 UTC")
    return at
