"""Issue 21 against the real SDK and the local endpoint (quotas, faults) and the budget row in Azurite."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from azure.data.tables import TableServiceClient

from devstack.email_endpoint import running
from shared.adapters.mailer.acs import AcsMailer
from shared.adapters.mailer.protocol import MailThrottled, MailTransient, OutgoingEmail
from shared.adapters.store.email_budget import BUDGET_PK, BUDGET_RK, TableEmailBudget, budget_for, pace_for
from shared.bootstrap import Services
from shared.domain.facts import ChargeFailed
from shared.domain.model import Profile
from shared.domain.money import Money
from shared.domain.payments import Registration
from shared.services.dispatch import read_email_handoff
from shared.services.email import send_email
from shared.services.unit_of_work import apply_event, register_account
from shared.settings import Settings
from tests.integration.queues import queue

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
EMAIL = OutgoingEmail("ap@contoso.example", "Payment failed", "<p>hi</p>", "hi")


@pytest.fixture
def endpoint() -> Iterator[str]:
    with running() as server:
        yield server.url


def _mailer(url: str) -> AcsMailer:
    from devstack.email_endpoint import DEFAULT_ACCESS_KEY

    mailer = AcsMailer.from_settings(Settings.from_env({
        "AzureWebJobsStorage": "UseDevelopmentStorage=true", "ACS_EMAIL_ENDPOINT": url,
        "ACS_EMAIL_ACCESS_KEY": DEFAULT_ACCESS_KEY}))
    assert mailer is not None
    return mailer


def _stats(url: str) -> dict[str, int]:
    return dict(requests.get(f"{url}/stats", timeout=10).json())


@pytest.mark.parametrize(("fault", "wait"), [
    ({"status": 429, "count": 1, "retryAfter": 30}, 30.0),
    ({"status": 429, "count": 1}, 60.0),  # no wait named: about one minute window
    ({"status": 503, "count": 1, "retryAfter": 7}, 7.0),
])
def test_a_throttled_send_comes_back_at_once_with_the_wait_named(endpoint: str, fault: dict[str, Any],
                                                                 wait: float) -> None:
    requests.post(f"{endpoint}/faults", json=fault, timeout=10)
    started = time.monotonic()
    with pytest.raises(MailThrottled) as caught:
        _mailer(endpoint).send(EMAIL, "6d2f8c1e-0000-4000-8000-000000000001")
    assert time.monotonic() - started < 3  # the SDK did not sleep through Retry-After
    assert caught.value.retry_after.total_seconds() == wait
    assert _stats(endpoint)["sendRequests"] == 1  # and did not retry the status itself


def test_a_503_naming_no_wait_is_transient_not_throttled(endpoint: str) -> None:
    requests.post(f"{endpoint}/faults", json={"status": 503, "count": 1}, timeout=10)
    with pytest.raises(MailTransient) as caught:
        _mailer(endpoint).send(EMAIL, "6d2f8c1e-0000-4000-8000-000000000002")
    assert not isinstance(caught.value, MailThrottled)
    assert _stats(endpoint)["sendRequests"] == 1


def test_beyond_the_endpoints_quota_the_wait_is_what_the_window_needs(endpoint: str) -> None:
    requests.put(f"{endpoint}/quota", json={"perMinute": 2}, timeout=10)
    mailer = _mailer(endpoint)
    mailer.send(EMAIL, "6d2f8c1e-0000-4000-8000-000000000003")
    mailer.send(EMAIL, "6d2f8c1e-0000-4000-8000-000000000004")
    with pytest.raises(MailThrottled) as caught:
        mailer.send(EMAIL, "6d2f8c1e-0000-4000-8000-000000000005")
    assert 55 <= caught.value.retry_after.total_seconds() <= 60
    mailer.send(EMAIL, "6d2f8c1e-0000-4000-8000-000000000003")  # a resubmission is no new email: accepted
    assert _stats(endpoint)["throttled"] == 1


def test_the_budget_row_paces_every_instance_together(storage_connection_string: str) -> None:
    tables = TableServiceClient.from_connection_string(storage_connection_string)
    table = tables.create_table_if_not_exists(f"budget{int(time.time() * 1000)}")
    pace = pace_for(600, None)
    assert pace is not None
    clock = [1_000_000.0]
    instances = [TableEmailBudget(table, pace, clock=lambda: clock[0]) for _ in range(3)]
    slots: list[float] = []
    lock = threading.Lock()

    def take(budget: TableEmailBudget) -> None:
        for _ in range(20):
            slot = budget.reserve(critical=True)
            with lock:
                slots.append(slot.at.timestamp())

    threads = [threading.Thread(target=take, args=(b,)) for b in instances]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slots.sort()
    assert len(slots) == 60 and slots[0] == clock[0]
    assert all(b - a == pytest.approx(pace.interval, abs=1e-5) for a, b in itertools.pairwise(slots))  # none twice
    row = table.get_entity(BUDGET_PK, BUDGET_RK)
    assert row["tat"].timestamp() == pytest.approx(slots[-1] + pace.interval, abs=1e-5)  # an Edm.DateTime
    unpaced = budget_for(table, None, None)  # no quota: the row would carry only the shared back-off
    assert unpaced.pace is None and unpaced.reserve(critical=True).wait.total_seconds() == 0
    assert unpaced.requests == 0  # and nothing is read while nothing is throttled
    tables.delete_table(table.table_name)


def test_a_budget_row_written_before_the_hold_reads_as_no_hold(storage_connection_string: str) -> None:
    tables = TableServiceClient.from_connection_string(storage_connection_string)
    table = tables.create_table_if_not_exists(f"budget{int(time.time() * 1000)}")
    table.create_entity({"PartitionKey": BUDGET_PK, "RowKey": BUDGET_RK, "tat": 1_000_000.0, "routine": 0.0})
    pace = pace_for(600, None)
    budget = TableEmailBudget(table, pace, clock=lambda: 999_000.0)
    assert budget.reserve(critical=True).at.timestamp() == 1_000_000.0 and budget.held_until() is None
    assert budget.back_off(datetime.fromtimestamp(1_000_050.0, UTC))
    row = table.get_entity(BUDGET_PK, BUDGET_RK)
    assert row["hold"].timestamp() == 1_000_050.0  # rewritten as times
    assert row["tat"].timestamp() == pytest.approx(1_000_000.0 + pace.interval)
    tables.delete_table(table.table_name)


@pytest.fixture
def paced(make_services: Callable[..., Services], endpoint: str) -> Services:
    from dataclasses import replace

    s = make_services(mailer=_mailer(endpoint))
    s.settings = replace(s.settings, email_quota_per_minute=20)
    s.email_budget = budget_for(s.mail_index.table, 20, None)  # on the system table, as bootstrap does
    s.test_clock.set(NOW)  # type: ignore[union-attr]
    register_account(s.uow, "acc-1", Registration(Profile("Contoso", "en", ("ap@contoso.example",
                                                                              "cfo@contoso.example")),
                                                  (("s1", "Website"),)))
    return s


def test_a_paced_email_is_handed_off_with_its_slot_and_goes_then(paced: Services, endpoint: str) -> None:
    apply_event(paced.uow, ChargeFailed("e-1", "acc-1", "s1", "c1", Money.parse("10.00", "USD"), "card_expired"),
                "billing.charge.failed")
    keys = [r.key for r in paced.uow.accounts.pending_outbox("acc-1") if r.kind == "email"]
    q = queue(paced, "email-outbox")
    q.clear_messages()
    outcomes = [send_email(paced.uow, paced.mailer, paced.settings, "acc-1", k,  # type: ignore[arg-type]
                           budget=paced.email_budget) for k in keys]
    assert sorted(outcomes) == ["paced", "sent"]
    time.sleep(4.5)  # 60 / 19 s per send, in whole seconds
    [message] = q.receive_messages(max_messages=32)
    handoff = read_email_handoff(message.content)
    assert handoff.slot is not None and json.loads(message.content)["key"] in keys
    assert send_email(paced.uow, paced.mailer, paced.settings, "acc-1", handoff.key,  # type: ignore[arg-type]
                      budget=paced.email_budget, slot=handoff.slot) == "sent"
    assert _stats(endpoint)["accepted"] == 2 and _stats(endpoint)["throttled"] == 0


def test_a_429_at_the_endpoint_holds_every_instance_through_the_budget_row(paced: Services, endpoint: str) -> None:
    apply_event(paced.uow, ChargeFailed("e-1", "acc-1", "s1", "c1", Money.parse("10.00", "USD"), "card_expired"),
                "billing.charge.failed")
    first, second = [r.key for r in paced.uow.accounts.pending_outbox("acc-1") if r.kind == "email"]
    other = budget_for(paced.mail_index.table, 20, None)  # another instance on the same row
    q = queue(paced, "email-outbox")
    q.clear_messages()
    requests.post(f"{endpoint}/faults", json={"status": 429, "count": 1, "retryAfter": 30}, timeout=10)
    asked = time.time()
    assert send_email(paced.uow, paced.mailer, paced.settings, "acc-1", first,  # type: ignore[arg-type]
                      budget=paced.email_budget) == "throttled"
    row = paced.mail_index.table.get_entity(BUDGET_PK, BUDGET_RK)
    assert asked + 29 <= row["hold"].timestamp() <= time.time() + 30
    assert send_email(paced.uow, paced.mailer, paced.settings, "acc-1", second,  # type: ignore[arg-type]
                      budget=other) == "paced"  # its reservation read the hold: no send before it
    assert _stats(endpoint)["sendRequests"] == 1
    assert q.peek_messages(max_messages=32) == []  # both put back, invisible until after the hold
    assert q.get_queue_properties().approximate_message_count == 2


def test_a_500_is_tried_again_after_a_back_off_without_failing_the_invocation(
        make_services: Callable[..., Services], endpoint: str) -> None:
    s = make_services(mailer=_mailer(endpoint))  # no quota: the budget only carries the back-off
    s.test_clock.set(NOW)  # type: ignore[union-attr]
    register_account(s.uow, "acc-1", Registration(Profile("Contoso", "en", ("ap@contoso.example",)),
                                                  (("s1", "Website"),)))
    apply_event(s.uow, ChargeFailed("e-1", "acc-1", "s1", "c1", Money.parse("10.00", "USD"), "card_expired"),
                "billing.charge.failed")
    [key] = [r.key for r in s.uow.accounts.pending_outbox("acc-1") if r.kind == "email"]
    q = queue(s, "email-outbox")
    q.clear_messages()
    requests.post(f"{endpoint}/faults", json={"status": 500, "count": 1}, timeout=10)
    assert send_email(s.uow, s.mailer, s.settings, "acc-1", key, budget=s.email_budget) == "retrying"  # type: ignore[arg-type]
    assert q.peek_messages(max_messages=32) == []  # put back for its back-off (5 s at most, this early)
    deadline = time.monotonic() + 8
    while not (got := list(q.receive_messages(max_messages=32))) and time.monotonic() < deadline:
        time.sleep(0.25)
    [message] = got
    assert read_email_handoff(message.content).key == key
    assert send_email(s.uow, s.mailer, s.settings, "acc-1", key, budget=s.email_budget) == "sent"  # type: ignore[arg-type]
    assert _stats(endpoint)["accepted"] == 1 and _stats(endpoint)["faulted"] == 1
    assert s.email_budget.requests == 0  # type: ignore[union-attr]  # one email's failure holds nobody
