"""The WebJobs SDK's randomized exponential back-off, used by the host for two things:

- the queue trigger's polling of an empty queue (minimum 100 ms, maximum `maxPollingInterval`);
- the `exponential_backoff` retry strategy (minimum `minimum_interval`, maximum `maximum_interval`).

As in `RandomizedExponentialBackoffStrategy` (Microsoft.Azure.WebJobs.Host.Timers, and its copy in the Storage
extension): the first failure waits `minimum`; each further one waits `minimum + r * 2**(n-1) * delta` (`delta`
defaults to `minimum`, `r` uniform in [0.8, 1.2)), until that reaches `maximum`, which then stays; a success resets
the wait to `minimum`.
"""

from __future__ import annotations

import random

RANDOMIZATION_FACTOR = 0.2


class RandomizedExponentialBackoff:
    def __init__(self, minimum: float, maximum: float, delta: float | None = None) -> None:
        if minimum < 0 or maximum < 0:
            raise ValueError("the back-off intervals must not be negative")
        if minimum > maximum:
            raise ValueError("the minimum interval must not be greater than the maximum interval")
        self.minimum = minimum
        self.maximum = maximum
        self._delta = minimum if delta is None else delta
        self._current = 0.0
        self._exponent = 0
        self._random = random.Random()

    def next_delay(self, succeeded: bool) -> float:
        """Seconds to wait before the next attempt, after one that `succeeded` (found work) or not."""
        if succeeded:
            self._current = self.minimum
            self._exponent = 1
        elif self._current != self.maximum:
            interval = self.minimum
            if self._exponent > 0:
                factor = self._random.uniform(1.0 - RANDOMIZATION_FACTOR, 1.0 + RANDOMIZATION_FACTOR)
                interval += factor * 2.0 ** (self._exponent - 1) * self._delta
            if interval < self.maximum:
                self._current = interval
                self._exponent += 1
            else:
                self._current = self.maximum
        return self._current
