"""Benchmark POST /assignments/{id}/delegate: Cosmos round trips and latency per delegation.

Starts its own services (the patched Cosmos emulator, Azurite, a JWKS server) on 127.0.0.1, ignores any
settings in the environment, and drives the registered function with real signed tokens, as the tests do.

    .venv/bin/python -m bench.bench_delegate [--n 200]

Two runs of N delegations each: to N different users (every directory lookup misses the cache), then to
one user (every lookup after the first is a cache hit).
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from functools import partial

from bench.harness import function_app, measure
from tests.support.app import FunctionCaller, Response

ASSIGNEE = "adam@contoso.com"
ASSIGNEE_OID = "oid-adam"


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


def delegation(app: FunctionCaller, assignment_id: str, upn: str) -> Response:
    return app.call(
        "delegate_assignment",
        method="POST",
        url=f"/assignments/{assignment_id}/delegate",
        token=app.tokens.user(ASSIGNEE, oid=ASSIGNEE_OID),
        json_body={"toUpn": upn},
        route_params={"id": assignment_id},
    )


def run(app: FunctionCaller, label: str, n: int, delegate_to: Callable[[int], str]) -> None:
    calls = [partial(delegation, app, new_assignment(app), delegate_to(i)) for i in range(n)]
    measure(app, label, calls, expect=201)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="delegations per run (default 200)")
    n = parser.parse_args().n

    with function_app() as app:
        new_assignment(app)  # warm up: containers, JWKS, connections
        fresh = [add_user(app) for _ in range(n)]
        run(app, "directory cache miss (new users)", n, lambda i: fresh[i])
        repeated = add_user(app)
        run(app, "directory cache hit (one user)", n, lambda _i: repeated)


if __name__ == "__main__":
    main()
