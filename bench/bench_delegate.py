"""Benchmark POST /assignments/{id}/delegate: Cosmos round trips and latency per delegation.

Starts its own services (the patched Cosmos emulator, Azurite, a JWKS server) on 127.0.0.1, ignores any
settings in the environment, and drives the registered function with real signed tokens, as the tests do.

    .venv/bin/python -m bench.bench_delegate [--n 200]

Two runs of N delegations each: to N different users (every directory lookup misses the cache), then to
one user (every lookup after the first is a cache hit).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable

from core.bootstrap import Runtime, set_runtime
from tests.conftest import make_settings
from tests.support.app import TEST_AUDIENCE, TEST_TENANT, FunctionCaller, Tokens
from tests.support.services import start_azurite, start_cosmos
from tests.support.tokens import JwksServer, SigningKey, TokenFactory

ASSIGNEE = "adam@contoso.com"
ASSIGNEE_OID = "oid-adam"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def add_user(app: FunctionCaller) -> str:
    upn, user_key = f"bench-{uuid.uuid4().hex[:10]}@contoso.com", str(uuid.uuid4())
    response = app.call(
        "put_user",
        method="PUT",
        url=f"/users/{user_key}",
        token=app.tokens.admin_app(),
        json_body={"upn": upn},
        route_params={"userKey": user_key},
    )
    assert response.status == 201, response.body
    return upn


def new_assignment(app: FunctionCaller) -> str:
    response = app.call(
        "create_assignment",
        method="POST",
        url="/assignments",
        token=app.tokens.user("olivia@contoso.com"),
        json_body={"targetType": "chat", "targetId": "c", "assigneeEmail": ASSIGNEE, "completionCriteria": "manual"},
    )
    assert response.status == 201, response.body
    return str(response.json()["id"])


def run(app: FunctionCaller, label: str, n: int, delegate_to: Callable[[int], str]) -> None:
    token = app.tokens.user(ASSIGNEE, oid=ASSIGNEE_OID)
    ids = [new_assignment(app) for _ in range(n)]
    upns = [delegate_to(i) for i in range(n)]
    latencies_ms: list[float] = []
    trips: list[int] = []
    for assignment_id, upn in zip(ids, upns, strict=True):
        before_trips, started = app.runtime.round_trips.count, time.perf_counter()
        response = app.call(
            "delegate_assignment",
            method="POST",
            url=f"/assignments/{assignment_id}/delegate",
            token=token,
            json_body={"toUpn": upn},
            route_params={"id": assignment_id},
        )
        latencies_ms.append((time.perf_counter() - started) * 1000)
        trips.append(app.runtime.round_trips.count - before_trips)
        assert response.status == 201, response.body
    counts = {count: trips.count(count) for count in sorted(set(trips))}
    print(
        f"{label:<34} n={n:<5} round trips {counts}  "
        f"p50 {statistics.median(latencies_ms):6.2f} ms  p90 {percentile(latencies_ms, 0.9):6.2f} ms  "
        f"p99 {percentile(latencies_ms, 0.99):6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="delegations per run (default 200)")
    n = parser.parse_args().n

    cosmos, azurite = start_cosmos(), start_azurite()
    signing_key = SigningKey()
    jwks = JwksServer([signing_key])
    try:
        runtime = Runtime(make_settings(cosmos, azurite, jwks))
        set_runtime(runtime)
        app = FunctionCaller(runtime=runtime, tokens=Tokens(TokenFactory(TEST_TENANT, TEST_AUDIENCE, signing_key)))
        new_assignment(app)  # warm up: containers, JWKS, connections

        fresh = [add_user(app) for _ in range(n)]
        run(app, "directory cache miss (new users)", n, lambda i: fresh[i])
        repeated = add_user(app)
        run(app, "directory cache hit (one user)", n, lambda _i: repeated)
    finally:
        jwks.stop()
        cosmos.stop()
        azurite.stop()


if __name__ == "__main__":
    main()
