"""The soak's independent model of contract §1 and §3: what each account must look like at the
final day, from the generated plan and the clock alone. It does not import `shared/`.

Where the contract fixes a value, the model fixes it; where it leaves a choice to the product
(which charges a payment without `chargeIds` covers when it covers only part; the order in which
shuffled events arrive, and so whether a subscription went past due and back before its charge
was paid), the model fixes only what every choice must agree on: sums per currency, and the
subscriptions' states and dates once the choice is read from the product's own account view.

Per currency c of an account: `owed` is what the charges that stay failed add up to, `unnamed`
what the payments without `chargeIds` bring; `net = owed - unnamed`. An account whose card pays
(a `tok_visa` saved at registration, or through the API while its events arrive) is settled by
the day-1 retry at the latest: nothing is owed, and what the card charged less the credit left is
`net`. Otherwise nothing is charged to a card, the balance is `max(0, net)` and the credit
`max(0, -net)`, whatever order the events arrive in: credit pays a currency's charges as they
arrive (contract §1, changed 2026-12-05). A fifth of the accounts pay everything they will owe
without `chargeIds`, sent before their failures: none of their subscriptions ends past due.

With the Stripe gateway a card charge takes what Stripe can charge: KWD in multiples of ten
thousandths, rounded up (`card_charge`); what it took beyond the debt is the account's credit.

A subscription that still owes after its cohort's day D walks contract §3 with the clock:
past due at D, disabled at D + 30, canceled at D + 90, data deleted at D + 180, with the emails
of each step (reminders on days 7, 14, 21, disable warning on 27, deletion warnings on cancel +
60, + 83, + 89). Some accounts of the first cohort pause their dunning on day D + 10 until D + 24
(`PAUSE`): every step from day 10 on, up to the cancellation, comes 14 days later (§3, "Paused
dunning"); what follows the cancellation counts from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bench.soak.plan import FINAL_DAY, AccountPlan, at_day

OWED_FATES = ("owed", "owed_twice")
CARD_PAYS = ("card_ok",)
REMINDER_DAYS = (7, 14, 21)
DISABLE_WARNING_DAY = 27
DISABLE_DAY = 30
CANCEL_DAY = 90
DELETION_WARNING_DAYS = (150, 173, 179)  # cancel + 60, + 83, + 89
DELETE_DAY = 180
RETRY_DAYS = (1, 3, 5, 7)
LADDER_DAYS = (0, *RETRY_DAYS, *REMINDER_DAYS, DISABLE_WARNING_DAY, DISABLE_DAY, CANCEL_DAY,
               *DELETION_WARNING_DAYS, DELETE_DAY)
PAUSE = (10, 24)
"""Days after D between which a pausing account's dunning is paused (`PUT .../dunning`)."""
STRIPE_STEP = {"KWD": 10}
"""Stripe's granularity in minor units where it is coarser than the currency's: three-decimal
currencies are charged in whole hundredths, the last digit of the thousandths 0
(https://docs.stripe.com/currencies#three-decimal)."""


