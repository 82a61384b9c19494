"""`AccountRepository`: what the services rely on of the account partition, on the twin and on
Table Storage alike (`shared/adapters/store/account_store.py`)."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters.store.account_store import AccountRepository, AlreadyApplied, ConcurrencyConflict, OutboxRow
from shared.adapters.store.timeline import Order
from shared.domain.decision import Decision, MailRecord
from shared.domain.effects import EmitLifecycleEvent, SendEmail, TimelineEntry
from shared.domain.facts import ChargeFailed, ChargeSucceeded, PaymentEvent
from shared.domain.mail import close_email
from shared.domain.model import Account, ChargeStatus, Profile
from shared.domain.money import Money
from shared.domain.payments import Registration, apply_payment_event, register
from shared.domain.policy import DunningPolicy
from shared.faults import CrashInjected, Faults

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICY = DunningPolicy()
CONTACTS = ("ap@contoso.example", "cfo@contoso.example")
ACC = "acc-1"


def usd(s: str) -> Money:
    return Money.parse(s, "USD")


def registered(store: AccountRepository, account_id: str = ACC) -> Account:
    snap = store.load(account_id)
    decision = register(snap.account, Registration(Profile("Contoso", "en", CONTACTS), (("s1", "Web"),)), NOW, POLICY)
    store.delete_outbox(store.commit(snap, decision, now=NOW))  # carried out (the address index)
    return decision.account


def apply(store: AccountRepository, event: PaymentEvent) -> list[OutboxRow]:
    charge_ids = [getattr(event, "charge_id", "")] if hasattr(event, "charge_id") else []
    snap = store.load(event.account_id, charge_ids=charge_ids, event_id=event.event_id, finish=True)
    decision = apply_payment_event(snap.account, event, snap.notes, NOW, POLICY)
    return store.commit(snap, decision, event_id=event.event_id, event_type=type(event).__name__, now=NOW)


def failed(cid: str, event_id: str | None = None) -> ChargeFailed:
    return ChargeFailed(event_id or f"evt-f-{cid}", ACC, "s1", cid, usd("10.00"), "card_declined")


def emails(rows: list[OutboxRow]) -> list[OutboxRow]:
    return [r for r in rows if r.kind == "email"]


# -- load and commit -------------------------------------------------------------------------------


def test_an_unknown_account_loads_empty_and_does_not_exist(accounts: AccountRepository) -> None:
    snap = accounts.load("nobody")
    assert snap.etag is None and snap.account == Account("nobody") and not snap.pending and snap.finished == ()
    assert not accounts.exists("nobody")
    assert accounts.timeline("nobody") == [] and accounts.charge_notes("nobody") == []
    assert accounts.pending_outbox("nobody") == []


def test_a_committed_decision_is_what_the_next_load_sees(accounts: AccountRepository) -> None:
    account = registered(accounts)
    snap = accounts.load(ACC)
    assert accounts.exists(ACC) and snap.etag is not None
    assert snap.account == account and snap.account.revision == 1
    assert [e["kind"] for e in accounts.timeline(ACC)] == ["account_registered", "subscription_added"]


def test_a_commit_on_a_stale_snapshot_is_a_conflict(accounts: AccountRepository) -> None:
    registered(accounts)
    stale = accounts.load(ACC)
    apply(accounts, failed("c1"))
    decision = apply_payment_event(stale.account, failed("c2"), stale.notes, NOW, POLICY)
    with pytest.raises(ConcurrencyConflict):
        accounts.commit(stale, decision, event_id="evt-f-c2", now=NOW)
    assert "c2" not in accounts.load(ACC).account.outstanding and not accounts.applied(ACC, "evt-f-c2")


def test_creating_an_account_that_exists_is_a_conflict(accounts: AccountRepository) -> None:
    never_loaded = accounts.load(ACC)
    registered(accounts)
    with pytest.raises(ConcurrencyConflict):
        accounts.commit(never_loaded, register(never_loaded.account, Registration(
            Profile("Other", "en", CONTACTS), (("s9", "X"),)), NOW, POLICY), now=NOW)
    assert list(accounts.load(ACC).account.subscriptions) == ["s1"]


def test_the_event_marker_makes_an_event_apply_once(accounts: AccountRepository) -> None:
    registered(accounts)
    assert not accounts.applied(ACC, "evt-1")
    apply(accounts, failed("c1", "evt-1"))
    assert accounts.applied(ACC, "evt-1")
    again = accounts.load(ACC, event_id="evt-1", charge_ids=["c1"])
    assert again.already_applied and again.account.revision == 2
    fresh = accounts.load(ACC)  # loaded without the marker: the commit itself refuses the second time
    decision = apply_payment_event(fresh.account, failed("c1", "evt-1"), fresh.notes, NOW, POLICY)
    with pytest.raises(AlreadyApplied):
        accounts.commit(fresh, replace(decision, account=replace(decision.account, revision=3)), event_id="evt-1",
                        now=NOW)
    assert accounts.load(ACC).etag == fresh.etag


def test_a_cached_load_is_checked_by_the_commit(accounts: AccountRepository) -> None:
    account = registered(accounts)
    assert accounts.load(ACC, cached=True).account == account  # this process's own commit
    cached = accounts.load(ACC, cached=True)
    apply(accounts, failed("c1"))  # committed after the copy was taken
    decision = apply_payment_event(cached.account, failed("c2"), {}, NOW, POLICY)
    with pytest.raises(ConcurrencyConflict):
        accounts.commit(cached, decision, event_id="evt-f-c2", now=NOW)
    assert accounts.load(ACC, cached=True).account.revision == 2


def test_notes_of_named_charges_that_are_not_outstanding_are_read(accounts: AccountRepository) -> None:
    registered(accounts)
    apply(accounts, failed("c1"))
    apply(accounts, ChargeSucceeded("evt-s-c1", ACC, "s1", "c1", usd("10.00")))
    snap = accounts.load(ACC, charge_ids=["c1", "c2"])
    assert set(snap.notes) == {"c1"} and snap.notes["c1"].status is ChargeStatus.PAID
    assert snap.assumed_new == frozenset()
    assert [(n.charge_id, n.status) for n in accounts.charge_notes(ACC)] == [("c1", ChargeStatus.PAID)]


def test_a_charge_assumed_new_that_has_a_record_fails_the_commit(accounts: AccountRepository) -> None:
    registered(accounts)
    apply(accounts, failed("c1"))
    apply(accounts, ChargeSucceeded("evt-s-c1", ACC, "s1", "c1", usd("10.00")))
    snap = accounts.load(ACC, charge_ids=["c1"], assume_new=True)
    assert snap.notes == {} and snap.assumed_new == frozenset({"c1"})
    late = failed("c1", "evt-late")  # decided as if c1 were new: it would be owed again
    decision = apply_payment_event(snap.account, late, snap.notes, NOW, POLICY)
    with pytest.raises(ConcurrencyConflict):
        accounts.commit(snap, decision, event_id=late.event_id, now=NOW)
    assert accounts.load(ACC).account.outstanding == {} and not accounts.applied(ACC, "evt-late")


def test_a_charge_assumed_new_is_proven_new_only_by_a_record_the_decision_creates(accounts: AccountRepository) -> None:
    registered(accounts)
    snap = accounts.load(ACC, charge_ids=["c9"], assume_new=True)
    assert snap.assumed_new == frozenset({"c9"})
    with pytest.raises(ConcurrencyConflict):  # a decision that writes no record of c9
        accounts.commit(snap, replace(Decision(snap.account), account=replace(snap.account, revision=2)), now=NOW)
    ok = accounts.load(ACC, charge_ids=["c9"], assume_new=True)
    accounts.commit(ok, apply_payment_event(ok.account, failed("c9"), {}, NOW, POLICY), event_id="evt-f-c9", now=NOW)
    assert [n.charge_id for n in accounts.charge_notes(ACC)] == ["c9"]


# -- decisions too large for one transaction ------------------------------------------------------


class CrashBetweenTransactions(Faults):
    def between_transactions(self) -> None:
        raise CrashInjected("between transactions")


def large_decision(account: Account, n: int = 150) -> Decision:
    effects = tuple(EmitLifecycleEvent(account.account_id, f"s{i:03d}", "subscription.past_due", "test", NOW,
                                       occasion="large") for i in range(n))
    entries = tuple(TimelineEntry(NOW, "note", f"entry {i}", None) for i in range(3))
    return Decision(replace(account, revision=account.revision + 1), effects=effects, timeline=entries)


def test_a_decision_larger_than_one_transaction_takes_effect_whole(accounts: AccountRepository) -> None:
    account = registered(accounts)
    carried = accounts.commit(accounts.load(ACC), large_decision(account), now=NOW)
    assert len(carried) == 150 and len({r.key for r in carried}) == 150
    assert sorted(r.key for r in accounts.pending_outbox(ACC)) == sorted(r.key for r in carried)
    snap = accounts.load(ACC, finish=True)
    assert not snap.pending and snap.finished == () and snap.account.revision == 2
    assert [e["detail"] for e in accounts.timeline(ACC)][-3:] == ["entry 0", "entry 1", "entry 2"]


def test_a_crash_between_transactions_is_finished_by_the_next_load_to_decide(accounts: AccountRepository) -> None:
    account = registered(accounts)
    faults = accounts.faults  # type: ignore[attr-defined]
    accounts.faults = CrashBetweenTransactions()  # type: ignore[attr-defined]
    with pytest.raises(CrashInjected):
        accounts.commit(accounts.load(ACC), large_decision(account), now=NOW)
    accounts.faults = faults  # type: ignore[attr-defined]
    looked = accounts.load(ACC)
    assert looked.pending and looked.finished == () and looked.account.revision == 2
    assert accounts.pending_outbox(ACC) == []  # still packed in the continuation rows
    finishing = accounts.load(ACC, finish=True)
    assert not finishing.pending and len(finishing.finished) == 150
    assert sorted(r.key for r in accounts.pending_outbox(ACC)) == sorted(r.key for r in finishing.finished)
    assert accounts.load(ACC, finish=True).finished == ()  # applied once
    assert not accounts.load(ACC).pending
    assert [e["detail"] for e in accounts.timeline(ACC)][-3:] == ["entry 0", "entry 1", "entry 2"]


def test_a_decision_on_a_pending_snapshot_keeps_the_rest_to_follow(accounts: AccountRepository) -> None:
    account = registered(accounts)
    accounts.faults = CrashBetweenTransactions()  # type: ignore[attr-defined]
    with pytest.raises(CrashInjected):
        accounts.commit(accounts.load(ACC), large_decision(account), now=NOW)
    accounts.faults = Faults()  # type: ignore[attr-defined]
    pending = accounts.load(ACC)
    rows = apply_payment_event(pending.account, failed("c1"), {}, NOW, POLICY)
    accounts.commit(pending, rows, event_id="evt-f-c1", now=NOW)
    assert accounts.load(ACC).pending  # the flag survives the small decision
    assert len(accounts.load(ACC, finish=True).finished) == 150


# -- the outbox ------------------------------------------------------------------------------------


def test_the_outbox_holds_what_a_commit_left_until_it_is_deleted(accounts: AccountRepository) -> None:
    registered(accounts)
    carried = apply(accounts, failed("c1"))
    assert sorted(r.kind for r in carried if r.kind != "index") == ["email", "email", "lifecycle"]
    pending = accounts.pending_outbox(ACC)
    assert sorted(r.key for r in pending) == sorted(r.key for r in carried)
    assert {r.key: r for r in pending} == {r.key: r for r in carried}  # payloads as committed
    assert accounts.pending_outbox(ACC, settled_for=timedelta(seconds=30)) == []  # too young to take over
    time.sleep(1.2)
    assert len(accounts.pending_outbox(ACC, settled_for=timedelta(seconds=1))) == len(carried)
    lifecycle = [r for r in pending if r.kind == "lifecycle"]
    accounts.delete_outbox(lifecycle)  # one row
    accounts.delete_outbox(lifecycle)  # gone already: no error
    assert sorted(r.kind for r in accounts.pending_outbox(ACC) if r.kind != "index") == ["email", "email"]
    accounts.delete_outbox([*pending, OutboxRow(ACC, "never-there", "email", {})])  # many, some gone
    assert accounts.pending_outbox(ACC) == []


def test_pending_outbox_is_the_accounts_own(accounts: AccountRepository) -> None:
    registered(accounts)
    registered(accounts, "acc-2")
    apply(accounts, failed("c1"))
    assert accounts.pending_outbox("acc-2") == []
    assert {r.account_id for r in accounts.pending_outbox(ACC)} == {ACC}


# -- one email: open, close, its record ---------------------------------------------------------


def test_an_email_is_opened_typed_and_closed_once(accounts: AccountRepository) -> None:
    registered(accounts)
    [first, second] = emails(apply(accounts, failed("c1")))
    opened = accounts.open_email(ACC, first.key)
    assert opened.email is not None and not opened.closed
    assert opened.email.key == first.key and opened.email.kind == "payment_failed"
    assert opened.email.recipient in CONTACTS and opened.email.subscription_ids == ("s1",)
    assert opened.account == accounts.load(ACC).account
    closed = close_email(opened.account, opened.email, "sent", NOW, operation_id="op-1")
    assert accounts.close_email(ACC, closed.record, closed.entry, opened.account.revision, NOW)
    assert not accounts.close_email(ACC, closed.record, closed.entry, opened.account.revision, NOW)  # a twin's close
    after = accounts.open_email(ACC, first.key)
    assert after.email is None and after.closed
    assert [r.key for r in accounts.pending_outbox(ACC) if r.kind == "email"] == [second.key]
    record = accounts.mail_record(ACC, first.key)
    assert record is not None
    assert {k: record[k] for k in ("outcome", "recipient", "kind", "operationId", "detail")} == {
        "outcome": "sent", "recipient": opened.email.recipient, "kind": "payment_failed", "operationId": "op-1",
        "detail": ""}
    assert accounts.mail_record(ACC, second.key) is None
    assert accounts.load(ACC).account.revision == 2  # closing an email rewrites no account state


def test_an_email_whose_outbox_row_is_gone_still_closes(accounts: AccountRepository) -> None:
    registered(accounts)
    [first, _] = emails(apply(accounts, failed("c1")))
    opened = accounts.open_email(ACC, first.key)
    assert opened.email is not None
    accounts.delete_outbox([first])
    gone = accounts.open_email(ACC, first.key)
    assert gone.email is None and not gone.closed
    closed = close_email(opened.account, opened.email, "failed", NOW, reason="refused")
    assert accounts.close_email(ACC, closed.record, closed.entry, opened.account.revision, NOW)
    assert accounts.open_email(ACC, first.key).closed
    assert accounts.mail_record(ACC, first.key)["detail"] == "refused"  # type: ignore[index]


def test_an_unknown_email_opens_as_nothing(accounts: AccountRepository) -> None:
    opened = accounts.open_email("nobody", "00000000-0000-5000-8000-000000000000")
    assert opened.email is None and not opened.closed and opened.account == Account("nobody")


def test_a_decision_closing_an_email_clears_its_outbox_row(accounts: AccountRepository) -> None:
    registered(accounts)
    [first, _] = emails(apply(accounts, failed("c1")))
    snap = accounts.load(ACC)
    opened = accounts.open_email(ACC, first.key)
    assert opened.email is not None
    closed = close_email(snap.account, opened.email, "failed", NOW, reason="address refused")
    decision = Decision(replace(snap.account, revision=3), timeline=(closed.entry,), mail=(closed.record,))
    accounts.commit(snap, decision, now=NOW)
    assert accounts.open_email(ACC, first.key).closed
    assert first.key not in {r.key for r in accounts.pending_outbox(ACC)}


# -- the timeline --------------------------------------------------------------------------------


def history(accounts: AccountRepository) -> list[dict[str, object]]:
    """Three decisions and an email closed between the second and the third."""
    registered(accounts)
    [first, _] = emails(apply(accounts, failed("c1")))
    opened = accounts.open_email(ACC, first.key)
    assert opened.email is not None
    closed = close_email(opened.account, opened.email, "sent", NOW, operation_id="op-1")
    accounts.close_email(ACC, closed.record, closed.entry, opened.account.revision, NOW)
    apply(accounts, ChargeSucceeded("evt-s-c1", ACC, "s1", "c1", usd("10.00")))
    return accounts.timeline(ACC)


def test_the_timeline_is_in_commit_order_with_closed_emails_after_their_revision(accounts: AccountRepository) -> None:
    entries = history(accounts)
    kinds = [e["kind"] for e in entries]
    assert kinds[0] == "account_registered"
    sent = kinds.index("email_sent")
    assert "charge_failed" in kinds[:sent] and "charge_paid" in kinds[sent + 1:]
    assert all(set(e) == {"at", "kind", "subscriptionId", "detail"} for e in entries)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limits=st.lists(st.integers(1, 7), min_size=1, max_size=12))
def test_timeline_pages_in_either_order_give_every_entry_once(accounts: AccountRepository, limits: list[int]) -> None:
    if not accounts.exists(ACC):
        history(accounts)
    entries = accounts.timeline(ACC)
    revision = accounts.load(ACC).account.revision
    order: Order
    for order in ("oldest", "newest"):
        got: list[dict[str, object]] = []
        cursor = None
        for n in range(100):
            page = accounts.timeline_page(ACC, limit=limits[n % len(limits)], order=order, cursor=cursor,
                                          revision=revision)
            assert len(page.entries) <= limits[n % len(limits)]
            got += page.entries
            if page.next is None:
                break
            cursor = page.next
        assert got == (entries if order == "oldest" else entries[::-1])


# -- erasure -------------------------------------------------------------------------------------


def test_redaction_removes_every_address_from_mail_and_timeline(accounts: AccountRepository) -> None:
    history(accounts)
    [_, other] = [r for r in accounts.pending_outbox(ACC) if r.kind == "email"][:1] * 2
    opened = accounts.open_email(ACC, other.key)
    assert opened.email is not None
    closed = close_email(opened.account, opened.email, "failed", NOW, reason=f"bounced: {opened.email.recipient}")
    accounts.close_email(ACC, closed.record, closed.entry, opened.account.revision, NOW)
    operations = accounts.redact(ACC, set(CONTACTS), "[deleted]")
    assert sorted(operations) == sorted(["op-1", other.key])
    text = repr(accounts.timeline(ACC))
    assert not any(c in text for c in CONTACTS) and "[deleted]" in text
    for key in (other.key,):
        record = accounts.mail_record(ACC, key)
        assert record is not None and record["recipient"] == "[deleted]" and record["detail"] == "bounced: [deleted]"
    assert accounts.redact(ACC, set(CONTACTS), "[deleted]") == operations  # again: nothing left to change
    assert [n.charge_id for n in accounts.charge_notes(ACC)] == ["c1"]  # financial records stay


def test_a_crash_halfway_through_redaction_is_finished_by_running_it_again(accounts: AccountRepository) -> None:
    registered(accounts)
    snap = accounts.load(ACC)
    entries = tuple(TimelineEntry(NOW, "note", f"mail ap@contoso.example #{i}", None) for i in range(250))
    mail = tuple(MailRecord(f"k{i:03d}", "sent", "ap@contoso.example", "payment_failed", f"op-{i:03d}")
                 for i in range(120))  # more rows to rewrite than one batch holds
    accounts.commit(snap, Decision(replace(snap.account, revision=2), timeline=entries, mail=mail), now=NOW)
    accounts.faults = CrashBetweenTransactions()  # type: ignore[attr-defined]
    with pytest.raises(CrashInjected):
        accounts.redact(ACC, set(CONTACTS), "[deleted]")
    accounts.faults = Faults()  # type: ignore[attr-defined]
    accounts.redact(ACC, set(CONTACTS), "[deleted]")
    assert "contoso.example" not in repr(accounts.timeline(ACC))
    assert len(accounts.timeline(ACC)) == 252
    assert {accounts.mail_record(ACC, f"k{i:03d}")["recipient"] for i in range(120)} == {"[deleted]"}  # type: ignore[index]


def test_an_email_effect_round_trips_through_the_outbox(accounts: AccountRepository) -> None:
    registered(accounts)
    snap = accounts.load(ACC)
    email = SendEmail(ACC, "payment_reminder", "occ-1", "ap@contoso.example", ("s1",), {"n": 1, "names": ["a"]})
    accounts.commit(snap, Decision(replace(snap.account, revision=2), effects=(email,)), now=NOW)
    opened = accounts.open_email(ACC, email.key)
    assert opened.email == email and opened.email.facts == {"n": 1, "names": ["a"]}
