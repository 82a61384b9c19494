"""The address index (table `billingindex`): which accounts list a mailbox as a billing contact,
so a delivery report, which names only the address, reaches every one of them in one read.

Partition `contact|{address}` (the address as `mailbox()` spells it, with the characters Table
keys forbid, `%` and quotes percent-encoded), one row per account, keyed by the account id, with
the revision of the decision that wrote it. Maintained from the outbox after the account's own
transaction: a row is written or dropped only by a newer revision than the one it holds, so a
late delivery of an older outbox row does not undo a newer one. A hint like the other indexes:
the report's handler re-reads each account and acts only if it still lists the address.
"""

from __future__ import annotations

import re

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.adapters.store import codec

_UNSAFE = re.compile(r"[%/\\#?'\"\x00-\x1f\x7f-\x9f]")  # Table keys forbid / \ # ? and controls
ATTEMPTS = 5


def contact_key(address: str) -> str:
    """`a/b#c@x.example` -> `contact|a%2Fb%23c@x.example`: reversible, and a valid PartitionKey for
    any address the product accepts (254 characters at most, so at most 770 after encoding)."""
    return "contact|" + _UNSAFE.sub(lambda m: f"%{ord(m.group()):02X}", address)


class ContactIndex:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    def accounts(self, address: str) -> list[str]:
        """Accounts listing `address` (as `mailbox()` spells it): one partition query."""
        rows = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": contact_key(address)},
                                         select=["RowKey"])
        return sorted(str(r["RowKey"]) for r in rows)

    def update(self, address: str, account_id: str, listed: bool, revision: int) -> None:
        """Add or drop one row, unless the row already holds a newer revision (a twin raced us:
        read again and decide again)."""
        pk = contact_key(address)
        for _ in range(ATTEMPTS):
            try:
                row = self.table.get_entity(pk, account_id)
            except ResourceNotFoundError:
                row = None
            if row is not None and codec.int_of(row["revision"]) >= revision:
                return
            entity = {"PartitionKey": pk, "RowKey": account_id, "address": address,
                      "revision": codec.int64(revision)}
            try:
                if row is None and listed:
                    self.table.create_entity(entity)
                elif row is not None and listed:
                    self.table.update_entity(entity, mode=UpdateMode.REPLACE, etag=row.metadata["etag"],
                                             match_condition=MatchConditions.IfNotModified)
                elif row is not None:
                    self.table.delete_entity(pk, account_id, etag=row.metadata["etag"],
                                             match_condition=MatchConditions.IfNotModified)
                return
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                continue  # a twin wrote or dropped the row since we read it
        raise ResourceModifiedError(f"address index row {pk}/{account_id} kept changing")
