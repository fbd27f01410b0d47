"""Timer trigger functions, fired on their NCRONTAB schedule.

NCRONTAB has six fields, seconds first (`0 */5 * * * *`); `%SETTING%` in the schedule resolves from the app
settings, as on the real host. Times are UTC (the real host's default; `WEBSITE_TIME_ZONE` is not honoured here).

`runOnStartup` invokes the function once when the host starts. `past_due` is true when an invocation is late
by at least one whole period: the scheduler woke after the *next* occurrence had already come (the process was
suspended, or the machine overloaded), or, at startup, the schedule status recorded by the previous run says an
occurrence was missed while the host was down (the real host's `useMonitor`). Occurrences missed while a long
invocation ran are skipped, as on the real host. The schedule status lives in a `ScheduleStatusStore`: in memory
by default, so only a host restarted within one process (the tests) sees the previous run's status.

With a retry policy (`@app.retry`, `localhost.retry`), a failed invocation is retried with the same `past_due`, up to
`max_retry_count` times with the policy's delays, before the next occurrence is scheduled; occurrences that pass in
the meantime are skipped, as for a long invocation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from azure.functions.timer import TimerRequest
from croniter import croniter

from core.clock import Clock, utc_now
from core.models import format_timestamp
from localhost.app_settings import AppSettings, BindingConfigError
from localhost.invocation import FunctionInvoker
from localhost.listener_thread import ListenerThread
from localhost.retry import RetryPolicy, RetryWaitInterrupted, call_with_retries

log = logging.getLogger("localhost.timers")

# A stop-aware sleep: waits up to `seconds` and returns True when the listener should stop.
Sleep = Callable[[float], bool]


class NcrontabSchedule:
    def __init__(self, expression: str) -> None:
        if len(expression.split()) != 6 or not croniter.is_valid(expression, second_at_beginning=True):
            raise BindingConfigError(
                f"the schedule {expression!r} is not a six-field NCRONTAB expression "
                "({second} {minute} {hour} {day} {month} {day-of-week})"
            )
        self.expression = expression

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment`."""
        following: datetime = croniter(self.expression, moment, second_at_beginning=True).get_next(datetime)
        return following

    def __str__(self) -> str:
        return self.expression


@dataclass(frozen=True)
class ScheduleStatus:
    last: datetime
    next: datetime


class ScheduleStatusStore(Protocol):
    def get(self, function_name: str) -> ScheduleStatus | None: ...

    def put(self, function_name: str, status: ScheduleStatus) -> None: ...


class InMemoryScheduleStatusStore:
    def __init__(self) -> None:
        self._statuses: dict[str, ScheduleStatus] = {}
        self._lock = threading.Lock()

    def get(self, function_name: str) -> ScheduleStatus | None:
        with self._lock:
            return self._statuses.get(function_name)

    def put(self, function_name: str, status: ScheduleStatus) -> None:
        with self._lock:
            self._statuses[function_name] = status


@dataclass(frozen=True)
class TimerBinding:
    function_name: str
    schedule: NcrontabSchedule
    run_on_startup: bool
    use_monitor: bool

    @classmethod
    def from_raw(cls, function_name: str, raw: Mapping[str, Any], settings: AppSettings) -> TimerBinding:
        where = f"function {function_name}, binding {raw['name']}"
        expression = settings.resolve(str(raw.get("schedule", "")), where=where)
        try:
            schedule = NcrontabSchedule(expression)
        except BindingConfigError as error:
            raise BindingConfigError(f"{where}: {error}") from None
        return cls(
            function_name=function_name,
            schedule=schedule,
            run_on_startup=bool(raw.get("runOnStartup", False)),
            use_monitor=bool(raw.get("useMonitor", True)),
        )


class TimerListener:
    def __init__(
        self,
        binding: TimerBinding,
        invoker: FunctionInvoker,
        *,
        clock: Clock = utc_now,
        sleep: Sleep | None = None,
        status_store: ScheduleStatusStore | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.binding = binding
        self._invoker = invoker
        self._retry = retry
        self._clock = clock
        self._stop = threading.Event()
        self._sleep: Sleep = sleep or self._stop.wait
        self._status_store = status_store if status_store is not None else InMemoryScheduleStatusStore()
        self._thread = ListenerThread(f"timer-{binding.function_name}", self.run, self._stop)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    def run(self) -> None:
        """Fire the function on schedule until stopped. Runs on the caller's thread (tests drive it directly)."""
        schedule = self.binding.schedule
        now = self._clock()
        status = self._status_store.get(self.binding.function_name) if self.binding.use_monitor else None
        if status is not None and now > status.next:
            self._fire(past_due=True, scheduled=status.next)
        elif self.binding.run_on_startup:
            self._fire(past_due=False, scheduled=now)
        due = schedule.next_after(self._clock())
        while not self._stop.is_set():
            wait = (due - self._clock()).total_seconds()
            if wait > 0 and self._sleep(wait):
                return
            if self._stop.is_set():
                return
            now = self._clock()
            if now < due:
                continue  # woke early (clock skew): wait again for the rest
            self._fire(past_due=now >= schedule.next_after(due), scheduled=due)
            due = schedule.next_after(max(self._clock(), due))

    def _fire(self, *, past_due: bool, scheduled: datetime) -> None:
        name = self.binding.function_name
        if past_due:
            log.warning("Timer %s is past due: its occurrence at %s runs late", name, format_timestamp(scheduled))
        status = self._schedule_status_json()
        try:
            call_with_retries(
                self._invoker,
                lambda: TimerRequest(past_due=past_due, schedule_status=status, schedule={"AdjustForDST": True}),
                name=name,
                reason=f"Timer fired at {format_timestamp(self._clock())}",
                policy=self._retry,
                wait=self._sleep,
            )
        except RetryWaitInterrupted:
            log.info("Timer %s stopped while waiting to retry", name)
        except Exception:  # the next occurrence still fires, as on the real host
            log.exception("Timer function %s failed", name)
        finally:
            now = self._clock()
            next_due = self.binding.schedule.next_after(max(now, scheduled))
            self._status_store.put(name, ScheduleStatus(last=now, next=next_due))

    def _schedule_status_json(self) -> dict[str, str]:
        status = self._status_store.get(self.binding.function_name)
        if status is None:
            return {}
        return {
            "Last": format_timestamp(status.last),
            "Next": format_timestamp(status.next),
            "LastUpdated": format_timestamp(status.last),
        }


def describe_next(binding: TimerBinding, now: datetime, count: int = 3) -> list[datetime]:
    """The next `count` occurrences after `now` (for the startup banner)."""
    occurrences: list[datetime] = []
    moment = now
    for _ in range(count):
        moment = binding.schedule.next_after(moment)
        occurrences.append(moment)
    return occurrences
