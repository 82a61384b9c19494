"""How often the card detector is right: its true-positive rate over the card formats it must
catch, and its false-positive rate over realistic free text and identifier formats (issue 24).

    python -m bench.card_detector            # -n 2000 examples per format

Examples come from hypothesis strategies (a fixed seed, no example database), so a run is
repeatable. The detector is `shared.inbound.card_data`: `contains_card_number` on free text, and
`card_findings` on a JSON event, where an identifier field is never a finding (contract §1).
Prints one row per format: examples drawn, how many the detector flagged, the rate.
"""

from __future__ import annotations

import argparse
import json
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from shared.inbound.card_data import card_findings, contains_card_number, luhn, read_json_as_written

# Issuer prefixes and lengths of the brands a processor sees (ISO/IEC 7812 ranges as networks publish them).
BRANDS = {"visa": (["4"], [13, 16, 19]), "mastercard": (["51", "55", "2221", "2720"], [16]),
          "amex": (["34", "37"], [15]), "discover": (["6011", "65"], [16, 19]), "diners": (["36"], [14]),
          "jcb": (["3528", "3589"], [16]), "unionpay": (["62"], [16, 17, 18, 19])}
SEPARATORS = ["", " ", "-", ".", "\u00a0", "  ", "/"]


def _pan(prefix: str, length: int, body: str) -> str:
    digits = (prefix + body)[:length - 1].ljust(length - 1, "0")
    return digits + next(d for d in string.digits if luhn(digits + d))


_RANGES = [(prefix, length) for prefixes, lengths in BRANDS.values() for prefix in prefixes for length in lengths]
pans = st.builds(lambda r, body: _pan(r[0], r[1], body), st.sampled_from(_RANGES),
                 st.text(string.digits, min_size=19, max_size=19))


def _grouped(pan: str, sep: str) -> str:
    return sep.join(pan[i:i + 4] for i in range(0, len(pan), 4))


def _full_width(pan: str) -> str:
    return pan.translate({ord(d): 0xFF10 + int(d) for d in string.digits})


CARD_FORMS: dict[str, st.SearchStrategy[str]] = {
    "card, grouped by any separator": st.builds(_grouped, pans, st.sampled_from(SEPARATORS)),
    "card in a sentence": st.builds(lambda p, s: f"please charge my card {_grouped(p, s)} today", pans,
                                    st.sampled_from(SEPARATORS)),
    "card flush against a word": st.builds(lambda p, w: f"{w}{p}", pans, st.sampled_from(["card", "x", "pan:"])),
    # Known miss, by design: a word of hex digits only (`cc4111…`) reads as a hash or random id.
    "card flush against hex letters (read as a hex id)": st.builds(lambda p, w: f"{w}{p}", pans,
                                                                   st.sampled_from(["cc", "ab", "f"])),
    "card in full-width digits": pans.map(_full_width),
}

words = st.text(string.ascii_letters + " ", min_size=0, max_size=30)
FREE_TEXT: dict[str, st.SearchStrategy[str]] = {
    "prose with dates and amounts": st.builds(
        lambda w, d, m: f"{w} invoice of {d:%Y-%m-%d} for USD {m // 100}.{m % 100:02d}",
        words, st.dates(date(2000, 1, 1), date(2099, 12, 31)), st.integers(0, 10**12)),
    "RFC 3339 times": st.datetimes(datetime(2000, 1, 1), datetime(2099, 1, 1), timezones=st.just(UTC)).map(
        lambda t: t.isoformat()),
    "phone numbers (E.164)": st.integers(10**10, 10**15 - 1).map(lambda n: f"call +{n}"),
    "amounts, 18 digits of minor units": st.integers(0, 10**18 - 1).map(lambda n: f"{n // 100}.{n % 100:02d} VND"),
    "UUIDs": st.uuids().map(str),
    "hex hashes": st.binary(min_size=16, max_size=32).map(bytes.hex),
    "bounce messages": st.builds(lambda n, w: f"550 5.1.1 <{w.strip() or 'x'}@example.com> rejected, ref {n}",
                                 st.integers(0, 10**9), words),
    "digit runs of 13-19 quoted in prose": st.integers(13, 19).flatmap(
        lambda n: st.text(string.digits, min_size=n, max_size=n)).map(lambda d: f"order {d} shipped"),
}


def _in_id_field(field: str) -> Callable[[str], str]:
    return lambda value: json.dumps({"specversion": "1.0", "id": "e1", "type": "billing.charge.failed",
                                     "data": {"accountId": "a1", "subscriptionId": "s1", "chargeId": "c1",
                                              field: value}})


ids = st.one_of(
    st.builds(lambda d, n: f"pay-{d:%Y%m%d}-{n:08d}", st.dates(date(2000, 1, 1), date(2099, 12, 31)),
              st.integers(0, 10**8 - 1)),
    st.integers(10**12, 10**19 - 1).map(str),  # database sequences and snowflakes
    st.binary(min_size=8, max_size=8).map(lambda b: "x" + b.hex()),  # a hex id with a letter glued on
)
ID_FIELDS: dict[str, st.SearchStrategy[str]] = {
    f"ids in {field}": ids.map(_in_id_field(field)) for field in ("chargeId", "subscriptionId", "accountId")
}


@dataclass
class Row:
    name: str
    drawn: int = 0
    flagged: int = 0

    @property
    def rate(self) -> float:
        return self.flagged / self.drawn if self.drawn else 0.0


def _measure(name: str, strategy: st.SearchStrategy[str], detect: Callable[[str], bool], n: int) -> Row:
    row = Row(name)

    @seed(24)
    @settings(max_examples=n, database=None, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def draw(text: str) -> None:
        row.drawn += 1
        row.flagged += bool(detect(text))

    draw()
    return row


def _finding_in_event(text: str) -> bool:
    return bool(card_findings(read_json_as_written(text)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="examples per format (10 to 100,000)")
    args = parser.parse_args()
    n = max(10, min(args.n, 100_000))
    sections = [("true positives (must be flagged)", CARD_FORMS, contains_card_number),
                ("false positives in free text", FREE_TEXT, contains_card_number),
                ("false positives in identifier fields of an event", ID_FIELDS, _finding_in_event)]
    for title, formats, detect in sections:
        print(f"\n{title}")
        print(f"  {'format':<48} {'drawn':>7} {'flagged':>8} {'rate':>8}")
        for name, strategy in formats.items():
            row = _measure(name, strategy, detect, n)
            print(f"  {row.name:<48} {row.drawn:>7} {row.flagged:>8} {row.rate:>8.2%}")


if __name__ == "__main__":
    main()
