"""The soak's generator: a seeded plan of accounts, payment events and card updates.

Everything here is decided by `random.Random(seed)`, so a failing run is replayed with the same
`--seed` and sizes. Nothing imports `shared/`: the plan speaks the wire format of contract §1 and
§2 (JSON dicts), and the checker (`bench.soak.model`) reads the same plan.

Shape of a plan:
- accounts in cohorts; cohort k's events are sent while the test clock stands at day
  `COHORT_DAYS[k]` after `EPOCH`, so at the final day (`FINAL_DAY`) the cohorts stand at different
  steps of contract §3 (deleted, canceled, disabled, past due);
- each account: `en` or `zh-CN`, one or two billing contacts, 1 to 10 subscriptions, a payer kind
  (`invoice`, a card that pays, a card the gateway declines softly), one to three currencies of
  USD (2 decimals), JPY (0) and KWD (3);
- each charge has a fate: owed (failed once, or twice under two event ids), paid by
  `charge.succeeded`, voided, paid by a `payment.received` naming it, or succeeded without ever
  failing; some accounts get a `payment.received` without `chargeIds` for one currency (the whole
  amount owed in it, more, or less); some invoice payers save a card through the API while their
  events are still on the queue (the race);
- 20 % of the messages are duplicates (same text, same id), a few are not events at all, and the
  whole lot is shuffled.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

EPOCH = datetime(2027, 1, 4, tzinfo=UTC)
COHORT_DAYS = (0, 90, 150, 180)
FINAL_DAY = 190
DECIMALS = {"USD": 2, "JPY": 0, "KWD": 3}
SOFT = ("card_declined", "insufficient_funds", "processing_error", "authentication_required", "other")
HARD = ("card_expired", "lost_or_stolen")
Payer = Literal["invoice", "card_ok", "card_declining"]
Fate = Literal["owed", "owed_twice", "succeeded", "voided", "named_payment", "success_only"]
PAYER_TOKENS = {"card_ok": "tok_visa", "card_declining": "tok_chargeDeclined"}
RACE_TOKEN = "tok_visa"


def at_day(day: float) -> datetime:
    return EPOCH + timedelta(days=day)


def money_text(minor: int, currency: str) -> str:
    """Minor units as the contract's decimal string: 1234 USD -> "12.34", 500 JPY -> "500"."""
    places = DECIMALS[currency]
    if places == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**places)
    return f"{sign}{whole}.{frac:0{places}d}"


@dataclass
class Charge:
    charge_id: str
    subscription_id: str
    currency: str
    minor: int
    reason: str
    fate: Fate


@dataclass
class UnnamedPayment:
    payment_id: str
    currency: str
    minor: int
    cover: Literal["exact", "over", "under"]


@dataclass
class AccountPlan:
    account_id: str
    cohort: int
    locale: str
    contacts: list[str]
    payer: Payer
    subscriptions: list[str]
    charges: list[Charge] = field(default_factory=list)
    payments: list[UnnamedPayment] = field(default_factory=list)
    currencies: list[str] = field(default_factory=lambda: ["USD"])
    races_card: bool = False
    pauses: bool = False
    """Pauses its dunning from its day + `model.PAUSE[0]` to + `PAUSE[1]` (first cohort only)."""

    @property
    def day(self) -> int:
        return COHORT_DAYS[self.cohort]

    def registration(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "displayName": f"Soak {self.account_id}", "locale": self.locale, "billingContacts": self.contacts,
            "subscriptions": [{"id": s, "name": f"Plan {s}"} for s in self.subscriptions],
        }
        token = PAYER_TOKENS.get(self.payer)
        body["paymentMethod"] = {"type": "card", "token": token} if token else {"type": "invoice"}
        return body


@dataclass
class Message:
    """One message put on `payment-events`: its text, its event id (None when it is not an event)
    and the account it is about."""

    text: str
    event_id: str | None
    account_id: str
    duplicate: bool = False


