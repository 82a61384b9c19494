"""Billing emails through the real ACS SDK to the local endpoint, driven by the outbox in Azurite."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import requests
from azure.communication.email import EmailClient
from azure.core.credentials import AzureKeyCredential

from devstack.email_endpoint import DEFAULT_ACCESS_KEY, running
from shared.adapters.mailer.acs import NO_STATUS_RETRIES, AcsMailer
from shared.adapters.mailer.protocol import MailRejected, MailTransient, OutgoingEmail
from shared.bootstrap import Services
from shared.domain.effects import SendEmail
from shared.domain.facts import ChargeFailed, ChargeSucceeded
from shared.domain.mail import close_email
from shared.domain.model import Profile
from shared.domain.money import Money
from shared.domain.payments import Registration
from shared.services.delivery_reports import DeliveryReport, apply_report
from shared.services.email import send_email
from shared.services.unit_of_work import apply_event, register_account
from shared.services.views import account_view
from tests.integration.queues import queue

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CONTACTS = ("ap@contoso.example", "cfo@contoso.example")


@pytest.fixture
def endpoint() -> Iterator[str]:
    with running() as server:
        yield server.url


def mailer_for(url: str) -> AcsMailer:
    client = EmailClient(url, AzureKeyCredential(DEFAULT_ACCESS_KEY), **NO_STATUS_RETRIES)  # as from_settings builds it
    return AcsMailer(client, "billing@contoso.example")


def messages(url: str) -> list[dict[str, object]]:
    return list(requests.get(f"{url}/messages", timeout=10).json())


@pytest.fixture
def svc(make_services: Callable[..., Services], endpoint: str) -> Services:
    s = make_services(mailer=mailer_for(endpoint))
    s.test_clock.set(NOW)  # type: ignore[union-attr]
    register_account(s.uow, "acc-1", Registration(Profile("Contoso 有限公司", "zh-CN", CONTACTS),
                                                       (("s1", "网站"),)))
    return s


def fail_charge(s: Services) -> list[str]:
    apply_event(s.uow, ChargeFailed("e-1", "acc-1", "s1", "c1", Money.parse("1000", "JPY"), "card_expired"),
                "billing.charge.failed")
    return [r.key for r in s.uow.accounts.pending_outbox("acc-1") if r.kind == "email"]


def send_all(s: Services, keys: list[str]) -> list[str]:
    return [send_email(s.uow, s.mailer, s.settings, "acc-1", k) for k in keys]  # type: ignore[arg-type]


def test_a_failed_charge_sends_one_email_per_contact_in_the_accounts_language(svc: Services, endpoint: str) -> None:
    keys = fail_charge(svc)
    assert send_all(svc, keys) == ["sent", "sent"]
    got = messages(endpoint)
    assert sorted(m["to"][0]["address"] for m in got) == sorted(CONTACTS)  # type: ignore[index]
    for m in got:
        assert "付款" in str(m["subject"]) and "JP¥1,000" in str(m["plainText"])
        assert "/api/billing/acc-1?expires=" in str(m["html"])
    assert send_all(svc, keys) == ["gone", "gone"]  # the rows are closed: nothing more goes out
    assert len(messages(endpoint)) == 2
    kinds = [e["kind"] for e in svc.uow.accounts.timeline("acc-1")]
    assert kinds.count("email_sent") == 2


def test_a_crash_after_the_send_and_before_the_record_sends_nothing_more(
        svc: Services, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    [first, _] = fail_charge(svc)
    real_send = svc.mailer.send  # type: ignore[union-attr]

    def send_then_crash(email: OutgoingEmail, operation_id: str) -> str:
        real_send(email, operation_id)
        raise RuntimeError("the process died right after ACS accepted the message")

    monkeypatch.setattr(svc.mailer, "send", send_then_crash)
    with pytest.raises(RuntimeError):
        send_all(svc, [first])
    monkeypatch.setattr(svc.mailer, "send", real_send)
    assert send_all(svc, [first]) == ["sent"]  # the host's redelivery of the same message
    got = [m for m in messages(endpoint) if m["operationId"] == first]
    assert len(got) == 1 and got[0]["submissions"] == 2  # resent under the same operation id, stored once


def test_throttling_puts_the_email_back_at_once_and_sends_it_once(svc: Services, endpoint: str) -> None:
    [first, _] = fail_charge(svc)
    queue(svc, "email-outbox").clear_messages()  # the dispatcher's hand-offs
    requests.post(f"{endpoint}/faults", json={"status": 429, "count": 1, "retryAfter": 30}, timeout=10)
    started = time.monotonic()
    assert send_all(svc, [first]) == ["throttled"]  # never sleeps through Retry-After in the invocation
    assert time.monotonic() - started < 5
    assert queue(svc, "email-outbox").peek_messages(max_messages=32) == []  # put back, invisible for 30 s
    assert queue(svc, "email-outbox").get_queue_properties().approximate_message_count == 1
    assert send_all(svc, [first]) == ["sent"]  # (what the hand-off does when it shows again)
    stats = requests.get(f"{endpoint}/stats", timeout=10).json()
    assert stats["sendRequests"] == 2 and stats["faulted"] == 1 and len(messages(endpoint)) == 1
    requests.post(f"{endpoint}/faults", json={"status": 500, "count": 1}, timeout=10)
    [second] = [r.key for r in svc.uow.accounts.pending_outbox("acc-1") if r.kind == "email"]
    assert send_all(svc, [second]) == ["retrying"]  # any other passing failure: put back for a back-off
    assert send_all(svc, [second]) == ["sent"]  # (what the hand-off does when it shows again)
    assert len(messages(endpoint)) == 2


def test_twins_sending_one_email_at_once_deliver_it_once_and_close_it_once(
        svc: Services, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same hand-off delivered twice, the second run entirely inside the first one's send: both
    send under the email's operation id, which the email service recognises (stored once), and
    only the first close is kept."""
    [first, _] = fail_charge(svc)
    real_send = svc.mailer.send  # type: ignore[union-attr]
    twin: list[str] = []

    def send_while_a_twin_runs(email: OutgoingEmail, operation_id: str) -> str:
        if not twin:
            twin.append("running")
            twin.append(send_email(svc.uow, svc.mailer, svc.settings, "acc-1", first))  # type: ignore[arg-type]
        return real_send(email, operation_id)

    monkeypatch.setattr(svc.mailer, "send", send_while_a_twin_runs)
    assert send_all(svc, [first]) == ["sent"] and twin[1] == "sent"
    got = [m for m in messages(endpoint) if m["operationId"] == first]
    assert len(got) == 1 and got[0]["submissions"] == 2
    entries = [e for e in svc.uow.accounts.timeline("acc-1") if e["kind"] == "email_sent" and first in e["detail"]]
    assert len(entries) == 1 and svc.uow.accounts.mail_record("acc-1", first) is not None
    assert send_all(svc, [first]) == ["gone"] and len(messages(endpoint)) == 1


