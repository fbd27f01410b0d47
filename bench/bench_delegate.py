"""Benchmark POST /assignments/{id}/delegate: Cosmos round trips and latency per delegation.

Starts its own services (the patched Cosmos emulator, Azurite, a JWKS server) on 127.0.0.1, ignores any
settings in the environment, and drives the registered function with real signed tokens, as the tests do.

    .venv/bin/python -m bench.bench_delegate [--n 200]

Two runs of N delegations each: to N different users (every directory lookup misses the cache), then to
one user (every lookup after the first is a cache hit).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from bench.harness import function_app, measure, parse_n
from localhost.caller import FunctionCaller
from localhost.scenarios import add_user, delegate, new_assignment


def run(app: FunctionCaller, label: str, n: int, delegate_to: Callable[[int], str]) -> None:
    calls = [partial(delegate, app, new_assignment(app)["id"], {"toUpn": delegate_to(i)}) for i in range(n)]
    measure(app, label, calls, expect=201)


def main() -> None:
    n = parse_n(__doc__, "delegations")

    with function_app() as app:
        new_assignment(app)  # warm up: containers, JWKS, connections
        fresh = [add_user(app)[1] for _ in range(n)]
        run(app, "directory cache miss (new users)", n, lambda i: fresh[i])
        _, repeated = add_user(app)
        run(app, "directory cache hit (one user)", n, lambda _i: repeated)


if __name__ == "__main__":
    main()
