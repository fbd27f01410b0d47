"""What the in-process benchmarks share: their own services, and one way to measure and print.

Each benchmark runs the app on `localhost.stack` (the patched Cosmos emulator, Azurite and a JWKS server on
127.0.0.1, settings from those alone) and drives the registered functions with real signed tokens, through
the same requests the tests make (`localhost.scenarios`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

from localhost.caller import FunctionCaller, Response
from localhost.stack import function_app_stack as function_app

__all__ = ["function_app", "measure"]


def measure(app: FunctionCaller, label: str, calls: Sequence[Callable[[], Response]], *, expect: int) -> None:
    """Run each call once; print the distribution of Cosmos round trips and the latency percentiles."""
    latencies_ms: list[float] = []
    trips: list[int] = []
    for call in calls:
        before, started = app.runtime.round_trips.count, time.perf_counter()
        response = call()
        latencies_ms.append((time.perf_counter() - started) * 1000)
        trips.append(app.runtime.round_trips.count - before)
        assert response.status == expect, response.body
    counts = {count: trips.count(count) for count in sorted(set(trips))}
    cuts = statistics.quantiles(latencies_ms, n=100)
    print(
        f"{label:<38} n={len(calls):<5} round trips {counts}  "
        f"p50 {statistics.median(latencies_ms):6.2f} ms  p90 {cuts[89]:6.2f} ms  p99 {cuts[98]:6.2f} ms"
    )
