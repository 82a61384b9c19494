"""Issue 24 points 4 and 5 on Azurite: no text reaches Table Storage in a form it cannot hold.

Every write and query of the store is driven with text that includes lone surrogates (category Cs),
characters Table keys forbid, controls and noncharacters: nothing raises, what is read back is the
text with each lone surrogate replaced by U+FFFD, and a query for text no row can hold finds
nothing."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import UpdateMode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters.store import decision_rows
from shared.adapters.store.storable import is_storable, storable_text
from shared.adapters.store.system import DeadLetterCursor
from shared.adapters.store.timeline import BadCursor, Cursor, timeline_page
from shared.adapters.store.tokens import encode_token
from shared.bootstrap import Services
from shared.domain.model import Profile
from shared.domain.payments import Registration
from shared.services.dead_letters import dead_letter_content
from shared.services.delivery_reports import DeliveryReport, apply_report
from shared.services.unit_of_work import register_account

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
# Lone surrogates as often as anything else, and what Table keys refuse, beside any other character.
CHARS = st.one_of(st.characters(categories=["Cs"]), st.characters(),
                  st.sampled_from("/\\#?'\"%|@\x00\x1f\x7f\x85\ufffd\ufffe\uffff\U0001f600"))
# Not `st.text(alphabet=CHARS)`: it merges the alphabets into one range, where Cs is 0.2 %; this
# way about 60 % of drawn strings hold a surrogate.
TEXT = st.lists(CHARS, max_size=40).map("".join)
EXAMPLES = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def svc(make_services: Callable[..., Services]) -> Services:
    s = make_services()
    s.test_clock.set(NOW)  # type: ignore[union-attr]
    return s


@EXAMPLES
@given(name=TEXT, detail=TEXT, message_id=TEXT)
def test_a_decision_keeps_its_text_with_lone_surrogates_replaced(svc: Services, name: str, detail: str,
                                                                  message_id: str) -> None:
    # The profile (a JSON document in the account row) and a timeline entry (the report's status
    # message) are written; both come back in their storable form.
    tag = uuid.uuid4().hex[:12]
    account_id, contact = f"acc-{tag}", f"billing-{tag}@contoso.example"
    register_account(svc.uow, account_id, Registration(Profile(name or "x", "en", (contact,)), (("s1", "Web"),)))
    report = DeliveryReport(contact, "Bounced", NOW - timedelta(minutes=1), message_id, detail)
    assert apply_report(svc.uow, report) == [account_id]
    account = svc.uow.accounts.load(account_id).account
    assert account.profile is not None and account.profile.display_name == storable_text(name or "x")
    last = svc.uow.accounts.timeline(account_id)[-1]
    assert last["kind"] == "contact_unreachable"
    assert last["detail"].endswith(f" ({storable_text(detail)})" if detail else "Bounced")


@EXAMPLES
@given(address=TEXT, message_id=TEXT)
def test_a_report_for_text_no_row_can_hold_finds_no_account(svc: Services, address: str, message_id: str) -> None:
    recipient = f"{address}@contoso.example"
    found = apply_report(svc.uow, DeliveryReport(recipient, "Bounced", NOW, message_id, "550"))
    assert found == []
    assert svc.uow.contacts.accounts(recipient) == []


@EXAMPLES
@given(reason=TEXT, body=TEXT)
def test_dead_letters_keep_text_in_its_storable_form(svc: Services, reason: str, body: str) -> None:
    message_id = uuid.uuid4().hex
    svc.uow.dead_letters.add(source="payment-events", reason=reason, body=body, received_at=NOW, message_id=message_id)
    item = svc.uow.dead_letters.get(f"msg-payment-events-{message_id}")
    content = dead_letter_content(body, reason)
    assert item is not None
    assert item["text"] == storable_text(content.text) and item["reason"] == storable_text(content.reason[:4000])


@EXAMPLES
@given(key=TEXT)
def test_reads_by_any_key_find_nothing_rather_than_fail(svc: Services, key: str) -> None:
    assert not svc.uow.accounts.exists(key) and svc.uow.accounts.mail_record("acc-1", key) is None
    assert svc.uow.dead_letters.get(key) is None
    svc.uow.accounts.table.delete_entity(key, key)  # no such row: done
    assert svc.uow.accounts.charge_notes(key) == [] and svc.uow.accounts.timeline(key) == []


@EXAMPLES
@given(row=TEXT, item=TEXT, order=st.sampled_from(["oldest", "newest"]))
def test_continuation_tokens_with_any_text_are_refused_or_read(svc: Services, row: str, item: str,
                                                               order: str) -> None:
    token = base64.urlsafe_b64encode(json.dumps({"r": f"tl|000000000001{row}", "s": 0, "o": order})
                                     .encode()).decode().rstrip("=")
    try:
        cursor = Cursor.parse(token, order)  # type: ignore[arg-type]
    except BadCursor:
        cursor = None
    if cursor is not None:
        assert is_storable(cursor.row)
        timeline_page(svc.uow.accounts.table, "acc-1", limit=5, order=cursor.order, cursor=cursor, revision=3)
    dead = DeadLetterCursor.parse(encode_token({"d": "2026-12-01T09:00:00+00:00", "i": item or "x"}))
    assert svc.uow.dead_letters.page(5, dead).items == []


@EXAMPLES
@given(detail=TEXT)
def test_writes_packed_into_continuation_rows_are_storable_too(svc: Services, detail: str) -> None:
    # A decision too large for one transaction carries its writes compressed in continuation rows,
    # where the table client cannot see them: they are made storable before they are packed.
    entity = {"PartitionKey": "acc-1", "RowKey": "mail|k", "detail": detail, "recipient": detail}
    (row,) = decision_rows.continuation_rows("acc-1", 7, [entity])
    svc.uow.accounts.table.upsert_entity(row, mode=UpdateMode.REPLACE)
    (write,) = decision_rows.writes_in(svc.uow.accounts.table.get_entity("acc-1", row["RowKey"]))
    assert write == {**entity, "detail": storable_text(detail), "recipient": storable_text(detail)}
    svc.uow.accounts.table.submit_transaction([("upsert", write)])
    assert svc.uow.accounts.table.get_entity("acc-1", "mail|k")["detail"] == storable_text(detail)