def card_charge(minor: int, currency: str, gateway: str) -> int:
    """What one card charge for `minor` owed takes: Stripe's amount rounded up to its granularity
    (rounded down, a debt too small to charge would be left)."""
    step = STRIPE_STEP.get(currency, 1) if gateway == "stripe" else 1
    return -(-minor // step) * step


def paused_day(day: int, pause: tuple[int, int] | None) -> int:
    """The day after D a step of (unpaused) day `day` happens on: steps up to the cancellation
    move by the pause's length when they fall at or after its start; later ones move with the
    cancellation."""
    if pause is None or day < pause[0]:
        return day
    return day + pause[1] - pause[0]


def paused_ladder_days() -> tuple[int, ...]:
    return tuple(sorted({PAUSE[0], *(paused_day(d, PAUSE) for d in LADDER_DAYS)}))


def card_settles(account: AccountPlan) -> bool:
    """Whether a card that pays is on file by day D + 1 (the first automatic retry)."""
    return account.payer in CARD_PAYS or account.races_card


@dataclass(frozen=True)
class Ladder:
    """Contract §3 for a subscription past due since `since`, seen at `now`; `pause`: days after
    `since` between which its dunning was paused."""

    since: datetime
    now: datetime
    pause: tuple[int, int] | None = None

    @property
    def age(self) -> timedelta:
        return self.now - self.since

    def at(self, day: int) -> datetime:
        return self.since + timedelta(days=paused_day(day, self.pause))

    def reached(self, day: int) -> bool:
        return self.now >= self.at(day)

    @property
    def state(self) -> str:
        if self.reached(DELETE_DAY):
            return "deleted"
        if self.reached(CANCEL_DAY):
            return "canceled"
        if self.reached(DISABLE_DAY):
            return "disabled"
        return "past_due"

    def dates(self) -> dict[str, datetime]:
        """`pastDueSince`, and each of `disableAt`, `cancelAt`, `deleteAt` while it lies ahead
        (the contract names the fields; a step already taken shows in `state`)."""
        ahead = {"disableAt": self.at(DISABLE_DAY), "cancelAt": self.at(CANCEL_DAY), "deleteAt": self.at(DELETE_DAY)}
        return {"pastDueSince": self.since, **{k: v for k, v in ahead.items() if v > self.now}}

    def lifecycle(self) -> list[tuple[str, datetime]]:
        """The transitions after past_due, each with its effectiveAt."""
        steps = [("subscription.disabled", DISABLE_DAY), ("subscription.canceled", CANCEL_DAY),
                 ("subscription.data_deleted", DELETE_DAY)]
        return [(kind, self.at(day)) for kind, day in steps if self.reached(day)]

    def emails(self) -> dict[str, int]:
        """Emails each billing contact gets for this subscription from the sweeps."""
        return {
            "payment_reminder": sum(self.reached(x) for x in REMINDER_DAYS),
            "disable_warning": int(self.reached(DISABLE_WARNING_DAY)),
            "service_disabled": int(self.reached(DISABLE_DAY)),
            "service_canceled": int(self.reached(CANCEL_DAY)),
            "deletion_warning": sum(self.reached(x) for x in DELETION_WARNING_DAYS),
            "data_deleted": int(self.reached(DELETE_DAY)),
        }


@dataclass
class Expected:
    """What the model fixes for one account."""

    account_id: str
    net: dict[str, int]  # per currency, in minor units
    card_settles: bool
    exact_credit: bool  # no race: credit and card sums are both fixed, not only their difference
    owing: dict[str, bool | None]  # per subscription; None: the product's choice (a partial payment)
    exact_lifecycle: set[str]  # subscriptions whose transitions on day D are fixed too
    had_owed: set[str]  # subscriptions with a charge that stays failed (before any payment)
    failed_emails: tuple[int, int]  # payment_failed per contact: (at least, at most)
    ladder_from: datetime
    final: datetime = field(default_factory=lambda: at_day(FINAL_DAY))
    pause: tuple[int, int] | None = None
    gateway: str = "http"

    def ladder(self) -> Ladder:
        return Ladder(self.ladder_from, self.final, self.pause)

    def day_d_transitions(self, sub: str) -> list[tuple[str, datetime]]:
        """The fixed transitions around day D of an exact subscription: past due on D if a charge
        stays owed, and back to active on D + 1 when the card pays."""
        if sub not in self.had_owed:
            return []
        events = [("subscription.past_due", self.ladder_from)]
        if self.card_settles:
            events.append(("subscription.reactivated", self.ladder_from + timedelta(days=1)))
        return events


def expect(account: AccountPlan, gateway: str = "http") -> Expected:
    owed: dict[str, int] = {}
    unnamed: dict[str, int] = {}
    for c in account.charges:
        if c.fate in OWED_FATES:
            owed[c.currency] = owed.get(c.currency, 0) + c.minor
    for p in account.payments:
        unnamed[p.currency] = unnamed.get(p.currency, 0) + p.minor
    net = {c: owed.get(c, 0) - unnamed.get(c, 0) for c in set(owed) | set(unnamed)}
    settles = card_settles(account)
    owing: dict[str, bool | None] = {}
    exact: set[str] = set()
    for sub in account.subscriptions:
        charges = [c for c in account.charges if c.subscription_id == sub]
        owes_in = {c.currency for c in charges if c.fate in OWED_FATES}
        if settles or not owes_in:
            owing[sub] = False
        elif any(unnamed.get(c, 0) == 0 for c in owes_in):
            owing[sub] = True
        elif all(net[c] <= 0 for c in owes_in):
            owing[sub] = False  # the payment covers all it owes, whichever arrived first
        else:
            owing[sub] = None  # a partial payment: which charges it paid is the product's choice
        fixed_order = all(c.fate in (*OWED_FATES, "success_only") and unnamed.get(c.currency, 0) == 0 for c in charges)
        if fixed_order and not account.races_card:
            exact.add(sub)
    failures = [c for c in account.charges if c.fate != "success_only"]
    # A card saved while the events arrive may pay a charge before its failure email leaves; the
    # product then skips the stale news (at most one per occasion, contract §4), so no minimum.
    surely = [] if account.races_card else \
        [c for c in failures if c.fate in OWED_FATES and unnamed.get(c.currency, 0) == 0]
    had_owed = {c.subscription_id for c in account.charges if c.fate in OWED_FATES}
    return Expected(account.account_id, net, settles, not account.races_card, owing, exact, had_owed,
                    (len(surely), len(failures)), at_day(account.day), pause=PAUSE if account.pauses else None,
                    gateway=gateway)

