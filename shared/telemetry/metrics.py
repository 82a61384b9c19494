"""The product's metrics, with exactly the names and attributes of contract §6. Each is counted
at the one place its outcome is decided (named in each helper's docstring); without a meter
provider the API's no-op instruments make every call a cheap no-op."""

from __future__ import annotations

from typing import Literal

from opentelemetry import metrics

from shared.telemetry.scrub import scrub

_meter = metrics.get_meter("past-due-billing")
_events = _meter.create_counter("billing.events", unit="{event}", description="payment events by type and outcome")
_emails = _meter.create_counter("billing.emails", unit="{email}", description="emails by kind and outcome")
_charges = _meter.create_counter("billing.charges", unit="{charge}",
                                 description="the product's own card charges by outcome and decline code")
_recovered = _meter.create_counter("billing.recovered", unit="{minor_unit}",
                                   description="minor units recovered by the product's own card charges")
_transitions = _meter.create_counter("billing.transitions", unit="{transition}",
                                     description="subscription state changes the decisions made")
_deadletters = _meter.create_counter("billing.deadletters", unit="{message}", description="dead letters by source")
_sweep_lag = _meter.create_histogram("billing.sweep.lag", unit="s",
                                     description="seconds between when a sweep step was due and when it ran")

EVENT_TYPES = frozenset({"billing.charge.failed", "billing.charge.succeeded", "billing.payment.received",
                         "billing.charge.voided"})
EventOutcome = Literal["applied", "duplicate", "dead_lettered"]
EmailOutcome = Literal["sent", "skipped", "failed", "throttled"]
ChargeOutcome = Literal["succeeded", "declined", "refused", "unanswered"]


_CARD_SPAN = 256
"""More than a card number can span (19 digits and the separators between them), so masking a
value cut this far past its limit sees every card number that reaches into what is kept."""


def _bounded(value: object, limit: int = 64) -> str:
    """An attribute value from outside (a decline code, a currency): short, and never card data.
    Masked before it is cut: cut first, a card number across the limit would keep its leading
    digits, too few for the detector to know them as one."""
    return scrub(str(value)[:limit + _CARD_SPAN])[:limit] if value is not None else ""


def count_event(event_type: object, outcome: EventOutcome) -> None:
    """functions/payment_events.py: applied or duplicate after `apply_event`, dead_lettered where
    the message is dead-lettered. An unknown type counts as `unknown` (attributes stay bounded)."""
    _events.add(1, {"type": event_type if event_type in EVENT_TYPES else "unknown", "outcome": outcome})


def count_email(kind: object, outcome: EmailOutcome) -> None:
    """shared/services/email.py: where an email is closed (sent, skipped, failed) or throttled."""
    _emails.add(1, {"kind": _bounded(kind, 32), "outcome": outcome})


def count_charge(outcome: ChargeOutcome, decline_code: str | None = None, *, recovered_minor: int = 0,
                 currency: str | None = None) -> None:
    """shared/services/settle_account.py: where the gateway's answer to a charge is recorded (once per
    idempotency key), or found to be no answer. A success also adds its amount to `billing.recovered`."""
    _charges.add(1, {"outcome": outcome, "decline_code": _bounded(decline_code) if decline_code else ""})
    if outcome == "succeeded" and recovered_minor > 0 and currency:
        _recovered.add(recovered_minor, {"currency": _bounded(currency, 3)})


def count_transition(from_state: str, to_state: str) -> None:
    """shared/adapters/store/account_store.py: once a decision that changes a subscription's state commits."""
    _transitions.add(1, {"from": from_state, "to": to_state})


def count_deadletter(source: str) -> None:
    """shared/adapters/store/system.py `DeadLetters.add`: every dead letter, whatever its source."""
    _deadletters.add(1, {"source": _bounded(source)})


def record_sweep_lag(seconds: float) -> None:
    """shared/services/sweep_work.py `run_work`: a step's start against when its entry was due."""
    _sweep_lag.record(max(0.0, seconds))


def count_transitions(before: object, after: object) -> None:
    """Every subscription whose state a committed decision changed (`none` for one it added)."""
    old = getattr(before, "subscriptions", {}) or {}
    for sub_id, sub in (getattr(after, "subscriptions", {}) or {}).items():
        was = old.get(sub_id)
        to_state = str(getattr(sub, "state", ""))
        from_state = str(was.state) if was is not None else "none"
        if from_state != to_state:
            count_transition(from_state, to_state)


def count_charge_answer(answer: object) -> None:
    """The gateway's answer to one of the product's charges, recorded (a `Charged`, `Declined` or
    `Refused` of `shared.domain.charge_answers`): `billing.charges`, and for money taken `billing.recovered`."""
    from shared.domain.charge_answers import Charged, Declined

    if isinstance(answer, Charged):
        count_charge("succeeded", recovered_minor=answer.amount.minor, currency=answer.amount.currency)
    elif isinstance(answer, Declined):
        count_charge("declined", answer.decline_code or "")
    else:
        count_charge("refused")
