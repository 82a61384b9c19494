"""Sending billing emails from the outbox (queue `email-outbox`), and hearing back from ACS.

Emails leave through their own queue so a slow or throttled send never holds up payment events.
A throttled send (or one the shared quota budget says must wait), and one the email service failed
for any other passing reason, is put back on the queue as a new message, visible when it may go
(after a back-off for the latter), and the invocation ends at once (`shared/services/email.py`):
the email stays due until `EMAIL_GIVE_UP_AFTER_HOURS`. Only storage trouble fails the invocation,
and the host retries the message.
"""

from __future__ import annotations

import logging
from datetime import datetime

import azure.functions as func

from shared import telemetry
from shared.bootstrap import services
from shared.log_context import log_context
from shared.services.delivery_reports import ReportIgnored, apply_report, read_report
from shared.services.dispatch import EmailHandoff, MalformedHandoff, read_email_handoff
from shared.services.email import give_up_email, send_email

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the SDK leaves __init__ unannotated
log = logging.getLogger(__name__)
DELIVERY_REPORT = "Microsoft.Communication.EmailDeliveryReportReceived"


@bp.function_name("email_outbox")
@bp.queue_trigger(arg_name="msg", queue_name="email-outbox", connection="AzureWebJobsStorage")
@telemetry.queue_function("email-outbox")
def email_outbox(msg: func.QueueMessage, context: func.Context) -> None:
    svc = services()
    if svc.mailer is None:
        raise RuntimeError("no mailer configured: set ACS_EMAIL_ENDPOINT or ACS_EMAIL_CONNECTION_STRING")
    handoff = _handoff_or_dead_letter(msg, "email-outbox")
    if handoff is None:
        return
    with log_context(invocation_id=context.invocation_id, account_id=handoff.account_id):
        outcome = send_email(svc.uow, svc.mailer, svc.settings, handoff.account_id, handoff.key,
                             budget=svc.email_budget, slot=handoff.slot)
        log.info("email %s for account %s: %s", handoff.key, handoff.account_id, outcome)


@bp.function_name("email_outbox_poison")
@bp.queue_trigger(arg_name="msg", queue_name="email-outbox-poison", connection="AzureWebJobsStorage")
@telemetry.queue_function("email-outbox-poison")
def email_outbox_poison(msg: func.QueueMessage) -> None:
    """An email that kept failing: recorded on the account and shown as an alert, never dropped."""
    svc = services()
    handoff = _handoff_or_dead_letter(msg, "email-outbox-poison")
    if handoff is None:
        return
    give_up_email(svc.uow, handoff.account_id, handoff.key,
                  "the hand-off failed on every one of the host's tries (storage unavailable, or the process died)")


def _handoff_or_dead_letter(msg: func.QueueMessage, source: str) -> EmailHandoff | None:
    """The hand-off, or None once a malformed message is dead-lettered with its reason (retrying
    it could only fail the same way, forever)."""
    try:
        return read_email_handoff(msg.get_body())
    except MalformedHandoff as exc:
        svc = services()
        svc.uow.dead_letters.add(source=source, reason=exc.reason, body=msg.get_body(),
                            received_at=svc.uow.clock.now(), message_id=msg.id)
        log.warning("dead-lettered %s message %s: %s", source, msg.id, exc.reason)
        return None


@bp.function_name("email_delivery_reports")
@bp.event_grid_trigger(arg_name="event")
@telemetry.event_grid_function
def email_delivery_reports(event: func.EventGridEvent) -> None:
    """Every report is applied or ignored with a log line; only a storage failure raises (Event
    Grid then redelivers), never the report's content. The subscription may use the Event Grid
    schema or CloudEvents 1.0 (the worker then passes a `func.CloudEvent`): both are read."""
    event_type, event_time = _type_and_time(event)
    if event_type != DELIVERY_REPORT:
        log.info("ignored Event Grid event %s of type %s", event.id, event_type)
        return
    try:
        report = read_report(event.get_json(), event_time)
    except ReportIgnored as exc:
        log.warning("ignored delivery report in Event Grid event %s: %s", event.id, exc)
        return
    svc = services()
    accounts = apply_report(svc.uow, report)
    log.info("delivery report %s for message %s: %s on %d account(s)", report.status, report.message_id,
             "applied" if accounts else "no account lists the address, ignored", len(accounts))


def _type_and_time(event: func.EventGridEvent | func.CloudEvent) -> tuple[str, datetime | None]:
    if isinstance(event, func.CloudEvent):
        return event.type, event.time
    return event.event_type, event.event_time
