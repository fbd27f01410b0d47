"""Timer trigger functions: NCRONTAB schedules with seconds, %SETTING% schedules, runOnStartup, past_due.

Most tests drive `TimerListener.run()` on the test thread with a fake clock whose sleep advances time, so no
test waits for a schedule; one test runs a real timer thread through the host.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest

from localhost.app_settings import AppSettings, BindingConfigError
from localhost.indexing import index_functions
from localhost.invocation import FunctionInvoker
from localhost.probe_app import TIMER
from localhost.timers import InMemoryScheduleStatusStore, NcrontabSchedule, ScheduleStatus, TimerBinding, TimerListener
from tests.localhost.conftest import StartHost, probe_functions

START = datetime(2026, 11, 24, 12, 0, 3, tzinfo=UTC)
EVERY_TEN_SECONDS = "*/10 * * * * *"


@dataclass
class FakeTime:
    """A clock that only moves when the listener sleeps (or a function works), and stops after `limit` firings."""

    now: datetime = START
    limit: int = 3
    oversleep: list[float] = field(default_factory=list)  # extra seconds added to the next sleeps, one each
    work_seconds: float = 0.0  # how long each invocation takes
    fail: bool = False
    fired: list[tuple[datetime, bool]] = field(default_factory=list)

    def clock(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> bool:
        if len(self.fired) >= self.limit:
            return True
        self.now += timedelta(seconds=seconds + (self.oversleep.pop(0) if self.oversleep else 0.0))
        return False


FAKE = FakeTime()
app = func.FunctionApp()


@app.timer_trigger(arg_name="timer", schedule=EVERY_TEN_SECONDS)
def tick(timer: func.TimerRequest) -> None:
    FAKE.fired.append((FAKE.now, timer.past_due))
    FAKE.now += timedelta(seconds=FAKE.work_seconds)
    if FAKE.fail:
        raise RuntimeError("tick failed")


(TICK,) = index_functions(app)


@pytest.fixture
def fake() -> FakeTime:
    global FAKE
    FAKE = FakeTime()
    return FAKE


def run_listener(
    fake: FakeTime, *, run_on_startup: bool = False, store: InMemoryScheduleStatusStore | None = None
) -> list[tuple[str, bool]]:
    binding = TimerBinding("tick", NcrontabSchedule(EVERY_TEN_SECONDS), run_on_startup=run_on_startup, use_monitor=True)
    listener = TimerListener(
        binding, FunctionInvoker(TICK, AppSettings({})), clock=fake.clock, sleep=fake.sleep, status_store=store
    )
    listener.run()
    return [(f"{moment:%M:%S}", past_due) for moment, past_due in fake.fired]


def test_ncrontab_needs_six_fields_seconds_first() -> None:
    with pytest.raises(BindingConfigError, match="six-field NCRONTAB"):
        NcrontabSchedule("*/5 * * * *")
    with pytest.raises(BindingConfigError, match="six-field NCRONTAB"):
        NcrontabSchedule("not a schedule at all")
    schedule = NcrontabSchedule("30 0 9 * * Mon-Fri")
    assert schedule.next_after(START) == datetime(2026, 11, 25, 9, 0, 30, tzinfo=UTC)  # 24 Nov 2026 is a Tuesday
    assert NcrontabSchedule(EVERY_TEN_SECONDS).next_after(START) == START.replace(second=10)


def test_the_schedule_setting_resolves_from_the_app_settings() -> None:
    (function,) = probe_functions("localhost.probe_app", "timer_probe")
    binding = TimerBinding.from_raw(
        function.name, function.trigger, AppSettings({"TIMER_PROBE_SCHEDULE": "0 0 * * * *"})
    )
    assert binding.schedule.expression == "0 0 * * * *"
    assert binding.run_on_startup
    with pytest.raises(BindingConfigError, match="TIMER_PROBE_SCHEDULE"):
        TimerBinding.from_raw(function.name, function.trigger, AppSettings({}))


def test_it_fires_on_schedule_and_once_at_startup_when_asked(fake: FakeTime) -> None:
    fake.limit = 4
    assert run_listener(fake, run_on_startup=True) == [
        ("00:03", False),
        ("00:10", False),
        ("00:20", False),
        ("00:30", False),
    ]


def test_an_invocation_late_by_a_whole_period_is_past_due(fake: FakeTime) -> None:
    fake.oversleep = [25.0]  # suspended: wakes at :35 for the :10 occurrence, after :20 and :30 had come
    assert run_listener(fake) == [("00:35", True), ("00:40", False), ("00:50", False)]


def test_a_slightly_late_invocation_is_not_past_due(fake: FakeTime) -> None:
    fake.oversleep = [0.5]
    assert run_listener(fake)[0] == ("00:10", False)


def test_occurrences_missed_during_a_long_invocation_are_skipped_not_past_due(fake: FakeTime) -> None:
    fake.work_seconds = 25.0  # the :10 run ends at :35
    assert run_listener(fake) == [("00:10", False), ("00:40", False), ("01:10", False)]


def test_after_downtime_the_recorded_status_makes_the_first_invocation_past_due(fake: FakeTime) -> None:
    store = InMemoryScheduleStatusStore()
    store.put("tick", ScheduleStatus(last=START - timedelta(minutes=5), next=START - timedelta(minutes=4, seconds=50)))
    assert run_listener(fake, run_on_startup=True, store=store) == [("00:03", True), ("00:10", False), ("00:20", False)]
    status = store.get("tick")
    assert status is not None
    assert status.next == START.replace(second=30)


def test_a_failing_timer_function_is_logged_and_keeps_its_schedule(
    fake: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail = True
    with caplog.at_level(logging.ERROR):
        assert run_listener(fake) == [("00:10", False), ("00:20", False), ("00:30", False)]
    assert sum("Timer function tick failed" in r.getMessage() for r in caplog.records) == 3


def test_a_real_timer_thread_fires_every_second_and_stops_promptly(start_host: StartHost) -> None:
    already = len(TIMER.entries())
    host = start_host(probe_functions("localhost.probe_app", "timer_probe"))
    fired = TIMER.wait_for(lambda entries: entries[already:] if len(entries) >= already + 2 else None, timeout=3)
    assert [past_due for _, past_due in fired[:2]] == [False, False]  # runOnStartup, then the next second
    started = time.monotonic()
    host.stop()
    assert time.monotonic() - started < 1