def test_a_failure_notice_overtaken_by_the_payment_is_not_sent(svc: Services, endpoint: str) -> None:
    keys = fail_charge(svc)
    apply_event(svc.uow, ChargeSucceeded("e-2", "acc-1", "s1", "c1", Money.parse("1000", "JPY")),
                "billing.charge.succeeded")
    outcomes = send_all(svc, keys)
    assert outcomes == ["skipped", "skipped"]
    receipts = [r.key for r in svc.uow.accounts.pending_outbox("acc-1") if r.kind == "email"]
    assert send_all(svc, receipts) == ["sent", "sent"]
    got = messages(endpoint)
    assert len(got) == 2 and all("JP¥1,000" in str(m["plainText"]) and "c1" in str(m["plainText"]) for m in got)


def test_a_permanently_refused_send_is_recorded_but_is_not_an_address_problem(svc: Services, endpoint: str) -> None:
    """ACS refusing the message (not naming the recipient) is ours to fix: recorded on the timeline,
    never shown to the customer as "billing emails to you cannot be delivered"."""
    [first, _] = fail_charge(svc)
    requests.post(f"{endpoint}/faults", json={"status": 400, "count": 1}, timeout=10)
    assert send_all(svc, [first]) == ["failed"]
    view = account_view(svc.uow.accounts.load("acc-1").account, svc.settings.policy)
    assert "contact_unreachable" not in [a["code"] for a in view["alerts"]]
    assert [e["kind"] for e in svc.uow.accounts.timeline("acc-1")].count("email_failed") == 1


def test_only_a_refusal_naming_the_recipient_is_an_address_problem(endpoint: str) -> None:
    mailer = mailer_for(endpoint)
    email = OutgoingEmail("no-at-sign", "subject", "<p>html</p>", "text")
    with pytest.raises(MailRejected) as refused:
        mailer.send(email, operation_id="7d8f3c1e-0000-4000-8000-000000000001")
    assert refused.value.bad_address
    requests.post(f"{endpoint}/faults", json={"status": 400, "count": 1}, timeout=10)
    with pytest.raises(MailRejected) as faulted:
        mailer.send(replace(email, recipient="ap@contoso.example"), operation_id="7d8f3c1e-0000-4000-8000-000000000002")
    assert not faulted.value.bad_address


