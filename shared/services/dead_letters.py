"""What a dead letter keeps of the message it stands for: the one place its text is prepared.

A dead letter is read by a person who must fix the producer, and replayed onto the queue as it
was, so it keeps the whole text however large (`shared/adapters/store/system.DeadLetters` splits it over
as many properties and rows as it needs). Redaction of what must never be stored (card numbers,
issue 15) belongs here, so every way into the dead-letter list passes through it.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.inbound.card_data import mask_card_numbers, redact_message


def dead_letter_text(body: bytes | str) -> str:
    """The text to keep for a queue message body. The queue carries text (host.json
    `messageEncoding: none`), so its bytes are UTF-8; anything else is kept with U+FFFD in place
    of the bytes that are not."""
    return body if isinstance(body, str) else body.decode("utf-8", "replace")


@dataclass(frozen=True)
class DeadLetterContent:
    """What a dead letter stores: the text and the reason, with card data redacted."""

    text: str
    reason: str
    redacted: bool


def dead_letter_content(body: bytes | str, reason: str) -> DeadLetterContent:
    """The message's text and the reason, as they may be stored: a card number is kept masked to
    its last four digits and a security code not at all (`shared.inbound.card_data.redact_message`), and
    the reason then says where it was found. Anything else is kept exactly."""
    redaction = redact_message(dead_letter_text(body))
    reason = mask_card_numbers(reason)
    if redaction.redacted and redaction.note not in reason:
        reason = f"{reason}; {redaction.note}"
    return DeadLetterContent(redaction.text, reason, redaction.redacted)
