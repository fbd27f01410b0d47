"""Function-level retry policies (`@app.retry(...)`), read as the Python worker reads them and run as the host runs
them.

The worker (`build_retry_protos` in azure-functions-python-worker) takes the function's `retry_policy` setting:
`strategy` must be `fixed_delay` or `exponential_backoff` (the host's `RetryStrategy` enum), `max_retry_count` goes
through `int()`, and each interval through `time.strptime(value, "%H:%M:%S")`, whole seconds. A policy it cannot
read fails the indexing of the whole app, so the local host refuses it at indexing too. The host then refuses a
`max_retry_count` below -1, and an exponential policy whose minimum is above its maximum.

The host (`FunctionExecutorExtensions.TryExecuteAsync` in the WebJobs SDK) calls the function once and, while it
raises, again with the same trigger data, up to `max_retry_count` more times (`-1`: without end), waiting between
calls: `delay_interval` for `fixed_delay`, the randomized exponential back-off from `minimum_interval` to
`maximum_interval` for `exponential_backoff` (`localhost.backoff`). The retry count is in memory only: a restart
starts again at 0. A stop during a wait ends the retries, and the caller is told (`RetryWaitInterrupted`).

Retry policies apply to Cosmos DB and timer triggers (and Event Hubs and Kafka, which the local host does not run).
On any other trigger the host ignores the policy with a warning: "Retries are not supported for function ...".
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from localhost.backoff import RandomizedExponentialBackoff

log = logging.getLogger("localhost")

FIXED_DELAY = "fixed_delay"
EXPONENTIAL_BACKOFF = "exponential_backoff"
RETRY_POLICY_SETTING = "retry_policy"  # the setting name `@app.retry` adds (azure.functions.decorators.retry_policy)
RETRY_TRIGGERS = frozenset({"cosmosDBTrigger", "timerTrigger", "eventHubTrigger", "kafkaTrigger"})

# A stop-aware wait: waits up to `seconds` and returns True when the caller should stop.
Wait = Callable[[float], bool]


class RetryPolicyError(ValueError):
    """The worker or the host would refuse this retry policy."""


class RetryWaitInterrupted(Exception):
    """The host stopped while a failed call waited for its retry; the trigger data was not handled."""


def _seconds(name: str, value: Any) -> int:
    """The worker's `convert_to_seconds`: `HH:MM:SS`, whole seconds."""
    if not isinstance(value, str):
        raise RetryPolicyError(f"{name} must be a string 'HH:MM:SS', not {value!r}")
    try:
        parsed = time.strptime(value, "%H:%M:%S")
    except ValueError:
        raise RetryPolicyError(f"{name} must be 'HH:MM:SS' (hours 00-23), not {value!r}") from None
    return int(timedelta(hours=parsed.tm_hour, minutes=parsed.tm_min, seconds=parsed.tm_sec).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    strategy: str
    max_retry_count: int  # -1: retry without end
    delay_interval: float = 0.0  # fixed_delay, seconds
    minimum_interval: float = 0.0  # exponential_backoff, seconds
    maximum_interval: float = 0.0

    @classmethod
    def from_setting(cls, setting: Mapping[str, Any]) -> RetryPolicy:
        """The policy of a function's `retry_policy` setting (`Function.get_settings_dict("retry_policy")`)."""
        strategy = setting.get("strategy")
        if strategy not in (FIXED_DELAY, EXPONENTIAL_BACKOFF):
            raise RetryPolicyError(f"strategy must be '{FIXED_DELAY}' or '{EXPONENTIAL_BACKOFF}', not {strategy!r}")
        try:
            max_retry_count = int(setting.get("max_retry_count"))  # type: ignore[arg-type]  # as the worker does
        except (TypeError, ValueError):
            raise RetryPolicyError(
                f"max_retry_count must be an integer, not {setting.get('max_retry_count')!r}"
            ) from None
        if max_retry_count < -1:
            raise RetryPolicyError(f"max_retry_count must be -1 (no end) or more, not {max_retry_count}")
        if strategy == FIXED_DELAY:
            delay = _seconds("delay_interval", setting.get("delay_interval"))
            return cls(strategy, max_retry_count, delay_interval=delay)
        minimum = _seconds("minimum_interval", setting.get("minimum_interval"))
        maximum = _seconds("maximum_interval", setting.get("maximum_interval"))
        if minimum > maximum:
            raise RetryPolicyError(f"minimum_interval ({minimum} s) is more than maximum_interval ({maximum} s)")
        return cls(strategy, max_retry_count, minimum_interval=minimum, maximum_interval=maximum)

    def delays(self) -> Callable[[], float]:
        """A fresh source of the waits before each retry of one execution."""
        if self.strategy == FIXED_DELAY:
            return lambda: self.delay_interval
        backoff = RandomizedExponentialBackoff(self.minimum_interval, self.maximum_interval)
        return lambda: backoff.next_delay(succeeded=False)

    def describe(self) -> str:
        count = "no end" if self.max_retry_count == -1 else str(self.max_retry_count)
        if self.strategy == FIXED_DELAY:
            return f"retry {FIXED_DELAY}, {count} retries, {self.delay_interval:g} s apart"
        return (
            f"retry {EXPONENTIAL_BACKOFF}, {count} retries, "
            f"{self.minimum_interval:g} s to {self.maximum_interval:g} s apart"
        )


@dataclass(frozen=True)
class RpcError:
    """The `RpcException` a retried call sees in `context.retry_context.exception`: the previous call's error."""

    source: str
    stack_trace: str
    message: str


@dataclass(frozen=True)
class RetryState:
    """What `context.retry_context` says for one call: 0 on the first call, then the retry's number."""

    retry_count: int
    max_retry_count: int
    exception: RpcError | None = None


class Invoke(Protocol):
    def __call__(self, trigger_value: Any, *, reason: str, retry: RetryState | None = None) -> Any: ...


def call_with_retries(
    invoke: Invoke,
    make_value: Callable[[], Any],
    *,
    name: str,
    reason: str,
    policy: RetryPolicy | None,
    wait: Wait,
) -> Any:
    """Call `invoke` with a fresh `make_value()` until it succeeds or the policy's retries are spent; then re-raise
    the last error. Without a policy, one call."""
    if policy is None:
        return invoke(make_value(), reason=reason)
    delays = policy.delays()
    attempt = 0
    previous: RpcError | None = None
    while True:
        try:
            return invoke(make_value(), reason=reason, retry=RetryState(attempt, policy.max_retry_count, previous))
        except Exception as error:
            if policy.max_retry_count != -1 and attempt == policy.max_retry_count:
                log.warning("Function %s: all %d retries have been exhausted", name, attempt)
                raise
            attempt += 1
            previous = RpcError(source=type(error).__module__, stack_trace=_stack(error), message=str(error))
            delay = delays()
            log.warning(
                "Function %s failed: waiting for %g s before retrying function execution. Next attempt: '%d'. "
                "Max retry count: '%d'",
                name,
                delay,
                attempt,
                policy.max_retry_count,
            )
            if wait(delay):
                raise RetryWaitInterrupted(f"the host stopped before retry {attempt} of function {name}") from error


def _stack(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))
