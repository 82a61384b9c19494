"""Queue triggers on `payment-events` and its poison queue (contract §1)."""

from __future__ import annotations

import logging

import azure.functions as func

from shared import telemetry
from shared.bootstrap import services
from shared.inbound.cloudevents import Rejected, parse_message
from shared.inbound.event_card_data import refuse_card_data_in_read_fields
from shared.log_context import log_context
from shared.services.dead_letters import dead_letter_text
from shared.services.unit_of_work import Refused, apply_event

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the SDK leaves __init__ unannotated
log = logging.getLogger(__name__)


@bp.function_name("payment_events")
@bp.queue_trigger(arg_name="msg", queue_name="payment-events", connection="AzureWebJobsStorage")
@telemetry.queue_function("payment-events")
def payment_events(msg: func.QueueMessage, context: func.Context) -> None:
    """A malformed message (card data in a field the product reads included), and an event the
    lifecycle refuses (past an account's limits, contract §1), are dead-lettered at once, the text
    kept redacted; a passing failure raises, so the host retries."""
    svc = services()
    body = msg.get_body()
    try:
        # As strict as the HTTP API where the product reads; what it ignores is neither kept nor logged.
        refuse_card_data_in_read_fields(dead_letter_text(body))
        event, event_type = parse_message(body)
    except Rejected as exc:
        _dead_letter(msg, body, exc)
        return
    with log_context(invocation_id=context.invocation_id, account_id=event.account_id, event_id=event.event_id,
                     subscription_id=getattr(event, "subscription_id", None), event_type=event_type):
        try:
            applied = apply_event(svc.uow, event, event_type, redelivered=(msg.dequeue_count or 1) > 1)
        except Refused as exc:
            _dead_letter(msg, body, exc)
            return
        telemetry.count_event(event_type, "duplicate" if applied.duplicate else "applied")
        log.info("event %s (%s) for account %s %s", event.event_id, event_type, event.account_id,
                 "was a duplicate" if applied.duplicate else "applied")


def _dead_letter(msg: func.QueueMessage, body: bytes, exc: Rejected) -> None:
    """Keep the message in the dead-letter list with the reason; it is not retried."""
    svc = services()
    svc.uow.dead_letters.add(source="payment-events", reason=exc.reason, body=body,
                        received_at=svc.uow.clock.now(), message_id=msg.id)
    telemetry.count_event(telemetry.message_type(body), "dead_lettered")
    log.warning("dead-lettered message %s: %s", msg.id, exc.reason)


@bp.function_name("payment_events_poison")
@bp.queue_trigger(arg_name="msg", queue_name="payment-events-poison", connection="AzureWebJobsStorage")
@telemetry.queue_function("payment-events-poison")
def payment_events_poison(msg: func.QueueMessage) -> None:
    """Messages that failed `maxDequeueCount` times: kept in the dead-letter list, never dropped."""
    svc = services()
    svc.uow.dead_letters.add(
        source="payment-events-poison",
        reason="processing failed repeatedly (moved to payment-events-poison after maxDequeueCount attempts)",
        body=msg.get_body(), received_at=svc.uow.clock.now(), message_id=msg.id,
    )
    telemetry.count_event(telemetry.message_type(msg.get_body()), "dead_lettered")