def test_a_send_the_endpoint_never_answers_ends_within_seconds_as_a_passing_failure() -> None:
    """An endpoint that takes the connection and never answers (hung, or stopped with SIGSTOP):
    the send ends at the client's read timeout, with no read retry, as `MailTransient`, so the
    email is put back with its back-off instead of holding the invocation for minutes (azure-core's
    defaults, 300 s and three read retries, held four invocations 76 to 98 s in a new user's try)."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts; nobody reads or answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(MailTransient):
            mailer_for(url).send(OutgoingEmail("ap@contoso.example", "s", "<p>h</p>", "t"),
                                 operation_id="7d8f3c1e-0000-4000-8000-000000000003")
        assert time.monotonic() - started < 45


def report(svc: Services, message_id: str, recipient: str, status: str, at: datetime) -> list[str]:
    return apply_report(svc.uow, DeliveryReport(recipient, status, at, message_id, "mailbox full"))


def unreachable_alerts(svc: Services) -> list[dict[str, str]]:
    alerts = account_view(svc.uow.accounts.load("acc-1").account, svc.settings.policy)["alerts"]
    return [a for a in alerts if a["code"] == "contact_unreachable"]


def test_a_bounce_marks_the_contact_unreachable_and_a_later_delivery_clears_it(svc: Services) -> None:
    [first, _] = fail_charge(svc)
    assert send_all(svc, [first]) == ["sent"]
    recipient = svc.uow.accounts.mail_record("acc-1", first)["recipient"]  # type: ignore[index]
    bounced = datetime(2026, 12, 1, 9, 5, tzinfo=UTC)
    svc.test_clock.set(bounced)  # type: ignore[union-attr]  # a report arrives after it was made
    assert report(svc, first, recipient, "Bounced", bounced) == ["acc-1"]
    unreachable = unreachable_alerts(svc)
    assert len(unreachable) == 1 and recipient in unreachable[0]["message"]
    # An older Delivered report arriving late does not clear a newer bounce.
    report(svc, first, recipient, "Delivered", NOW)
    assert len(unreachable_alerts(svc)) == 1
    later = datetime(2026, 12, 2, tzinfo=UTC)
    svc.test_clock.set(later)  # type: ignore[union-attr]
    report(svc, first, recipient, "Delivered", later)
    assert unreachable_alerts(svc) == []
    assert report(svc, "not-ours", "someone@elsewhere.example", "Bounced", later) == []


ACS_OPERATION_ID = "39684038-0819-5168-ad1c-e96a19fda06b"  # 16 digits passing Luhn before its fourth group


def test_an_operation_id_that_looks_like_a_card_number_is_stored_and_found_unchanged(svc: Services) -> None:
    """Keys and ids are never masked: the mail row and the timeline keep the operation id as it is,
    and a delivery report about its recipient finds the account. Free text next to it still has a
    card number masked."""
    now = svc.uow.clock.now()
    recipient = CONTACTS[0]
    account = svc.uow.accounts.load("acc-1").account
    email = SendEmail("acc-1", "payment_failed", "c1", recipient)
    sent = close_email(account, email, "sent", now, operation_id=ACS_OPERATION_ID)
    assert svc.uow.accounts.close_email("acc-1", sent.record, sent.entry, account.revision, now)
    # The email service's text is masked where it enters, in the mailer port's error.
    refusal = str(MailRejected(f"refused after {ACS_OPERATION_ID}: card 4111 1111 1111 1111"))
    other = SendEmail("acc-1", "payment_failed", "c2", recipient)
    failed = close_email(account, other, "failed", now, reason=refusal)
    assert svc.uow.accounts.close_email("acc-1", failed.record, failed.entry, account.revision, now)
    row = svc.uow.accounts.mail_record("acc-1", email.key)
    assert row is not None and row["operationId"] == ACS_OPERATION_ID
    failed_row = svc.uow.accounts.mail_record("acc-1", other.key)
    assert failed_row is not None
    assert failed_row["detail"] == f"refused after {ACS_OPERATION_ID}: card **** **** **** 1111"
    details = [e["detail"] for e in svc.uow.accounts.timeline("acc-1")]
    assert any(f"(operation {ACS_OPERATION_ID})" in d for d in details)
    assert not any("4111" in d for d in details)
    assert report(svc, ACS_OPERATION_ID, recipient, "Bounced", datetime(2026, 12, 1, 9, 5, tzinfo=UTC)) == ["acc-1"]
    assert len(unreachable_alerts(svc)) == 1