@dataclass
class Plan:
    seed: int
    accounts: list[AccountPlan]
    messages: dict[int, list[Message]]  # per cohort, in the order they are sent

    def cohort_accounts(self, cohort: int) -> list[AccountPlan]:
        return [a for a in self.accounts if a.cohort == cohort]


def generate(seed: int, n_accounts: int, n_events: int, duplicate_share: float = 0.2,
             malformed: int = 0) -> Plan:
    """A plan of `n_accounts` accounts and about `n_events` messages (duplicates included)."""
    rng = random.Random(seed)
    accounts = [_account(rng, seed, i, i % len(COHORT_DAYS)) for i in range(n_accounts)]
    unique_target = max(n_accounts, round(n_events * (1 - duplicate_share)) - malformed)
    events: dict[str, list[tuple[str, str]]] = {a.account_id: [] for a in accounts}  # (id, text)
    counter = iter(range(10**9))
    while sum(len(v) for v in events.values()) < unique_target:
        for account in accounts:
            _add_charge(rng, account, counter, events[account.account_id])
            if sum(len(v) for v in events.values()) >= unique_target:
                break
    early: dict[str, list[tuple[str, str]]] = {a.account_id: [] for a in accounts}
    for account in accounts:
        if rng.random() < 0.2:
            _add_unnamed_payment(rng, account, counter, early[account.account_id])
    by_cohort: dict[int, list[Message]] = {k: [] for k in range(len(COHORT_DAYS))}
    for account in accounts:
        by_cohort[account.cohort] += [Message(text, eid, account.account_id)
                                      for eid, text in events[account.account_id]]
    total_unique = sum(len(v) for v in by_cohort.values())
    n_dups = max(0, n_events - total_unique - malformed)
    for cohort, msgs in by_cohort.items():
        share = round(n_dups * len(msgs) / max(total_unique, 1))
        msgs += [Message(m.text, m.event_id, m.account_id, duplicate=True) for m in rng.choices(msgs, k=share)] \
            if msgs else []
        junk = malformed // len(by_cohort) + (1 if cohort < malformed % len(by_cohort) else 0)
        msgs += [_malformed(rng, seed, cohort, j, accounts) for j in range(junk)]
        rng.shuffle(msgs)
        # payments without `chargeIds` first: they come before the failures they cover
        msgs[:0] = [Message(text, eid, a.account_id) for a in accounts if a.cohort == cohort
                    for eid, text in early[a.account_id]]
    return Plan(seed, accounts, by_cohort)


def _account(rng: random.Random, seed: int, i: int, cohort: int) -> AccountPlan:
    account_id = f"soak{seed}-{i:05d}"
    n_contacts = 1 if rng.random() < 0.8 else 2
    payer: Payer = rng.choices(["invoice", "card_ok", "card_declining"], weights=[45, 30, 25])[0]  # type: ignore[assignment]
    return AccountPlan(
        account_id=account_id, cohort=cohort, locale=rng.choice(["en", "zh-CN"]),
        contacts=[f"billing{j}.{account_id}@soak.example" for j in range(n_contacts)],
        payer=payer, subscriptions=[f"sub{j}" for j in range(1, rng.randint(1, 10) + 1)],
        currencies=rng.sample(["USD", "JPY", "KWD"], rng.randint(1, 3)),
        races_card=payer == "invoice" and rng.random() < 0.25,
        pauses=cohort == 0 and rng.random() < 0.3,
    )


def _amount(rng: random.Random, currency: str) -> int:
    return {"USD": rng.randint(100, 50_000), "JPY": rng.randint(100, 50_000),
            "KWD": rng.randint(500, 200_000)}[currency]


def _event(event_id: str, type_: str, day: int, data: dict[str, Any]) -> tuple[str, str]:
    return event_id, json.dumps({
        "specversion": "1.0", "id": event_id, "type": type_, "source": "/soak",
        "time": at_day(day).isoformat().replace("+00:00", "Z"), "data": data,
    }, separators=(",", ":"))


