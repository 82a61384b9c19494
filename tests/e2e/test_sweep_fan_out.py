"""The dunning sweep on the running local stack: the timer queues a message per page of due
accounts, each expanded into one per account, and an account whose step keeps failing is retried
on its own and dead-lettered with its reason, while every other due account is handled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from azure.data.tables import TableClient, UpdateMode
from azure.storage.queue import QueueClient

from devstack.stack import LocalStack
from tests.e2e.conftest import all_dead_letters, new_account, wait_until


def states(api: str, account_id: str) -> list[str]:
    r = requests.get(f"{api}/accounts/{account_id}", timeout=10)
    return [s["state"] for s in r.json()["subscriptions"]] if r.status_code == 200 else []


def sweep_dead_letters(api: str, account_id: str) -> list[dict[str, Any]]:
    items = all_dead_letters(api)
    return [i for i in items if i["source"] == "sweep-work" and account_id in i["text"]]


def test_one_failing_account_is_dead_lettered_while_every_other_due_account_is_disabled(
        api: str, stack: LocalStack, send_event: Callable[..., str]) -> None:
    accounts = [new_account(api, token="tok_chargeDeclinedExpiredCard") for _ in range(6)]
    broken = accounts[2]
    table = TableClient.from_connection_string(stack.connection_string, "billing")
    try:
        requests.put(f"{api}/testing/clock", json={"now": "2028-01-03T09:00:00Z"}, timeout=10).raise_for_status()
        for acc in accounts:
            send_event("billing.charge.failed", {"accountId": acc, "subscriptionId": "s1", "chargeId": "c1",
                                                 "amount": "10.00", "currency": "USD", "reason": "card_expired"})
        for acc in accounts:
            wait_until(lambda acc=acc: states(api, acc) == ["past_due"], f"{acc} past due")
        # A row the code cannot read (as a bug or a bad migration could leave): every step on it fails.
        table.update_entity({"PartitionKey": broken, "RowKey": "account", "state_parts": 2}, mode=UpdateMode.MERGE)
        requests.put(f"{api}/testing/clock", json={"now": "2028-02-03T09:00:00Z"}, timeout=10).raise_for_status()
        r = requests.post(f"{stack.functions_url}/admin/functions/dunning_sweep", json={"input": ""}, timeout=10)
        assert r.status_code == 202
        for acc in accounts:
            if acc != broken:
                wait_until(lambda acc=acc: states(api, acc) == ["disabled"], f"{acc} disabled by its own work")
        dead = wait_until(lambda: sweep_dead_letters(api, broken), "the broken account's work dead-lettered", 90)
        assert len(dead) == 1
        assert f"dunning step for account {broken} failed" in dead[0]["reason"]
        assert "KeyError" in dead[0]["reason"] and "after 5 attempts" in dead[0]["reason"]
        log = (stack.log_dir / "functions.log").read_text()
        assert f"sweep work failed (attempt 1 of 5): dunning step for account {broken}" in log
        # Repaired, the account's work is replayed from the dead-letter list and takes effect.
        table.update_entity({"PartitionKey": broken, "RowKey": "account", "state_parts": 1}, mode=UpdateMode.MERGE)
        replay = requests.post(f"{api}/deadletters/{dead[0]['id']}/replay", timeout=10)
        assert replay.status_code == 200, replay.text
        wait_until(lambda: states(api, broken) == ["disabled"], "the replayed account disabled")
    finally:
        table.update_entity({"PartitionKey": broken, "RowKey": "account", "state_parts": 1}, mode=UpdateMode.MERGE)
        requests.delete(f"{api}/testing/clock", timeout=10)


def test_a_malformed_work_message_is_dead_lettered_at_once_with_its_reason(api: str, stack: LocalStack) -> None:
    text = '{"sweep": "gardening", "accountId": "acc-weeds", "partition": "due-1", "row": "r"}'
    QueueClient.from_connection_string(stack.connection_string, "sweep-work").send_message(text)
    dead = wait_until(lambda: sweep_dead_letters(api, "acc-weeds"), "the malformed work dead-lettered")
    assert dead[0]["text"] == text and "not a sweep-work message" in dead[0]["reason"]


def test_a_malformed_page_is_dead_lettered_at_once_with_its_reason(api: str, stack: LocalStack) -> None:
    text = '{"sweep": "dunning", "entries": [{"accountId": "acc-no-row", "partition": "due-1"}]}'
    QueueClient.from_connection_string(stack.connection_string, "sweep-pages").send_message(text)
    def pages() -> list[dict[str, Any]]:
        return [i for i in all_dead_letters(api) if i["source"] == "sweep-pages" and "acc-no-row" in i["text"]]

    dead = wait_until(pages, "the malformed page dead-lettered")
    assert dead[0]["text"] == text and "not a sweep-pages message" in dead[0]["reason"]
    # A replay goes back to the page queue (not to the payment events), where it is refused again.
    assert requests.post(f"{api}/deadletters/{dead[0]['id']}/replay", timeout=10).status_code == 200
    wait_until(lambda: len(pages()) == 2, "the replayed page dead-lettered again from sweep-pages")
