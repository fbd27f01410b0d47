"""What the in-process benchmarks share: their own services, and one way to measure and print.

Each benchmark starts the patched Cosmos emulator, Azurite and a JWKS server on 127.0.0.1, ignores any
settings in the environment, and drives the registered functions with real signed tokens, as the tests do.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from core.bootstrap import Runtime, set_runtime
from tests.conftest import make_settings
from tests.support.app import TEST_AUDIENCE, TEST_TENANT, FunctionCaller, Response, Tokens
from tests.support.services import start_azurite, start_cosmos
from tests.support.tokens import JwksServer, SigningKey, TokenFactory


@contextmanager
def function_app() -> Iterator[FunctionCaller]:
    cosmos, azurite = start_cosmos(), start_azurite()
    signing_key = SigningKey()
    jwks = JwksServer([signing_key])
    try:
        runtime = Runtime(make_settings(cosmos, azurite, jwks))
        set_runtime(runtime)
        yield FunctionCaller(runtime=runtime, tokens=Tokens(TokenFactory(TEST_TENANT, TEST_AUDIENCE, signing_key)))
    finally:
        set_runtime(None)
        jwks.stop()
        cosmos.stop()
        azurite.stop()


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
