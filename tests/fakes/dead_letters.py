"""Dead letters in memory: the twin of `shared.adapters.store.system.DeadLetters`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from shared.adapters.store.system import DeadLetterCursor, DeadLetterPage
from shared.services.dead_letters import dead_letter_content


class InMemoryDeadLetters:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def add(self, *, source: str, reason: str, body: bytes | str, received_at: datetime,
            message_id: str | None) -> None:
        key = f"msg-{source}-{message_id}" if message_id else \
            f"{received_at.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex}"
        content = dead_letter_content(body, reason)
        self.items[key] = {"id": key, "source": source, "reason": content.reason[:4000],
                           "receivedAt": received_at.isoformat(), "replayedAt": None,
                           "redacted": content.redacted, "text": content.text}

    def page(self, limit: int, after: DeadLetterCursor | None) -> DeadLetterPage:
        heads = sorted((i["receivedAt"], k) for k, i in self.items.items())
        rest = [h for h in heads if after is None or h > (after.received_at, after.item_id)]
        items = [dict(self.items[k]) for _, k in rest[:limit]]
        return DeadLetterPage(items, DeadLetterCursor(*rest[limit - 1]) if len(rest) > limit else None)

    def get(self, item_id: str) -> dict[str, Any] | None:
        item = self.items.get(item_id)
        return dict(item) if item is not None else None

    def mark_replayed(self, item_id: str, at: datetime) -> None:
        if item_id in self.items:
            self.items[item_id]["replayedAt"] = at.isoformat()
