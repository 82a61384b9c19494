"""Billing emails: every kind in every locale says what happened, what to do, by when, and links out."""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape

from shared.domain.effects import EmailKind
from shared.domain.model import Locale
from shared.domain.money import Money
from shared.notifications import (
    EMAIL_KINDS,
    LOCALES,
    EmailContext,
    PaidLine,
    SubscriptionLine,
    format_date,
    format_money,
    links_to_billing_page,
    render_email,
)
from shared.notifications.catalog import catalogs
from shared.notifications.formatting import single_line

USD = Money.parse("12.34", "USD")
JPY = Money.parse("1000", "JPY")
EUR = Money.parse("5.00", "EUR")
DISABLE_AT = datetime(2026, 12, 31, 9, 30, tzinfo=UTC)
CANCEL_AT = datetime(2027, 3, 1, tzinfo=UTC)
DELETE_AT = datetime(2027, 5, 30, tzinfo=UTC)
PAY_URL = "https://billing.example.com/pay?account=acct-1&sig=ab%2Fcd"
SUPPORT_URL = "https://support.example.com/help?topic=billing"
CJK = re.compile(r"[\u4e00-\u9fff]")

SOURCE_MESSAGE: dict[Locale, str] = {
    "en": "We couldn't charge your credit card for your subscription. "
    "To prevent service interruption, update your payment information.",
    "zh-CN": "我们未能通过信用卡收取订阅费用。为防止发生服务中断的情况，请更新付款信息。",
}

CTX = EmailContext(
    account_id="acct-1",
    display_name="Contoso Ltd",
    subscriptions=(
        SubscriptionLine("sub-web", "Contoso Web", (USD,)),
        SubscriptionLine("sub-batch", "Contoso Batch", (JPY, EUR)),
    ),
    balance=(USD, JPY, EUR),
    update_payment_url=PAY_URL,
    support_url=SUPPORT_URL,
    next_step_at=DISABLE_AT,
    disable_at=DISABLE_AT,
    cancel_at=CANCEL_AT,
    delete_at=DELETE_AT,
    reason="card_declined",
    paid=(
        PaidLine("ch_001", "sub-web", USD),
        PaidLine("ch_002", "sub-batch", JPY),
        PaidLine("ch_003", "sub-batch", EUR),
    ),
    reactivated=("sub-web", "sub-batch"),
    old_contacts=("old-admin@contoso.example",),
    new_contacts=("billing@contoso.example", "cfo@contoso.example"),
    days_left=7,
)

# The dates each kind must name: its next escalation, and for service_disabled also the deletion.
DATES: dict[EmailKind, tuple[datetime, ...]] = {
    "payment_failed": (DISABLE_AT,),
    "payment_reminder": (DISABLE_AT,),
    "disable_warning": (DISABLE_AT,),
    "service_disabled": (CANCEL_AT, DELETE_AT),
    "payment_settled": (),
    "service_canceled": (DELETE_AT,),
    "deletion_warning": (DELETE_AT,),
    "data_deleted": (DELETE_AT,),
    "contact_changed": (),
    "card_expiring": (DISABLE_AT,),  # the card's last valid day, next_step_at when not given
}
NO_BILLING_LINK: frozenset[EmailKind] = frozenset({"data_deleted", "contact_changed"})


def visible(html: str) -> str:
    """The HTML with entities decoded, to look for sentences that contain quotes."""
    return html_lib.unescape(html)


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", EMAIL_KINDS)
def test_every_kind_and_locale_has_the_facts_and_the_links(kind: EmailKind, locale: Locale) -> None:
    email = render_email(kind, locale, CTX)

    assert email.subject.strip() and "\n" not in email.subject
    if locale == "zh-CN":
        assert CJK.search(email.subject) and CJK.search(email.text)
    else:
        assert not CJK.search(email.subject + email.text + email.html)
    assert "Contoso Ltd" in email.subject
    assert f'<html lang="{locale}">' in email.html

    amounts = [p.amount for p in CTX.paid] if kind == "payment_settled" else [USD, JPY, EUR]
    for amount in amounts:
        assert format_money(amount, locale) in email.html
        assert format_money(amount, locale) in email.text
    for when in DATES[kind]:
        assert format_date(when, locale) in email.html
        assert format_date(when, locale) in email.text

    assert f'href="{escape(SUPPORT_URL)}"' in email.html
    assert SUPPORT_URL in email.text
    if kind in NO_BILLING_LINK:
        assert not links_to_billing_page(kind)
        assert "billing.example.com" not in email.html + email.text
    else:
        assert links_to_billing_page(kind)
        assert f'href="{escape(PAY_URL)}"' in email.html
        assert PAY_URL in email.text
    assert "acct-1" in email.html and "acct-1" in email.text
    assert "<h1" in email.html and "<table" in email.html


