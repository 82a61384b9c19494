"""Run a sweep as the deployed app does: the timer's fan-out onto the (real) page queue, each page
expanded onto the (real) work queue as `sweep_pages` does, then the work queue's messages, each
through the same per-account step the `sweep_work` function runs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from shared.bootstrap import Services
from shared.services.sweep_work import SweepName, SweepPage, SweepWork, WorkDone, expand, fan_out, run_work
from tests.integration.queues import queue


@dataclass
class Swept:
    queued: int
    done: list[WorkDone] = field(default_factory=list)

    @property
    def outcomes(self) -> Counter[str]:
        return Counter(d.outcome for d in self.done)

    @property
    def accounts(self) -> int:
        """Accounts whose step ran (stale hints excluded)."""
        return sum(1 for d in self.done if d.outcome != "stale")

    @property
    def paid(self) -> int:
        return sum(d.paid for d in self.done)

    @property
    def reconciled(self) -> list[str]:
        return [r for d in self.done for r in d.reconciled]


def expand_pages(svc: Services) -> int:
    """Expand every page on the page queue onto the work queue; returns the pages expanded."""
    pages = 0
    while messages := list(queue(svc, "sweep-pages").receive_messages(max_messages=32, visibility_timeout=60)):
        for m in messages:
            expand(svc.uow, SweepPage.from_message(m.content))
            queue(svc, "sweep-pages").delete_message(m)
            pages += 1
    return pages


def drain(svc: Services) -> list[WorkDone]:
    """Expand every page, then work every message on the sweep queue until it is empty."""
    expand_pages(svc)
    done: list[WorkDone] = []
    while messages := list(queue(svc, "sweep-work").receive_messages(max_messages=32, visibility_timeout=60)):
        for m in messages:
            done.append(run_work(svc.uow, svc.gateway, svc.mail_index, SweepWork.from_message(m.content)))
            queue(svc, "sweep-work").delete_message(m)
    return done


def sweep(svc: Services, name: SweepName) -> Swept:
    report = fan_out(svc.uow, name)
    assert report.finished
    return Swept(report.queued, drain(svc))
