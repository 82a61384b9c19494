"""Timer triggers: NCRONTAB schedules (seconds first, UTC) or TimeSpan intervals, as the host.

As in the real host a timer never overlaps itself - the next occurrence is computed after the
invocation ends, so occurrences missed while it ran are skipped - and only the instance holding
the timer's lock fires it (see `leases.py`), so several workers on one storage account fire it
once. `runOnStartup` fires once when this instance first gets the lock. `past_due` is true when
the invocation starts more than a second after its scheduled time (a busy or paused host).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Protocol

from azure.functions.timer import TimerRequest
from cronsim import CronSim, CronSimError

from .aio import pause
from .invoker import Invoker
from .leases import Lease
from .loader import FunctionSpec
from .settings import is_timespan, parse_timespan

log = logging.getLogger("devstack.host")

PAST_DUE_AFTER = timedelta(seconds=1)


class Schedule(Protocol):
    def next_after(self, moment: datetime) -> datetime: ...


class CronSchedule:
    """NCRONTAB: `{second} {minute} {hour} {day} {month} {day-of-week}`, evaluated in UTC."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        try:
            CronSim(expression, datetime.now(UTC))
        except CronSimError as exc:
            raise ValueError(f"invalid NCRONTAB schedule {expression!r}: {exc}") from exc

    def next_after(self, moment: datetime) -> datetime:
        return next(CronSim(self.expression, moment.astimezone(UTC)))


class IntervalSchedule:
    """A TimeSpan schedule (`00:00:30`): every interval, counted from the previous occurrence."""

    def __init__(self, expression: str) -> None:
        self.interval = timedelta(seconds=parse_timespan(expression))
        if self.interval <= timedelta(0):
            raise ValueError(f"a TimeSpan schedule must be positive, got {expression!r}")

    def next_after(self, moment: datetime) -> datetime:
        return moment + self.interval


def parse_schedule(expression: str) -> Schedule:
    """ValueError for a schedule the host would refuse; raised at startup."""
    if is_timespan(expression):
        return IntervalSchedule(expression)
    return CronSchedule(expression)


def timer_request(past_due: bool, last: datetime | None = None, next_due: datetime | None = None) -> TimerRequest:
    now = datetime.now(UTC)
    status = {
        "Last": (last or now).isoformat(),
        "Next": (next_due or now).isoformat(),
        "LastUpdated": now.isoformat(),
    }
    return TimerRequest(past_due=past_due, schedule_status=status, schedule={"AdjustForDST": True})


class TimerListener:
    """Fires one timer function on its schedule while this instance holds its lease."""

    def __init__(self, spec: FunctionSpec, invoker: Invoker, lease: Lease, stopping: asyncio.Event) -> None:
        self.spec = spec
        self.schedule = parse_schedule(str(spec.binding["schedule"]))
        self._invoker = invoker
        self._lease = lease
        self._stopping = stopping

    async def _sleep_until(self, due: datetime) -> bool:
        """Sleep until `due`; False if the host is stopping instead."""
        return await pause(self._stopping, (due - datetime.now(UTC)).total_seconds())

    async def _fire(self, due: datetime, past_due: bool) -> None:
        value = timer_request(past_due, last=due, next_due=self.schedule.next_after(due))
        reason = f"(timer, scheduled {due.isoformat(timespec='seconds')}{', past due' if past_due else ''})"
        await self._invoker.invoke(self.spec, value, reason)

    async def run(self) -> None:
        keeper = asyncio.create_task(self._lease.keep(self._stopping))
        try:
            await self._loop()
        finally:
            await keeper

    async def _loop(self) -> None:
        started = False
        last_due = datetime.now(UTC)
        while await self._lease.wait_held(self._stopping):
            if not started and self.spec.binding.get("runOnStartup"):
                await self._fire(datetime.now(UTC), past_due=False)
            started = True
            # Never before the previous occurrence: an early wake-up must not fire it twice.
            due = self.schedule.next_after(max(datetime.now(UTC), last_due))
            if not await self._sleep_until(due):
                return
            last_due = due
            if not self._lease.held:
                continue  # another instance took the timer over while we slept
            await self._fire(due, past_due=datetime.now(UTC) - due > PAST_DUE_AFTER)
