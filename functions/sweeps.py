"""Timer-triggered sweeps. Run one now with `POST /admin/functions/{name}` and `{"input": ""}`."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.bootstrap import services
from shared.retention import retention_sweep as run_retention_sweep
from shared.sweeps import dunning_sweep as run_dunning_sweep
from shared.sweeps import reconciliation_sweep as run_reconciliation_sweep

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the SDK leaves __init__ unannotated
log = logging.getLogger(__name__)


@bp.function_name("dunning_sweep")
@bp.timer_trigger(arg_name="timer", schedule="0 */5 * * * *")
def dunning_sweep(timer: func.TimerRequest) -> None:
    svc = services()
    report = run_dunning_sweep(svc.lifecycle, svc.indexes, svc.gateway, svc.leases)
    log.info("dunning sweep: %s", report)


@bp.function_name("reconciliation_sweep")
@bp.timer_trigger(arg_name="timer", schedule="0 7-59/15 * * * *")
def reconciliation_sweep(timer: func.TimerRequest) -> None:
    svc = services()
    report = run_reconciliation_sweep(svc.lifecycle, svc.indexes)
    log.info("reconciliation sweep: %s", report)


@bp.function_name("retention_sweep")
@bp.timer_trigger(arg_name="timer", schedule="0 30 * * * *")
def retention_sweep(timer: func.TimerRequest) -> None:
    svc = services()
    report = run_retention_sweep(svc.lifecycle, svc.store, svc.indexes, svc.mail_index)
    log.info("retention sweep: %s", report)
