"""Timer trigger functions: NCRONTAB schedules with seconds, %SETTING% schedules, runOnStartup, past_due, and
retry policies.

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
from localhost.retry import RetryPolicy
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
    fail_calls: int = 0  # so many calls raise before one succeeds (flaky_tick)
    fired: list[tuple[datetime, bool]] = field(default_factory=list)
    retry_counts: list[int] = field(default_factory=list)

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
retry_app = func.FunctionApp()


@retry_app.retry(strategy="fixed_delay", max_retry_count="2", delay_interval="00:00:03")
@retry_app.timer_trigger(arg_name="timer", schedule=EVERY_TEN_SECONDS)
def flaky_tick(timer: func.TimerRequest, context: func.Context) -> None:
    FAKE.fired.append((FAKE.now, timer.past_due))
    FAKE.retry_counts.append(context.retry_context.retry_count)
    if FAKE.fail or FAKE.fail_calls > 0:
        FAKE.fail_calls -= 1
        raise RuntimeError("flaky_tick failed")


(FLAKY_TICK,) = index_functions(retry_app)


@pytest.fixture
def fake() -> FakeTime:
    global FAKE
    FAKE = FakeTime()
    return FAKE


def run_listener(
    fake: FakeTime,
    *,
    run_on_startup: bool = False,
    store: InMemoryScheduleStatusStore | None = None,
    retry: RetryPolicy | None = None,
) -> list[tuple[str, bool]]:
    function = TICK if retry is None else FLAKY_TICK
    binding = TimerBinding(
        function.name, NcrontabSchedule(EVERY_TEN_SECONDS), run_on_startup=run_on_startup, use_monitor=True
    )
    listener = TimerListener(
        binding,
        FunctionInvoker(function, AppSettings({})),
        clock=fake.clock,
        sleep=fake.sleep,
        status_store=store,
        retry=retry,
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


def test_a_retry_policy_calls_a_failed_timer_function_again_before_the_next_occurrence(fake: FakeTime) -> None:
    assert FLAKY_TICK.retry == RetryPolicy("fixed_delay", 2, delay_interval=3)
    fake.limit = 4
    fake.fail_calls = 2  # the :10 occurrence fails twice, then succeeds on its second retry
    assert run_listener(fake, retry=FLAKY_TICK.retry) == [
        ("00:10", False),
        ("00:13", False),
        ("00:16", False),
        ("00:20", False),
    ]
    assert fake.retry_counts == [0, 1, 2, 0]


def test_when_the_retries_are_spent_the_failure_is_logged_and_the_schedule_goes_on(
    fake: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    fake.limit = 4
    fake.fail = True
    with caplog.at_level(logging.WARNING):
        assert run_listener(fake, retry=FLAKY_TICK.retry)[:4] == [
            ("00:10", False),
            ("00:13", False),
            ("00:16", False),
            ("00:20", False),
        ]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("all 2 retries have been exhausted" in m for m in messages) == 1
    assert sum("Timer function flaky_tick failed" in m for m in messages) == 1
    first_retry = "before retrying function execution. Next attempt: '1'. Max retry count: '2'"
    assert sum(first_retry in m for m in messages) == 2  # the :10 occurrence's, and the :20 one's (stopped in its wait)


def test_occurrences_that_pass_while_retrying_are_skipped(fake: FakeTime) -> None:
    fake.fail_calls = 1
    policy = RetryPolicy("fixed_delay", 2, delay_interval=15)  # the :10 occurrence is retried at :25
    assert run_listener(fake, retry=policy) == [("00:10", False), ("00:25", False), ("00:30", False)]
    assert fake.retry_counts == [0, 1, 0]


def test_a_real_timer_thread_fires_every_second_and_stops_promptly(start_host: StartHost) -> None:
    already = len(TIMER.entries())
    host = start_host(probe_functions("localhost.probe_app", "timer_probe"))
    fired = TIMER.wait_for(lambda entries: entries[already:] if len(entries) >= already + 2 else None, timeout=3)
    assert [past_due for _, past_due in fired[:2]] == [False, False]  # runOnStartup, then the next second
    started = time.monotonic()
    host.stop()
    assert time.monotonic() - started < 1
