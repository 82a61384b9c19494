"""The sweeps: three timers that queue one `sweep-pages` message per page of due accounts, a queue
trigger that expands each page into one `sweep-work` message per account, and the queue trigger
that does each account's step (contract §3, §5). `POST /admin/functions/{name}` with
`{"input": ""}` starts a sweep; its effects follow as the work queue drains."""

from __future__ import annotations

import logging

import azure.functions as func

from shared import telemetry
from shared.bootstrap import services
from shared.log_context import log_context
from shared.services.sweep_work import (
    MAX_ATTEMPTS,
    MalformedWork,
    SweepName,
    SweepPage,
    SweepWork,
    dead_letter_work,
    expand,
    fan_out,
    run_work,
)

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the SDK leaves __init__ unannotated
log = logging.getLogger(__name__)


def _start(sweep: SweepName) -> None:
    report = fan_out(services().uow, sweep)
    log.info("%s sweep: queued %d accounts in %.2f s%s", sweep, report.queued, report.seconds,
             "" if report.finished else " (time budget spent; the next run queues the rest)")


@bp.function_name("dunning_sweep")
@bp.timer_trigger(arg_name="timer", schedule="0 */5 * * * *")
@telemetry.timer_function
def dunning_sweep(timer: func.TimerRequest) -> None:
    _start("dunning")


@bp.function_name("reconciliation_sweep")
@bp.timer_trigger(arg_name="timer", schedule="0 7-59/15 * * * *")
@telemetry.timer_function
def reconciliation_sweep(timer: func.TimerRequest) -> None:
    _start("reconciliation")


@bp.function_name("retention_sweep")
@bp.timer_trigger(arg_name="timer", schedule="0 30 * * * *")
@telemetry.timer_function
def retention_sweep(timer: func.TimerRequest) -> None:
    _start("retention")


@bp.function_name("sweep_pages")
@bp.queue_trigger(arg_name="msg", queue_name="sweep-pages", connection="AzureWebJobsStorage")
@telemetry.queue_function("sweep-pages")
def sweep_pages(msg: func.QueueMessage, context: func.Context) -> None:
    """One page of due accounts, queued as one `sweep-work` message each. A failed send raises so
    the host retries the page; the last attempt dead-letters it (its accounts come back to the
    timer when their claim runs out)."""
    svc = services()
    body = msg.get_body()
    try:
        page = SweepPage.from_message(body.decode("utf-8", "replace"))
    except MalformedWork as exc:
        dead_letter_work(svc.uow, None, body, str(exc), msg.id, source="sweep-pages")
        log.warning("dead-lettered sweep-pages message %s: %s", msg.id, exc)
        return
    attempt = msg.dequeue_count or 1
    with log_context(invocation_id=context.invocation_id):
        try:
            queued = expand(svc.uow, page)
        except Exception as exc:  # storage refused even the retry page: the whole page is tried again
            reason = f"{page.sweep} page of {len(page.entries)} accounts not queued: {type(exc).__name__}: {exc}"
            log.warning("sweep page failed (attempt %d of %d): %s", attempt, MAX_ATTEMPTS, reason,
                        extra={"counter": "sweep_page_failed", "sweep": page.sweep})
            if attempt < MAX_ATTEMPTS:
                raise
            dead_letter_work(svc.uow, None, body, f"{reason} (after {attempt} attempts)", msg.id, source="sweep-pages")
            return
        log.info("%s sweep: queued %d of %d accounts from a page", page.sweep, queued, len(page.entries))


@bp.function_name("sweep_pages_poison")
@bp.queue_trigger(arg_name="msg", queue_name="sweep-pages-poison", connection="AzureWebJobsStorage")
@telemetry.queue_function("sweep-pages-poison")
def sweep_pages_poison(msg: func.QueueMessage) -> None:
    """A page whose process died on every attempt: listed, its accounts left to a later sweep."""
    dead_letter_work(services().uow, None, msg.get_body(),
                     "processing failed repeatedly (moved to sweep-pages-poison after maxDequeueCount attempts)",
                     msg.id, source="sweep-pages-poison")


@bp.function_name("sweep_work")
@bp.queue_trigger(arg_name="msg", queue_name="sweep-work", connection="AzureWebJobsStorage")
@telemetry.queue_function("sweep-work", new_trace=True)
def sweep_work(msg: func.QueueMessage, context: func.Context) -> None:
    """One account's step. A failure raises so the host retries this message alone; the last
    attempt dead-letters it with the reason instead. No account waits for another."""
    svc = services()
    body = msg.get_body()
    try:
        work = SweepWork.from_message(body.decode("utf-8", "replace"))
    except MalformedWork as exc:
        dead_letter_work(svc.uow, None, body, str(exc), msg.id)
        log.warning("dead-lettered sweep-work message %s: %s", msg.id, exc)
        return
    attempt = msg.dequeue_count or 1
    with log_context(invocation_id=context.invocation_id, account_id=work.entry.account_id):
        try:
            done = run_work(svc.uow, svc.gateway, svc.mail_index, work, retried=attempt > 1)
        except Exception as exc:  # any failure of one account's step: counted, retried, then dead-lettered
            reason = f"{work.sweep} step for account {work.entry.account_id} failed: {type(exc).__name__}: {exc}"
            log.warning("sweep work failed (attempt %d of %d): %s", attempt, MAX_ATTEMPTS, reason,
                        extra={"counter": "sweep_work_failed", "sweep": work.sweep})
            if attempt < MAX_ATTEMPTS:
                raise
            dead_letter_work(svc.uow, work, body, f"{reason} (after {attempt} attempts)", msg.id)
            return
        log.info("%s sweep: account %s %s", work.sweep, work.entry.account_id, done.outcome)


@bp.function_name("sweep_work_poison")
@bp.queue_trigger(arg_name="msg", queue_name="sweep-work-poison", connection="AzureWebJobsStorage")
@telemetry.queue_function("sweep-work-poison")
def sweep_work_poison(msg: func.QueueMessage) -> None:
    """Work whose process died on every attempt (so no attempt could record why): listed anyway."""
    svc = services()
    body = msg.get_body()
    try:
        work: SweepWork | None = SweepWork.from_message(body.decode("utf-8", "replace"))
    except MalformedWork:
        work = None
    dead_letter_work(svc.uow, work, body,
                     "processing failed repeatedly (moved to sweep-work-poison after maxDequeueCount attempts)", msg.id)
