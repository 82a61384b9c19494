"""Durable charges for the sandbox gateway, in Azure Table Storage (Azurite locally).

One entity per idempotency key. Storage arbitrates idempotency: a charge is decided first, then
inserted with create_entity, which fails with 409 if the key already has a charge; the loser
reads the winner's charge back and answers with it. No Python lock is involved, so two sandbox
processes on one storage account still never charge a key twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient, TableServiceClient

TABLE_NAME = "sandboxcharges"
PARTITION = "charge"


def row_key(idempotency_key: str) -> str:
    """RowKeys may not hold / \\ # ? or control characters, and keys are caller text: hash it."""
    return hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StoredCharge:
    id: str
    idempotency_key: str
    status: str  # "succeeded" | "declined"
    amount: str  # the contract's decimal string, e.g. "12.34"
    currency: str
    account_id: str
    description: str
    decline_code: str | None
    created_at: str  # ISO 8601 UTC, microseconds, "Z"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "idempotencyKey": self.idempotency_key,
            "status": self.status,
            "amount": self.amount,
            "currency": self.currency,
            "accountId": self.account_id,
            "description": self.description,
            "declineCode": self.decline_code,
            "createdAt": self.created_at,
        }

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": PARTITION,
            "RowKey": row_key(self.idempotency_key),
            "ChargeId": self.id,
            "IdempotencyKey": self.idempotency_key,
            "Status": self.status,
            "Amount": self.amount,
            "Currency": self.currency,
            "AccountId": self.account_id,
            "Description": self.description,
            "DeclineCode": self.decline_code or "",
            "CreatedAt": self.created_at,
        }

    @classmethod
    def from_entity(cls, e: Any) -> StoredCharge:
        return cls(
            id=str(e["ChargeId"]),
            idempotency_key=str(e["IdempotencyKey"]),
            status=str(e["Status"]),
            amount=str(e["Amount"]),
            currency=str(e["Currency"]),
            account_id=str(e["AccountId"]),
            description=str(e.get("Description", "")),
            decline_code=str(e.get("DeclineCode") or "") or None,
            created_at=str(e["CreatedAt"]),
        )


def iso_utc(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


class ChargeStore:
    def __init__(self, connection_string: str, table_name: str = TABLE_NAME) -> None:
        # One client shared by the request threads, with a pool large enough for a burst of them.
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        transport = RequestsTransport(session=session, session_owner=False)
        service = TableServiceClient.from_connection_string(connection_string, transport=transport)
        service.create_table_if_not_exists(table_name)
        self._session = session
        self._table: TableClient = TableClient.from_connection_string(
            connection_string, table_name, transport=transport
        )

    def insert_if_absent(self, charge: StoredCharge) -> tuple[StoredCharge, bool]:
        """Store `charge` unless its key already has one. Returns (the stored charge, inserted?)."""
        try:
            self._table.create_entity(charge.to_entity())
            return charge, True
        except ResourceExistsError:
            existing = self.get(charge.idempotency_key)
            if existing is None:  # pragma: no cover - entities are never deleted
                raise
            return existing, False

    def get(self, idempotency_key: str) -> StoredCharge | None:
        try:
            entity = self._table.get_entity(PARTITION, row_key(idempotency_key))
        except ResourceNotFoundError:
            return None
        return StoredCharge.from_entity(entity)

    def list(self, account_id: str | None = None) -> list[StoredCharge]:
        """Every charge (or one account's), oldest first."""
        if account_id is None:
            entities = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": PARTITION})
        else:
            entities = self._table.query_entities(
                "PartitionKey eq @pk and AccountId eq @acc",
                parameters={"pk": PARTITION, "acc": account_id},
            )
        charges = [StoredCharge.from_entity(e) for e in entities]
        charges.sort(key=lambda c: (c.created_at, c.id))
        return charges

    def close(self) -> None:
        self._table.close()
        self._session.close()
