"""What the in-process benchmarks share: their own services, the command line of those that take only `--n`,
and one way to measure and print.

Each benchmark runs the app on `localhost.stack` (the patched Cosmos emulator, Azurite and a JWKS server on
127.0.0.1, settings from those alone) and drives the registered functions with real signed tokens, through
the same requests the tests make (`localhost.scenarios`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

from localhost.caller import FunctionCaller, Response
from localhost.stack import function_app_stack as function_app

__all__ = ["function_app", "measure", "parse_n", "round_trip_counts"]


def parse_n(doc: str, what: str) -> int:
    """`--n`, how many `what` each run makes (default 200); `doc`'s first line is the description."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help=f"{what} per run (default 200)")
    n: int = parser.parse_args().n
    return n


def round_trip_counts(trips: list[int]) -> dict[int, int]:
    """How many calls made each number of Cosmos round trips, fewest first."""
    return {count: trips.count(count) for count in sorted(set(trips))}


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
    cuts = statistics.quantiles(latencies_ms, n=100)
    print(
        f"{label:<38} n={len(calls):<5} round trips {round_trip_counts(trips)}  "
        f"p50 {statistics.median(latencies_ms):6.2f} ms  p90 {cuts[89]:6.2f} ms  p99 {cuts[98]:6.2f} ms"
    )