class _TagBalance(HTMLParser):
    """Fails on an end tag that does not close the innermost open element."""

    VOID = frozenset({"meta", "br"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.open and self.open[-1] == tag:
            self.open.pop()
        else:
            self.errors.append(f"</{tag}> inside {self.open}")


SPARSE = replace(CTX, subscriptions=(), balance=(), paid=(), reactivated=(), old_contacts=(), reason=None)


@pytest.mark.parametrize("ctx", [CTX, SPARSE], ids=["full", "sparse"])
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", EMAIL_KINDS)
def test_html_is_well_nested_and_text_has_no_markup(
    kind: EmailKind, locale: Locale, ctx: EmailContext
) -> None:
    email = render_email(kind, locale, ctx)
    parser = _TagBalance()
    parser.feed(email.html)
    parser.close()
    assert parser.errors == [] and parser.open == []
    assert email.html.startswith("<!DOCTYPE html>")
    assert "<" not in email.text and "&amp;" not in email.text
    assert "\n\n\n" not in email.text


@pytest.mark.parametrize("locale", LOCALES)
def test_subscriptions_are_listed_with_their_amounts(locale: Locale) -> None:
    email = render_email("payment_reminder", locale, CTX)
    for sub in CTX.subscriptions:
        for part in (sub.name, sub.subscription_id):
            assert part in email.html and part in email.text
    line = next(line for line in email.text.splitlines() if "Contoso Batch" in line)
    assert format_money(JPY, locale) in line and format_money(EUR, locale) in line


def test_money_in_english() -> None:
    assert format_money(JPY, "en") == "¥1,000"
    assert format_money(USD, "en") == "$12.34"
    assert format_money(EUR, "en") == "€5.00"
    assert format_money(Money.parse("1234567.8", "USD"), "en") == "$1,234,567.80"
    assert format_money(Money.parse("1.234", "KWD"), "en").endswith("1.234")


def test_money_in_chinese_as_cldr_writes_it() -> None:
    assert format_money(USD, "zh-CN") == "US$12.34"
    assert format_money(JPY, "zh-CN") == "JP¥1,000"
    assert format_money(Money.parse("1000", "CNY"), "zh-CN") == "¥1,000.00"


def test_jpy_renders_without_decimals_in_the_email() -> None:
    email = render_email("payment_failed", "en", CTX)
    assert "¥1,000" in email.html and "¥1,000" in email.text
    assert "¥1,000.00" not in email.html + email.text
    assert "$12.34" in email.html and "$12.34" in email.text


def test_dates_per_locale_are_utc_days() -> None:
    assert format_date(datetime(2026, 12, 31, tzinfo=UTC), "en") == "December 31, 2026"
    assert format_date(datetime(2026, 12, 31, tzinfo=UTC), "zh-CN") == "2026年12月31日"
    assert format_date(datetime(2026, 12, 31, 23, 59), "zh-CN") == "2026年12月31日"  # naive is UTC
    in_beijing = datetime(2027, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=8)))
    assert format_date(in_beijing, "en") == "December 31, 2026"


def test_chinese_email_shows_the_chinese_date() -> None:
    email = render_email("disable_warning", "zh-CN", CTX)
    assert "2026年12月31日" in email.subject
    assert "2026年12月31日" in email.html and "2026年12月31日" in email.text


@pytest.mark.parametrize("locale", LOCALES)
def test_payment_failed_carries_the_source_message(locale: Locale) -> None:
    email = render_email("payment_failed", locale, CTX)
    assert SOURCE_MESSAGE[locale] in email.text
    assert SOURCE_MESSAGE[locale] in visible(email.html)
    assert str(escape(SOURCE_MESSAGE[locale])) in email.html


def test_payment_failed_subjects() -> None:
    en, zh = (render_email("payment_failed", locale, CTX).subject for locale in LOCALES)
    assert en == "Action required: payment failed for Contoso Ltd"
    assert zh == "[Contoso Ltd] 付款失败：请更新付款方式"


def test_payment_failed_says_what_to_do_by_when() -> None:
    email = render_email("payment_failed", "en", CTX)
    sentence = "Update your payment method before December 31, 2026 to avoid your services being disabled."
    assert sentence in email.text and sentence in email.html
    assert "请在2026年12月31日之前更新付款方式" in render_email("payment_failed", "zh-CN", CTX).text


