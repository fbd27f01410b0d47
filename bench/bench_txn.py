"""Benchmark POST /workspaces/secure/api/v1/txn/assign and /unassign: Cosmos round trips and latency.

Starts its own services (the patched Cosmos emulator, Azurite, a JWKS server) on 127.0.0.1, ignores any
settings in the environment, and drives the registered functions with real signed tokens, as the tests do.

    .venv/bin/python -m bench.bench_txn [--n 200]

Three runs over N unassigned tasks: assign each to a different user (every directory lookup misses the
cache), unassign each, then assign each to one user (every lookup after the first is a cache hit).
"""

from __future__ import annotations

from functools import partial

from bench.harness import function_app, measure, parse_n
from localhost.scenarios import assign, new_task, new_user, unassign


def main() -> None:
    n = parse_n(__doc__, "tasks")

    with function_app() as app:
        new_task(app)  # warm up: containers, JWKS, connections
        tasks = [new_task(app)["id"] for _ in range(n)]
        fresh = [new_user(app).user_key for _ in range(n)]
        assign_fresh = [partial(assign, app, t, u) for t, u in zip(tasks, fresh, strict=True)]
        measure(app, "assign, directory cache miss", assign_fresh, expect=200)
        measure(app, "unassign", [partial(unassign, app, t) for t in tasks], expect=200)
        repeated = new_user(app).user_key
        measure(
            app,
            "assign, directory cache hit (one user)",
            [partial(assign, app, t, repeated) for t in tasks],
            expect=200,
        )


if __name__ == "__main__":
    main()
