"""What Table Storage can hold, enforced at the one door every table request of the product goes
through: `StorableTableClient` (built by `clients.ensure_table`), plus `storable_entity` for the
writes a decision packs into continuation rows, which that door sees only compressed.

Text Table Storage cannot hold:
- a lone surrogate (a code point U+D800..U+DFFF that is not part of a pair): a request carrying
  one cannot even be encoded (its URL or filter is UTF-8: `UnicodeEncodeError` before anything is
  sent), and Azure keeps strings as well-formed UTF-16;
- in a key (PartitionKey, RowKey), also `/`, `\\`, `#`, `?` and the control characters U+0000-U+001F
  and U+007F-U+009F.
Other characters (controls, U+FFFE, U+FFFF) are stored in property values as they are.

What happens to such text, so no request ever fails on it:
- a written property value (free text, and the JSON documents kept in string properties): each
  lone surrogate becomes U+FFFD, the replacement character; a high surrogate followed by a low one
  becomes the character the pair spells, as UTF-16 reads it. Nothing else changes.
- a written key is never changed (a key is an identity: two rows must not merge): one Table
  Storage cannot hold raises `UnstorableKey` before anything is sent. The product's keys are built
  from validated ids, so this is a bug, never input.
- a point read by such a key finds nothing (`ResourceNotFoundError`), and a delete by it deletes
  nothing (as the SDK's delete of a missing row), without a request.
- a query whose filter or parameter values hold a lone surrogate answers no rows, without a
  request: no stored string can equal it. This holds for the product's filters, which are
  conjunctions over the row keys whose range bounds are its own prefixes or rows named by a
  cursor it parsed; never put a caller's text under `or`, `not` or `ne`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar, cast

from azure.core.exceptions import ResourceNotFoundError
from azure.core.paging import ItemPaged
from azure.data.tables import EdmType, EntityProperty, TableClient, TableEntity, UpdateMode

from shared.adapters.store.transactions import SerialBatchTableClient

_SURROGATE = re.compile("[\ud800-\udfff]")
_KEY_REFUSED = re.compile("[/\\\\#?\x00-\x1f\x7f-\x9f\ud800-\udfff]")
KEYS = ("PartitionKey", "RowKey")

E = TypeVar("E", bound=Mapping[str, Any])


class UnstorableKey(ValueError):
    """A key written with a character Table Storage refuses in keys."""


def is_storable(text: str) -> bool:
    """True if Table Storage can hold `text` in a property value as it is (no surrogate code point)."""
    return _SURROGATE.search(text) is None


def is_storable_key(key: str) -> bool:
    """True if `key` can be a PartitionKey or RowKey: storable, without `/ \\ # ?` or controls."""
    return _KEY_REFUSED.search(key) is None


def storable_text(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD (`"a\\ud800b"` -> `"a\\ufffdb"`), a split
    pair joined (`"\\ud83d\\ude00"` -> `"\\U0001f600"`); `text` itself when it holds neither."""
    if is_storable(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def storable_value(value: Any) -> Any:
    """A property value as it can be written: text (bare or an `Edm.String` property) made storable,
    anything else as it is."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, EntityProperty) and isinstance(value.value, str) and value.edm_type == EdmType.STRING:
        return EntityProperty(storable_text(value.value), value.edm_type)
    return value


def storable_entity(entity: E) -> E:
    """`entity` with every text value made storable (the same object when nothing changes, so a
    `TableEntity`'s metadata stays); `UnstorableKey` if a key cannot be held."""
    for name in KEYS:
        key = entity.get(name)
        if isinstance(key, str) and not is_storable_key(key):
            raise UnstorableKey(f"{name} {key[:80]!r} holds a character Table Storage refuses in keys")
    changed = {k: new for k, v in entity.items() if (new := storable_value(v)) is not v}
    if not changed:
        return entity
    clean = dict(entity) | changed
    if isinstance(entity, TableEntity):
        copy = TableEntity(clean)
        copy._metadata = entity.metadata  # the SDK reads an etag from it when none is passed
        return cast(E, copy)
    return cast(E, clean)


def _storable_operation(operation: tuple[Any, ...]) -> tuple[Any, ...]:
    """A transaction operation `(kind, entity[, options])` with its entity made storable."""
    kind, entity, *rest = operation
    return (kind, storable_entity(entity), *rest)


def _nothing() -> ItemPaged[TableEntity]:
    """A query result without rows, that sends nothing (`by_page()` gives one empty page)."""
    return ItemPaged(lambda _token: None, lambda _response: (None, iter(())))


class StorableTableClient(SerialBatchTableClient):
    """A `TableClient` whose every write, point read, delete and query follows the module's rules."""

    @classmethod
    def wrapping(cls, client: TableClient) -> StorableTableClient:
        """`client` itself, its requests from now on going through these rules (the subclass adds
        behaviour only, no state)."""
        client.__class__ = cls
        return cast(StorableTableClient, client)

    def create_entity(self, entity: Any, **kwargs: Any) -> dict[str, Any]:
        return super().create_entity(storable_entity(entity), **kwargs)

    def upsert_entity(self, entity: Any, mode: UpdateMode = UpdateMode.MERGE, **kwargs: Any) -> dict[str, Any]:
        return super().upsert_entity(storable_entity(entity), mode, **kwargs)

    def update_entity(self, entity: Any, mode: UpdateMode = UpdateMode.MERGE, **kwargs: Any) -> dict[str, Any]:
        return super().update_entity(storable_entity(entity), mode, **kwargs)

    def submit_transaction(self, operations: Iterable[Any], **kwargs: Any) -> list[Mapping[str, Any]]:
        return super().submit_transaction([_storable_operation(tuple(op)) for op in operations], **kwargs)

    def get_entity(self, partition_key: str, row_key: str, **kwargs: Any) -> TableEntity:
        if not (is_storable_key(partition_key) and is_storable_key(row_key)):
            raise ResourceNotFoundError("no row can have a key Table Storage refuses")
        return super().get_entity(partition_key, row_key, **kwargs)

    def delete_entity(self, *args: Any, **kwargs: Any) -> None:
        keys = _keys_of(args, kwargs)
        if not all(is_storable_key(k) for k in keys if isinstance(k, str)):
            return  # no such row: deleting it is done, as for any missing row
        super().delete_entity(*args, **kwargs)

    def query_entities(self, query_filter: str, **kwargs: Any) -> ItemPaged[TableEntity]:
        parameters = kwargs.get("parameters") or {}
        texts = [query_filter, *(v for v in parameters.values() if isinstance(v, str))]
        if not all(is_storable(t) for t in texts):
            return _nothing()
        return super().query_entities(query_filter, **kwargs)


def _keys_of(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[Any]:
    """The (PartitionKey, RowKey) of a `delete_entity` call, however it names them."""
    entity = kwargs.get("entity", args[0] if args and isinstance(args[0], Mapping) else None)
    if isinstance(entity, Mapping):
        return [entity.get(k) for k in KEYS]
    named = [kwargs.get("partition_key"), kwargs.get("row_key")]
    return [*args[:2], *named[len(args[:2]):]]
