"""Retry policies (`@app.retry`): read as the Python worker reads them, delays as the host computes them, and the
triggers they apply to. The Cosmos DB and timer triggers' retries are tested in test_change_feed.py and
test_timers.py."""

import logging
from typing import Any

import azure.functions as func
import pytest

from localhost.backoff import RandomizedExponentialBackoff
from localhost.host import LocalHost
from localhost.indexing import IndexingError, index_functions
from localhost.retry import RetryPolicy, RetryPolicyError, RetryState, RetryWaitInterrupted, call_with_retries


def policy(**setting: Any) -> RetryPolicy:
    return RetryPolicy.from_setting(setting)


def test_the_decorators_settings_become_the_policy() -> None:
    app = func.FunctionApp()

    @app.retry(
        strategy="exponential_backoff", max_retry_count="5", minimum_interval="00:00:04", maximum_interval="00:15:00"
    )
    @app.timer_trigger(arg_name="timer", schedule="0 * * * * *")
    def sweep(timer: func.TimerRequest) -> None: ...

    @app.retry(strategy="fixed_delay", max_retry_count="-1", delay_interval="01:00:00")
    @app.timer_trigger(arg_name="timer", schedule="0 * * * * *")
    def forever(timer: func.TimerRequest) -> None: ...

    @app.timer_trigger(arg_name="timer", schedule="0 * * * * *")
    def plain(timer: func.TimerRequest) -> None: ...

    functions = {f.name: f for f in index_functions(app)}
    assert functions["sweep"].retry == RetryPolicy("exponential_backoff", 5, minimum_interval=4, maximum_interval=900)
    assert functions["forever"].retry == RetryPolicy("fixed_delay", -1, delay_interval=3600)
    assert functions["plain"].retry is None


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ({"strategy": "fixedDelay", "max_retry_count": 3, "delay_interval": "00:00:05"}, "strategy must be"),
        ({"strategy": "fixed_delay", "max_retry_count": "3.5", "delay_interval": "00:00:05"}, "must be an integer"),
        ({"strategy": "fixed_delay", "max_retry_count": None, "delay_interval": "00:00:05"}, "must be an integer"),
        ({"strategy": "fixed_delay", "max_retry_count": 3}, "delay_interval must be a string"),
        ({"strategy": "fixed_delay", "max_retry_count": 3, "delay_interval": "00:00:00.500"}, "HH:MM:SS"),
        ({"strategy": "fixed_delay", "max_retry_count": 3, "delay_interval": "24:00:00"}, "HH:MM:SS"),
        ({"strategy": "fixed_delay", "max_retry_count": -2, "delay_interval": "00:00:05"}, "-1 \\(no end\\) or more"),
        ({"strategy": "exponential_backoff", "max_retry_count": 3, "minimum_interval": "00:00:05"}, "maximum_interval"),
        (
            {
                "strategy": "exponential_backoff",
                "max_retry_count": 3,
                "minimum_interval": "00:01:00",
                "maximum_interval": "00:00:05",
            },
            "is more than maximum_interval",
        ),
    ],
)
def test_a_policy_the_worker_or_the_host_would_refuse_is_refused(setting: dict[str, Any], complaint: str) -> None:
    with pytest.raises(RetryPolicyError, match=complaint):
        RetryPolicy.from_setting(setting)


def test_a_bad_policy_fails_indexing_as_it_fails_the_workers() -> None:
    app = func.FunctionApp()

    @app.retry(strategy="fixed_delay", max_retry_count="3")  # no delay_interval: the worker's strptime(None) raises
    @app.timer_trigger(arg_name="timer", schedule="0 * * * * *")
    def sweep(timer: func.TimerRequest) -> None: ...

    with pytest.raises(IndexingError, match=r"sweep: @retry: delay_interval"):
        index_functions(app)


def test_exponential_delays_start_at_the_minimum_and_grow_to_the_maximum() -> None:
    delays = policy(
        strategy="exponential_backoff", max_retry_count=10, minimum_interval="00:00:01", maximum_interval="00:00:10"
    ).delays()
    waits = [delays() for _ in range(8)]
    assert waits[0] == 1
    assert 1 + 0.8 <= waits[1] <= 1 + 1.2
    assert 1 + 1.6 <= waits[2] <= 1 + 2.4
    assert 1 + 3.2 <= waits[3] <= 1 + 4.8
    assert waits[-2:] == [10, 10]
    assert waits == sorted(waits)


def test_the_polling_back_off_starts_over_after_a_success() -> None:
    backoff = RandomizedExponentialBackoff(0.1, 2.0)
    grown = [backoff.next_delay(succeeded=False) for _ in range(10)]
    assert grown[0] == 0.1
    assert grown[-1] == 2.0
    assert backoff.next_delay(succeeded=True) == 0.1
    assert 0.1 + 0.08 <= backoff.next_delay(succeeded=False) <= 0.1 + 0.12


def test_minus_one_retries_until_it_succeeds_and_each_call_sees_its_retry_context() -> None:
    seen: list[RetryState | None] = []

    def invoke(trigger_value: Any, *, reason: str, retry: RetryState | None = None) -> str:
        seen.append(retry)
        if len(seen) < 6:
            raise ValueError(f"call {len(seen)} fails")
        return "done"

    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        return False

    forever = policy(strategy="fixed_delay", max_retry_count=-1, delay_interval="00:00:07")
    result = call_with_retries(invoke, lambda: "value", name="f", reason="test", policy=forever, wait=wait)
    assert result == "done"
    assert waits == [7] * 5
    assert [state.retry_count for state in seen if state] == [0, 1, 2, 3, 4, 5]
    assert {state.max_retry_count for state in seen if state} == {-1}
    assert [state.exception.message if state and state.exception else None for state in seen[:3]] == [
        None,
        "call 1 fails",
        "call 2 fails",
    ]


def test_a_stop_during_the_wait_ends_the_retries() -> None:
    calls: list[int] = []

    def invoke(trigger_value: Any, *, reason: str, retry: RetryState | None = None) -> None:
        calls.append(1)
        raise ValueError("fails")

    three = policy(strategy="fixed_delay", max_retry_count=3, delay_interval="00:00:01")
    with pytest.raises(RetryWaitInterrupted):
        call_with_retries(invoke, lambda: None, name="f", reason="test", policy=three, wait=lambda _: True)
    assert calls == [1]


def test_a_retry_policy_on_a_queue_or_http_trigger_is_ignored_with_a_warning(
    app_settings: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.retry(strategy="fixed_delay", max_retry_count="3", delay_interval="00:00:01")
    @app.queue_trigger(arg_name="message", queue_name="%QUEUE_PROBE_QUEUE%", connection="AzureWebJobsStorage")
    def on_message(message: func.QueueMessage) -> None: ...

    @app.retry(strategy="fixed_delay", max_retry_count="3", delay_interval="00:00:01")
    @app.route(route="retried")
    def retried(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("")

    with caplog.at_level(logging.WARNING):
        host = LocalHost(index_functions(app), app_settings, port=0)
    host.stop()
    warnings = [r.getMessage() for r in caplog.records if "Retries are not supported" in r.getMessage()]
    assert len(warnings) == 2
    assert any("'on_message' (a queueTrigger)" in w for w in warnings)
    assert any("'retried' (a httpTrigger)" in w for w in warnings)
