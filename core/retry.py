"""The one retry loop for lost races: every read-decide-write in the service goes through it."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from core.errors import ConcurrencyConflict, ServiceUnavailable

T = TypeVar("T")

# This many lost races in a row means heavy contention: the caller is told to come back.
MAX_ATTEMPTS = 8
_BASE_DELAY_SECONDS = 0.005


def retry_conflicts(attempt: Callable[[], T], *, attempts: int = MAX_ATTEMPTS) -> T:
    """Run `attempt` until it does not lose a race (`ConcurrencyConflict`). Each retry re-reads and
    re-decides from scratch, so the loser is judged on the winner's state. Backoff is jittered, so
    racers that collided once do not collide again in lockstep."""
    for number in range(attempts):
        try:
            return attempt()
        except ConcurrencyConflict:
            if number:
                time.sleep(random.uniform(0, _BASE_DELAY_SECONDS * 2**number))
    raise ServiceUnavailable("The resource is being changed by many requests at once; retry", retry_after=1)