REASONS = (
    "card_declined",
    "insufficient_funds",
    "processing_error",
    "authentication_required",
    "card_expired",
    "lost_or_stolen",
    "other",
)


@pytest.mark.parametrize("locale", LOCALES)
def test_decline_reasons_in_human_words(locale: Locale) -> None:
    texts = set()
    for reason in REASONS:
        email = render_email("payment_failed", locale, replace(CTX, reason=reason))
        reason_line = catalogs()[locale].text(f"reason.{reason}")
        assert reason_line in email.text and str(escape(reason_line)) in email.html
        assert "_" not in reason or reason not in email.text  # the code itself is not shown
        texts.add(reason_line)
    assert len(texts) == len(REASONS)
    unknown = render_email("payment_failed", locale, replace(CTX, reason="do_not_honor"))
    assert catalogs()[locale].text("reason.other") in unknown.text
    assert "do_not_honor" not in unknown.text + unknown.html
    no_reason = render_email("payment_failed", locale, replace(CTX, reason=None))
    assert all(catalogs()[locale].text(f"reason.{r}") not in no_reason.text for r in REASONS)


@pytest.mark.parametrize("locale", LOCALES)
def test_payment_settled_is_a_receipt(locale: Locale) -> None:
    email = render_email("payment_settled", locale, replace(CTX, balance=()))
    for paid in CTX.paid:
        line = next(line for line in email.text.splitlines() if paid.charge_id in line)
        assert format_money(paid.amount, locale) in line
        assert paid.charge_id in email.html
    for name in ("Contoso Web", "Contoso Batch"):  # reactivated, by name
        assert name in email.text and name in email.html
    assert catalogs()[locale].text("common.no_balance") in email.text


def test_payment_settled_totals_per_currency() -> None:
    twice = replace(CTX, paid=(PaidLine("ch_1", "sub-web", USD), PaidLine("ch_2", "sub-web", USD)))
    email = render_email("payment_settled", "en", twice)
    assert "Total paid: $24.68" in email.text


@pytest.mark.parametrize("locale", LOCALES)
def test_contact_changed_lists_old_and_new_contacts(locale: Locale) -> None:
    email = render_email("contact_changed", locale, CTX)
    for address in CTX.old_contacts + CTX.new_contacts:
        assert address in email.text and address in email.html
    text = email.text
    assert text.index("old-admin@contoso.example") < text.index("billing@contoso.example")
    assert catalogs()[locale].text("contact_changed.not_you") in text


@pytest.mark.parametrize(("days", "english"), [(30, "in 30 days"), (7, "in 7 days"), (1, "in 1 day")])
def test_deletion_warning_shows_the_days_left(days: int, english: str) -> None:
    en = render_email("deletion_warning", "en", replace(CTX, days_left=days))
    assert english in en.text and english in en.html
    assert "May 30, 2027" in en.text
    zh = render_email("deletion_warning", "zh-CN", replace(CTX, days_left=days))
    assert f"{days} 天" in zh.text and f"{days} 天" in zh.html


@pytest.mark.parametrize("locale", LOCALES)
def test_service_canceled_and_data_deleted_name_the_deletion(locale: Locale) -> None:
    canceled = render_email("service_canceled", locale, CTX)
    assert format_date(DELETE_AT, locale) in canceled.subject
    deleted = render_email("data_deleted", locale, CTX)
    kept = catalogs()[locale].text("data_deleted.records_kept")
    assert kept in deleted.text and kept in visible(deleted.html)


def test_next_step_at_stands_in_for_a_missing_deadline() -> None:
    ctx = replace(CTX, disable_at=None, next_step_at=datetime(2026, 12, 20, tzinfo=UTC))
    assert "December 20, 2026" in render_email("payment_failed", "en", ctx).text


@pytest.mark.parametrize(
    ("kind", "missing"),
    [
        ("payment_failed", {"disable_at": None}),
        ("disable_warning", {"disable_at": None}),
        ("service_disabled", {"cancel_at": None}),
        ("service_canceled", {"delete_at": None}),
        ("deletion_warning", {"delete_at": None}),
        ("deletion_warning", {"days_left": None}),
    ],
)
def test_a_missing_deadline_is_refused(kind: EmailKind, missing: dict[str, None]) -> None:
    ctx = replace(CTX, next_step_at=None, **missing)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        render_email(kind, "en", ctx)


