"""Benchmark POST /workspaces/secure/api/v1/txn/assign and /unassign: Cosmos round trips and latency.

Starts its own services (the patched Cosmos emulator, Azurite, a JWKS server) on 127.0.0.1, ignores any
settings in the environment, and drives the registered functions with real signed tokens, as the tests do.

    .venv/bin/python -m bench.bench_txn [--n 200]

Three runs over N unassigned tasks: assign each to a different user (every directory lookup misses the
cache), unassign each, then assign each to one user (every lookup after the first is a cache hit).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from functools import partial

from core.bootstrap import Runtime, set_runtime
from core.directory import CosmosDirectory, DirectoryUser
from tests.conftest import make_settings
from tests.support.app import TEST_AUDIENCE, TEST_TENANT, FunctionCaller, Response, Tokens
from tests.support.services import start_azurite, start_cosmos
from tests.support.tokens import JwksServer, SigningKey, TokenFactory

ORIGINATOR = "olivia@contoso.com"
TXN = "/workspaces/secure/api/v1/txn"


def add_user(app: FunctionCaller) -> str:
    user_key = uuid.uuid4().hex
    upn = f"bench-{user_key[:10]}@contoso.com"
    CosmosDirectory(app.runtime.users_container).put(DirectoryUser(user_key, upn, None, True))
    return user_key


def new_task(app: FunctionCaller) -> str:
    response = app.call(
        "create_assignment",
        method="POST",
        url="/assignments",
        token=app.tokens.user(ORIGINATOR),
        json_body={"targetType": "chat", "targetId": "c", "completionCriteria": "manual", "taskKey": "bench"},
    )
    assert response.status == 201, response.body
    return str(response.json()["id"])


def txn(app: FunctionCaller, operation: str, params: dict[str, str]) -> Response:
    return app.call(
        f"txn_{operation}",
        method="POST",
        url=f"{TXN}/{operation}",
        token=app.tokens.user(ORIGINATOR),
        json_body={"params": params},
    )


def run(app: FunctionCaller, label: str, calls: list[Callable[[], Response]]) -> None:
    latencies_ms: list[float] = []
    trips: list[int] = []
    for call in calls:
        before_trips, started = app.runtime.round_trips.count, time.perf_counter()
        response = call()
        latencies_ms.append((time.perf_counter() - started) * 1000)
        trips.append(app.runtime.round_trips.count - before_trips)
        assert response.status == 200, response.body
    counts = {count: trips.count(count) for count in sorted(set(trips))}
    percentiles = statistics.quantiles(latencies_ms, n=100)
    print(
        f"{label:<38} n={len(calls):<5} round trips {counts}  "
        f"p50 {statistics.median(latencies_ms):6.2f} ms  p90 {percentiles[89]:6.2f} ms  p99 {percentiles[98]:6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="tasks per run (default 200)")
    n = parser.parse_args().n

    cosmos, azurite = start_cosmos(), start_azurite()
    signing_key = SigningKey()
    jwks = JwksServer([signing_key])
    try:
        runtime = Runtime(make_settings(cosmos, azurite, jwks))
        set_runtime(runtime)
        app = FunctionCaller(runtime=runtime, tokens=Tokens(TokenFactory(TEST_TENANT, TEST_AUDIENCE, signing_key)))
        new_task(app)  # warm up: containers, JWKS, connections

        tasks = [new_task(app) for _ in range(n)]
        fresh = [add_user(app) for _ in range(n)]
        run(
            app,
            "assign, directory cache miss",
            [partial(txn, app, "assign", {"submitKey": t, "userKey": u}) for t, u in zip(tasks, fresh, strict=True)],
        )
        run(app, "unassign", [partial(txn, app, "unassign", {"submitKey": t}) for t in tasks])
        repeated = add_user(app)
        run(
            app,
            "assign, directory cache hit (one user)",
            [partial(txn, app, "assign", {"submitKey": t, "userKey": repeated}) for t in tasks],
        )
    finally:
        jwks.stop()
        cosmos.stop()
        azurite.stop()


if __name__ == "__main__":
    main()
