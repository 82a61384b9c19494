"""Card data in a `payment-events` message: refused where the product reads it, harmless where it
does not (issue 15, and its follow-up on false positives).

A card number (or a `cvv`-like field) in an attribute the product reads (`READ_ATTRIBUTES`: `id`,
`type`, `source`, `time`, `subject`, ...) or in a `data` field contract §1 defines for the event's
type makes the message invalid: it is dead-lettered, its text kept only redacted
(`shared.services.dead_letters`). In an attribute the product ignores (an unknown CloudEvents extension,
an extra `data` field, `traceparent`, `tracestate`), what looks like one (an epoch in milliseconds
passing Luhn, a digit-only span id) does not make a valid event invalid: the event is applied from
the fields it reads, and nothing of the ignored attributes is stored or logged.
"""

from __future__ import annotations

from typing import Any

from shared.inbound.card_data import JsonPairs, Redaction, card_findings, read_json_as_written
from shared.inbound.cloudevents import READ_ATTRIBUTES, Rejected, data_fields


def read_part(tree: JsonPairs) -> JsonPairs:
    """The attributes of a message the product reads, duplicates kept: the envelope's and the
    `data` fields defined for its type (every type's when the type is not one)."""
    types = [v for k, v in tree if k == "type"]
    fields = data_fields(types[0] if len(types) == 1 else None)
    read = JsonPairs()
    for key, value in tree:
        if key == "data" and isinstance(value, JsonPairs):
            read.append((key, JsonPairs((k, v) for k, v in value if k in fields)))
        elif key in READ_ATTRIBUTES or key == "data":
            read.append((key, value))
    return read


def refuse_card_data_in_read_fields(text: str) -> None:
    """Raise `Rejected` (saying where, never what) when a field the product reads carries card
    data. Text that is not a JSON object passes here: it is no event, and is refused as such."""
    try:
        tree: Any = read_json_as_written(text)
    except (ValueError, RecursionError):
        return
    if not isinstance(tree, JsonPairs):
        return
    findings = card_findings(read_part(tree))
    if findings:
        note = Redaction(text, findings).note
        raise Rejected(f"the message carries card data, which is never accepted: {note}")