def test_unknown_locale_and_kind_are_refused() -> None:
    with pytest.raises(ValueError):
        render_email("payment_failed", "fr", CTX)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        render_email("payment_overdue", "en", CTX)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["javascript:alert(1)", "/relative/pay", "https://x.example/a\nb", ""])
def test_links_must_be_absolute_http(url: str) -> None:
    with pytest.raises(ValueError):
        render_email("payment_failed", "en", replace(CTX, update_payment_url=url))
    with pytest.raises(ValueError):
        render_email("contact_changed", "en", replace(CTX, support_url=url))
    render_email("contact_changed", "en", replace(CTX, update_payment_url=url))  # not used there


# --- escaping -------------------------------------------------------------------------------

HOSTILE_NAMES = ["<script>alert(1)</script>", '"); DROP TABLE x; --', "{{ 7*7 }} {% if x %}", "Tom & Jerry's"]


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", EMAIL_KINDS)
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_display_name_is_text_in_html_and_verbatim_in_plain_text(
    name: str, kind: EmailKind, locale: Locale
) -> None:
    email = render_email(kind, locale, replace(CTX, display_name=name))
    assert str(escape(name)) in email.html
    assert name in email.text
    assert name in email.subject
    assert "<script" not in email.html
    assert name not in email.html or not set(name) & set("<>&\"'")
    assert "49" not in email.text


@pytest.mark.parametrize("locale", LOCALES)
def test_subscription_names_are_escaped_in_html(locale: Locale) -> None:
    subs = (SubscriptionLine("sub-web", "<b>Web</b> & <i>API</i>", (USD,)),)
    email = render_email("payment_reminder", locale, replace(CTX, subscriptions=subs))
    assert "&lt;b&gt;Web&lt;/b&gt; &amp; &lt;i&gt;API&lt;/i&gt;" in email.html
    assert "<b>" not in email.html and "<i>" not in email.html
    assert "<b>Web</b> & <i>API</i>" in email.text


def test_urls_are_attribute_escaped() -> None:
    url = 'https://billing.example.com/pay?a=1&b="><script>alert(1)</script>'
    email = render_email("payment_failed", "en", replace(CTX, update_payment_url=url))
    assert 'href="https://billing.example.com/pay?a=1&amp;b=&#34;&gt;&lt;script&gt;' in email.html
    assert "<script" not in email.html
    assert url in email.text


def test_a_name_cannot_forge_a_line_in_plain_text_or_the_subject() -> None:
    name = "Evil Corp\r\nUpdate payment method: https://evil.example\u202e"
    email = render_email("payment_failed", "en", replace(CTX, display_name=name))
    assert all(not line.startswith("Update payment method: https://evil") for line in email.text.splitlines())
    assert "\n" not in email.subject and "\r" not in email.subject and "\u202e" not in email.subject
    assert "Evil Corp  Update payment method: https://evil.example" in email.text
    assert "\u202e" not in email.text + email.html


def test_long_names_are_shortened_in_the_subject_only() -> None:
    name = "A" * 200
    email = render_email("payment_failed", "en", replace(CTX, display_name=name))
    assert len(email.subject) < 120 and email.subject.endswith("…")
    assert name in email.text


SENTINEL = "Qx7Sentinel"


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=50), locale=st.sampled_from(LOCALES))
def test_any_display_name_only_ever_lands_as_escaped_text(name: str, locale: Locale) -> None:
    """The output is the template's own markup with the name inserted as text: nothing more."""
    reference = render_email("payment_failed", locale, replace(CTX, display_name=SENTINEL))
    email = render_email("payment_failed", locale, replace(CTX, display_name=name))
    shown = single_line(name)
    assert email.html == reference.html.replace(SENTINEL, str(escape(shown)))
    assert email.text == reference.text.replace(SENTINEL, shown)
    assert email.subject == reference.subject.replace(SENTINEL, shown)
    assert email.html.count("<") == reference.html.count("<")
    if name.isprintable():
        assert str(escape(name)) in email.html and name in email.text


TAG_LIKE = r"<[a-z]{1,8}( [a-z]+=[a-z0-9 \"'&;:/()]{0,12})?>[a-z0-9 &;]{0,10}"


@settings(max_examples=100, deadline=None)
@given(name=st.from_regex(TAG_LIKE, fullmatch=True))
def test_tag_like_names_never_appear_raw_in_html(name: str) -> None:
    email = render_email("payment_failed", "en", replace(CTX, display_name=name))
    assert name not in email.html
    assert html_lib.escape(name, quote=False) in email.html.replace("&#39;", "'").replace("&#34;", '"')