def _add_charge(rng: random.Random, account: AccountPlan, counter: Any, out: list[tuple[str, str]]) -> None:
    n = next(counter)
    currency = rng.choice(account.currencies)
    # A hard decline on a card that pays would be retried by one reading of contract §3 and not by
    # another ("never retried on the same card"); nor does it say whether a hard decline that
    # arrives after a new card was saved through the API is about the old card or the new one:
    # card payers and accounts that race a card update get soft declines only.
    reasons = SOFT if account.payer == "card_ok" or account.races_card else SOFT + HARD
    fate: Fate = rng.choices(["owed", "owed_twice", "succeeded", "voided", "named_payment", "success_only"],
                             weights=[45, 10, 15, 10, 12, 8])[0]  # type: ignore[assignment]
    if account.races_card and fate == "named_payment":
        fate = "owed"
    charge = Charge(f"ch{n}", rng.choice(account.subscriptions), currency, _amount(rng, currency),
                    rng.choice(reasons), fate)
    account.charges.append(charge)
    base = {"accountId": account.account_id, "subscriptionId": charge.subscription_id, "chargeId": charge.charge_id,
            "amount": money_text(charge.minor, currency), "currency": currency}
    day = account.day
    if fate != "success_only":
        out.append(_event(f"e{n}-f", "billing.charge.failed", day, {**base, "reason": charge.reason}))
    if fate == "owed_twice":
        out.append(_event(f"e{n}-f2", "billing.charge.failed", day, {**base, "reason": rng.choice(reasons)}))
    elif fate in ("succeeded", "success_only"):
        out.append(_event(f"e{n}-s", "billing.charge.succeeded", day, base))
    elif fate == "voided":
        out.append(_event(f"e{n}-v", "billing.charge.voided", day,
                          {"accountId": account.account_id, "chargeId": charge.charge_id}))
    elif fate == "named_payment":
        out.append(_event(f"e{n}-p", "billing.payment.received", day, {
            "accountId": account.account_id, "paymentId": f"pay{n}", "amount": base["amount"], "currency": currency,
            "method": rng.choice(["wire", "check", "card", "other"]), "chargeIds": [charge.charge_id]}))


def _add_unnamed_payment(rng: random.Random, account: AccountPlan, counter: Any,
                         out: list[tuple[str, str]]) -> None:
    owed: dict[str, int] = {}
    for c in account.charges:
        if c.fate in ("owed", "owed_twice"):
            owed[c.currency] = owed.get(c.currency, 0) + c.minor
    if not owed:
        return
    currency = rng.choice(sorted(owed))
    cover = rng.choice(["exact", "over"])
    minor = {"exact": owed[currency], "over": owed[currency] + _amount(rng, currency) // 3,
             "under": max(1, owed[currency] // 2)}[cover]
    n = next(counter)
    account.payments.append(UnnamedPayment(f"pay{n}", currency, minor, cover))  # type: ignore[arg-type]
    out.append(_event(f"e{n}-u", "billing.payment.received", account.day, {
        "accountId": account.account_id, "paymentId": f"pay{n}", "amount": money_text(minor, currency),
        "currency": currency, "method": rng.choice(["wire", "check"])}))


def _malformed(rng: random.Random, seed: int, cohort: int, j: int, accounts: list[AccountPlan]) -> Message:
    """A message that is not such an event: it must be dead-lettered at once, with its reason."""
    account = rng.choice(accounts)
    kind = rng.choice(["not json", "float amount", "unknown type"])
    event_id = f"bad{seed}-{cohort}-{j}"
    if kind == "not json":
        text = f"not an event {event_id}"
    else:
        text = json.dumps({"specversion": "1.0", "id": event_id, "source": "/soak", "time": "2027-01-04T00:00:00Z",
                           "type": "billing.charge.failed" if kind == "float amount" else "billing.charge.exploded",
                           "data": {"accountId": account.account_id, "subscriptionId": account.subscriptions[0],
                                    "chargeId": f"x{j}", "amount": 12.5, "currency": "USD",
                                    "reason": "card_declined"}})
    return Message(text, None, account.account_id)
