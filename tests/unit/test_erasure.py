"""Issue 24 point 2 on the pure core: erasure removes every address and card summary an account
ever held from the text of its records, whatever the case, and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from shared.domain.charging import save_payment_method
from shared.domain.effects import SendEmail
from shared.domain.erasure import Erasure, profile_words
from shared.domain.mail import close_email, delivery_reported
from shared.domain.model import Account, PaymentMethod, Profile
from shared.domain.payments import Registration, register
from shared.domain.policy import DunningPolicy
from shared.domain.retention import REDACTED
from shared.inbound.account_body import EMAIL_PATTERN

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICY = DunningPolicy()
OLD, NEW = "Old.Payer+ap@Contoso.example", "new-ap@contoso.example"
MASTERCARD = PaymentMethod("card", "tok_mastercard", "mastercard", "4444", 11, 2029)
VISA = PaymentMethod("card", "tok_visa", "visa", "0069", 12, 2030)
PROSE = (
    "mail to {} was not delivered: Bounced (550 5.1.1 <{}>: mailbox unavailable)",
    "billing contacts changed from {}, cfo@contoso.example to {}",
    "payment_failed email to {} could not be sent: recipient '{}' refused",
    "{}. {}",
)


def _registered(contacts: tuple[str, ...], card: PaymentMethod | None) -> Account:
    reg = Registration(Profile("Contoso", "en", contacts, card), (("s1", "Web shop"),))
    return register(Account("acc"), reg, T0, POLICY).account


def _history() -> tuple[Account, list[str]]:
    """The issue's setup on the pure core: registered with OLD, a mastercard saved, an email to
    OLD, a bounce quoting OLD in capitals, then another contact and another card. The final
    account and the timeline's details."""
    steps = [save_payment_method(_registered((OLD,), None), MASTERCARD, T0, POLICY)]
    sent = close_email(steps[-1].account, SendEmail("acc", "payment_failed", "c1", OLD), "sent", T0,
                       operation_id="op-1")
    steps.append(delivery_reported(steps[-1].account, OLD, "Bounced", T0 + timedelta(minutes=1),
                                   f"550 5.1.1 <{OLD.upper()}>: mailbox unavailable", T0, POLICY))
    steps.append(register(steps[-1].account, Registration(Profile("Contoso", "en", (NEW,)), (("s1", "Web shop"),)),
                          T0 + timedelta(hours=1), POLICY))
    steps.append(save_payment_method(steps[-1].account, VISA, T0 + timedelta(hours=2), POLICY))
    return steps[-1].account, [sent.entry.detail, *(e.detail for d in steps for e in d.timeline)]


def test_every_address_and_card_the_account_held_goes_from_its_history() -> None:
    account, details = _history()
    assert account.profile is not None and OLD not in profile_words(account.profile)  # a former contact
    before = "\n".join(details)
    assert OLD in before and OLD.upper() in before and "mastercard ending 4444" in before
    erasure = Erasure.of([*profile_words(account.profile), OLD], details)  # OLD: a mail record's recipient
    after = "\n".join(erasure.scrub(d) for d in details)
    for gone in (OLD, NEW, "4444", "0069", "mastercard ending", "visa ending"):
        assert gone.lower() not in after.lower()
    assert REDACTED in after
    assert "card [deleted] saved for every subscription" in after


def test_a_former_address_goes_by_its_shape_when_no_record_names_it() -> None:
    """A run resumed after a crash may not see the mail record that named an address: the text
    still loses it."""
    _, details = _history()
    after = "\n".join(Erasure.of([], details).scrub(d) for d in details)
    assert OLD.lower() not in after.lower() and "4444" not in after


def _any_case(text: str, flips: list[bool]) -> str:
    return "".join(c.swapcase() if flip else c for c, flip in zip(text, flips + [False] * len(text), strict=False))


ADDRESSES = st.from_regex(EMAIL_PATTERN, fullmatch=True).filter(lambda a: len(a) <= 254)


@given(ADDRESSES, st.lists(st.booleans(), max_size=320), st.sampled_from(PROSE), st.booleans())
def test_an_accepted_address_goes_from_text_in_any_case(address: str, flips: list[bool], prose: str,
                                                        named: bool) -> None:
    """Every billing contact the product accepts, quoted in any case in any of the texts the
    product writes, is gone, whether a record names it or only its shape gives it away."""
    variant = _any_case(address, flips)
    text = prose.format(variant, variant)
    after = Erasure.of([address] if named else [], [text]).scrub(text)
    assert variant not in after and address.casefold() not in after.casefold()
    assert "@" not in after.replace("cfo@contoso.example", "")  # cfo: also an address, gone too
    assert "cfo@contoso.example" not in after


BRANDS = st.sampled_from(["visa", "mastercard", "amex", "unionpay", "eftpos_au"])


@given(BRANDS, st.from_regex(r"\d{4}", fullmatch=True), st.lists(st.booleans(), max_size=40))
def test_a_card_summary_goes_whatever_the_case(brand: str, last4: str, flips: list[bool]) -> None:
    summary = _any_case(f"card {brand} ending {last4}", flips)
    text = f"{summary} saved for every subscription"
    card = PaymentMethod("card", "tok", brand, last4, 1, 2030)
    for named in (profile_words(Profile("C", "en", ("a@b.example",), card)), set()):
        after = Erasure.of(named, [text]).scrub(text)
        assert last4 not in after and brand.casefold() not in after.casefold()


FINANCIAL = (
    "charge pay-20261201-00000001 of 42.00 USD failed: card_expired",
    "card charge of 10.00 USD succeeded (ch_4111111111111111)",
    "wire of 1,000.00 USD by wire",
    "steps taken: reminder_7, disable_warning",
    "past_due → disabled",
    "charge c-1234 of 0.50 EUR paid by card",
    "late sweep: pending 1234 superseded",
)


@given(st.one_of(st.sampled_from(FINANCIAL),
                 st.text(max_size=200).filter(lambda t: "@" not in t and "ending" not in t.lower())))
def test_text_without_personal_data_is_kept_as_it_was(text: str) -> None:
    """Charges, payments, amounts and ids stay: only addresses and card summaries are replaced."""
    assert Erasure.of([], [text]).scrub(text) == text
    assert Erasure.of(["ap@contoso.example", "visa ending 0069"], [text]).scrub(text) == text
