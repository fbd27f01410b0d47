"""Benchmark POST /workspaces/secure/api/v1/txn/assign and /unassign: Cosmos round trips and latency.

Starts its own services (the patched Cosmos emulator, Azurite, a JWKS server) on 127.0.0.1, ignores any
settings in the environment, and drives the registered functions with real signed tokens, as the tests do.

    .venv/bin/python -m bench.bench_txn [--n 200]

Three runs over N unassigned tasks: assign each to a different user (every directory lookup misses the
cache), unassign each, then assign each to one user (every lookup after the first is a cache hit).
"""

from __future__ import annotations

import argparse
import uuid
from functools import partial

from bench.harness import function_app, measure
from core.directory import CosmosDirectory, DirectoryUser
from tests.support.app import FunctionCaller, Response

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="tasks per run (default 200)")
    n = parser.parse_args().n

    with function_app() as app:
        new_task(app)  # warm up: containers, JWKS, connections
        tasks = [new_task(app) for _ in range(n)]
        fresh = [add_user(app) for _ in range(n)]
        assign_fresh = [
            partial(txn, app, "assign", {"submitKey": t, "userKey": u}) for t, u in zip(tasks, fresh, strict=True)
        ]
        measure(app, "assign, directory cache miss", assign_fresh, expect=200)
        measure(app, "unassign", [partial(txn, app, "unassign", {"submitKey": t}) for t in tasks], expect=200)
        repeated = add_user(app)
        assign_repeated = [partial(txn, app, "assign", {"submitKey": t, "userKey": repeated}) for t in tasks]
        measure(app, "assign, directory cache hit (one user)", assign_repeated, expect=200)


if __name__ == "__main__":
    main()
