"""Benchmark the request path against the bare SDK calls it makes: what the service adds on top of Cosmos.

Starts its own services (bench.harness: the patched Cosmos emulator, Azurite, a JWKS server on 127.0.0.1) and
alternates, request by request, each route with the bare calls it makes through the service's own Cosmos
client (`runtime.assignments_container`: the same ContainerProxy, pipeline and transport), on equivalent
documents, so that both see the same load:

    GET /assignments/{id}            read_item of the same document
    POST /assignments                create_item of an equivalent document (the directory lookup is a cache
                                     hit; no Idempotency-Key)
    POST /assignments/{id}/delegate  read_item, then the two-operation execute_item_batch (conditional
                                     replace of the original, create of the successor)
    POST .../txn/assign              read_item, then a conditional replace_item

Each delegation and assignment needs an assignment or task of its own; they are all created before anything
is timed. Every route is called with one token, seen before, as a client sends it.

    .venv/bin/python -m bench.bench_hotpath [--n 2000] [--writes 500] [--tokens 2000] [--profile 1000]

For each route it prints p50/p99 of the call through `FunctionCaller` (the test caller), of the registered
function alone (the app: what the Functions host would invoke), and of the bare calls, then the differences
between the app and the bare calls; and the Cosmos round trips of each call (`runtime.round_trips`). Then
token validation, first-seen and repeated, beside a bare `jwt.decode` of the same token (bench.bench_auth).
With `--profile N`, it then profiles N more GETs and creates and lists where the app's own time goes.

These machines are shared and drift by 2x or more between runs: compare within one run. Figures only,
no assertions.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import platform
import pstats
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from azure.core import MatchConditions

from bench.bench_auth import measure_validation, percentiles, print_comparison
from bench.harness import function_app, round_trip_counts
from core.auth import JwksCache
from core.models import partition_key_of
from localhost.caller import TEST_TENANT, FunctionCaller, Response
from localhost.scenarios import (
    ASSIGNEE,
    ORIGINATOR,
    assign,
    create,
    delegate,
    get,
    known_user,
    new_assignment,
    new_body,
    new_task,
    stored_doc,
)

TARGETS_MS = {"GET /assignments/{id}": 0.5, "POST /assignments": 0.9}
REPEATED_TOKEN_TARGET = 0.1
DELEGATE_TO = "hotpath-delegate@contoso.com"


class TimedFunction:
    """Stands in for one registered function in `FunctionCaller.functions` and times the function alone,
    without the caller's building of the request and reading of the response."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.last_ms = 0.0

    def call(self, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.inner.call(**kwargs)
        finally:
            self.last_ms = (time.perf_counter() - started) * 1000


def timed(app: FunctionCaller, function_name: str) -> TimedFunction:
    current = app.functions[function_name]
    if isinstance(current, TimedFunction):
        return current
    wrapper = TimedFunction(current)
    app.functions[function_name] = wrapper  # type: ignore[assignment]
    return wrapper


class SdkClock:
    """Times the container's calls (the SDK: pipeline, transport, network, emulator) while `running`, by
    wrapping the methods the routes and the bare calls use on the one ContainerProxy they share; both
    sides go through the same wrappers."""

    METHODS = ("read_item", "create_item", "replace_item", "execute_item_batch")

    def __init__(self, container: Any) -> None:
        self.running = False
        self.spent_ms = 0.0
        for name in self.METHODS:
            setattr(container, name, self._timing(getattr(container, name)))

    def _timing(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                if self.running:
                    self.spent_ms += (time.perf_counter() - started) * 1000

        return call

    def start(self) -> None:
        self.running, self.spent_ms = True, 0.0

    def stop(self) -> float:
        self.running = False
        return self.spent_ms


_clocks: dict[int, SdkClock] = {}


def sdk_clock(app: FunctionCaller) -> SdkClock:
    container = app.runtime.assignments_container
    if id(container) not in _clocks:
        _clocks[id(container)] = SdkClock(container)
    return _clocks[id(container)]


@dataclass
class Series:
    caller_ms: list[float] = field(default_factory=list)
    app_ms: list[float] = field(default_factory=list)
    own_ms: list[float] = field(default_factory=list)
    sdk_ms: list[float] = field(default_factory=list)
    bare_ms: list[float] = field(default_factory=list)
    route_trips: list[int] = field(default_factory=list)
    bare_trips: list[int] = field(default_factory=list)


def alternate(
    app: FunctionCaller,
    function_name: str,
    routes: Sequence[Callable[[], Response]],
    bares: Sequence[Callable[[], object]],
    *,
    expect: int,
    warmup: int,
) -> Series:
    """Call route i and bare i, in turns (which goes first alternates), and time each; the first `warmup`
    pairs are not counted."""
    function = timed(app, function_name)
    clock = sdk_clock(app)
    counter = app.runtime.round_trips
    series = Series()

    def route_step(call: Callable[[], Response], keep: bool) -> None:
        clock.start()
        before, started = counter.count, time.perf_counter()
        response = call()
        elapsed = (time.perf_counter() - started) * 1000
        in_sdk = clock.stop()
        assert response.status == expect, response.body
        if keep:
            series.caller_ms.append(elapsed)
            series.app_ms.append(function.last_ms)
            series.own_ms.append(function.last_ms - in_sdk)
            series.sdk_ms.append(in_sdk)
            series.route_trips.append(counter.count - before)

    def bare_step(call: Callable[[], object], keep: bool) -> None:
        before, started = counter.count, time.perf_counter()
        call()
        elapsed = (time.perf_counter() - started) * 1000
        if keep:
            series.bare_ms.append(elapsed)
            series.bare_trips.append(counter.count - before)

    gc.collect()
    for i, (route, bare) in enumerate(zip(routes, bares, strict=True)):
        keep = i >= warmup
        if i % 2:
            bare_step(bare, keep)
            route_step(route, keep)
        else:
            route_step(route, keep)
            bare_step(bare, keep)
    return series


def report(label: str, bare_label: str, series: Series) -> None:
    caller50, caller99 = percentiles(series.caller_ms)
    app50, app99 = percentiles(series.app_ms)
    bare50, bare99 = percentiles(series.bare_ms)
    own50, own99 = percentiles(series.own_ms)
    sdk50, sdk99 = percentiles(series.sdk_ms)
    n = len(series.app_ms)
    print(f"{label}   n={n}")
    print(f"  route via FunctionCaller        p50 {caller50:6.2f} ms  p99 {caller99:6.2f} ms")
    print(
        f"  route, the function alone       p50 {app50:6.2f} ms  p99 {app99:6.2f} ms  "
        f"round trips/call {round_trip_counts(series.route_trips)}"
    )
    print(f"    of which in its container calls p50 {sdk50:6.2f} ms  p99 {sdk99:6.2f} ms")
    print(f"    of which outside them (the app) p50 {own50:6.2f} ms  p99 {own99:6.2f} ms")
    print(
        f"  bare {bare_label:<26} p50 {bare50:6.2f} ms  p99 {bare99:6.2f} ms  "
        f"round trips/call {round_trip_counts(series.bare_trips)}"
    )
    print(
        f"  function - bare                 p50 {app50 - bare50:+6.2f} ms  p99 {app99 - bare99:+6.2f} ms  "
        f"(x{app50 / bare50:.2f} at p50; the test caller adds {caller50 - app50:.2f} ms more)"
    )
    target = TARGETS_MS.get(label)
    if target is not None:
        verdict = "met" if app50 - bare50 <= target else "NOT met"
        print(f"  target: within {target} ms of the bare calls at p50: {app50 - bare50:+.2f} ms, {verdict}")
    print()


# --- equivalent documents ------------------------------------------------------------------------------


def cosmos_body(app: FunctionCaller, assignment_id: str) -> dict[str, Any]:
    """The stored document, as the service writes it (`to_cosmos`: no system properties)."""
    return stored_doc(app, assignment_id).to_cosmos()


def renamed(template: dict[str, Any], old_id: str, new_id: str) -> dict[str, Any]:
    """The template with every mention of one root id (id, pk, outbox event ids, successor ids) replaced by
    another of the same length, so the body is the same size."""
    assert len(old_id) == len(new_id)
    renamed_body: dict[str, Any] = json.loads(json.dumps(template).replace(old_id, new_id))
    return renamed_body


# --- the four routes -----------------------------------------------------------------------------------


def bench_get(app: FunctionCaller, token: str, n: int, warmup: int) -> None:
    assignment_id = new_assignment(app)["id"]
    container = app.runtime.assignments_container
    pk = partition_key_of(TEST_TENANT, assignment_id)
    route = partial(get, app, assignment_id, token)
    bare = partial(container.read_item, assignment_id, partition_key=pk)
    series = alternate(app, "get_assignment", [route] * (n + warmup), [bare] * (n + warmup), expect=200, warmup=warmup)
    report("GET /assignments/{id}", "read_item", series)


def bench_create(app: FunctionCaller, token: str, n: int, warmup: int) -> None:
    body = new_body()
    first = create(app, body, token=token)  # registers the assignee and fills the directory cache
    assert first.status == 201, first.body
    template_id = first.json()["id"]
    template = cosmos_body(app, template_id)
    container = app.runtime.assignments_container
    bodies = [renamed(template, template_id, uuid.uuid4().hex) for _ in range(n + warmup)]
    route = partial(create, app, body, token=token, register=False)
    bares = [partial(container.create_item, document) for document in bodies]
    series = alternate(app, "create_assignment", [route] * (n + warmup), bares, expect=201, warmup=warmup)
    report("POST /assignments", "create_item", series)


def bench_delegate(app: FunctionCaller, n: int, warmup: int) -> None:
    token = app.tokens.user(ASSIGNEE)
    known_user(app, DELEGATE_TO)
    container = app.runtime.assignments_container
    # A first delegation through the route: fills the directory cache and gives the documents it writes.
    template_id = new_assignment(app)["id"]
    response = delegate(app, template_id, {"toUpn": DELEGATE_TO}, token=token)
    assert response.status == 201, response.body
    original, successor = cosmos_body(app, template_id), cosmos_body(app, response.json()["id"])

    count = n + warmup
    print(f"preparing {2 * count} assignments for delegate ...", flush=True)
    route_ids = [new_assignment(app)["id"] for _ in range(count)]
    bare_ids = [new_assignment(app)["id"] for _ in range(count)]

    def bare_delegate(assignment_id: str, new_original: dict[str, Any], new_successor: dict[str, Any]) -> None:
        pk = partition_key_of(TEST_TENANT, assignment_id)
        read = container.read_item(assignment_id, partition_key=pk)
        operations: list[Any] = [
            ("replace", (assignment_id, new_original), {"if_match_etag": read["_etag"]}),
            ("create", (new_successor,)),
        ]
        container.execute_item_batch(operations, partition_key=pk)

    routes = [partial(delegate, app, i, {"toUpn": DELEGATE_TO}, token=token) for i in route_ids]
    bares = [
        partial(bare_delegate, i, renamed(original, template_id, i), renamed(successor, template_id, i))
        for i in bare_ids
    ]
    series = alternate(app, "delegate_assignment", routes, bares, expect=201, warmup=warmup)
    report("POST /assignments/{id}/delegate", "read + batch(2)", series)


def bench_assign(app: FunctionCaller, n: int, warmup: int) -> None:
    token = app.tokens.user(ORIGINATOR)
    user_key = known_user(app, "hotpath-assignee@contoso.com").user_key
    container = app.runtime.assignments_container
    template_id = new_task(app)["id"]
    response = assign(app, template_id, user_key, token=token)
    assert response.status == 200, response.body
    assigned = cosmos_body(app, template_id)

    count = n + warmup
    print(f"preparing {2 * count} tasks for txn assign ...", flush=True)
    route_ids = [new_task(app)["id"] for _ in range(count)]
    bare_ids = [new_task(app)["id"] for _ in range(count)]

    def bare_assign(task_id: str, body: dict[str, Any]) -> None:
        pk = partition_key_of(TEST_TENANT, task_id)
        read = container.read_item(task_id, partition_key=pk)
        container.replace_item(task_id, body, etag=read["_etag"], match_condition=MatchConditions.IfNotModified)

    routes = [partial(assign, app, i, user_key, token=token) for i in route_ids]
    bares = [partial(bare_assign, i, renamed(assigned, template_id, i)) for i in bare_ids]
    series = alternate(app, "txn_assign", routes, bares, expect=200, warmup=warmup)
    report("POST .../txn/assign", "read + replace", series)


# --- token validation ----------------------------------------------------------------------------------


def bench_tokens(app: FunctionCaller, n: int, warmup: int) -> None:
    """The service's own validator (cache and all) beside `jwt.decode` with the same key and options."""
    settings = app.runtime.settings
    factory = app.tokens.factory
    validator = app.runtime.token_validator
    jwks = JwksCache(settings.auth_jwks_uri)
    try:
        figures = measure_validation(validator, jwks, factory, list(settings.auth_audiences), n=n, warmup=warmup)
    finally:
        jwks.close()
    print(f"token validation (runtime.token_validator), n={n} each, alternating, in microseconds")
    print_comparison(figures)
    ratio = figures["repeated"][0] / figures["bare, repeated"][0]
    verdict = "met" if ratio < REPEATED_TOKEN_TARGET else "NOT met"
    print(f"target: repeated / bare decode under {REPEATED_TOKEN_TARGET} at p50: {ratio:.3f}, {verdict}\n")


# --- where the app's time goes -------------------------------------------------------------------------

# Whose code a profiled function is, by its file. The app's own files count as the app's except where the SDK
# calls them (the round-trip counter, the transport's session: they run inside the container calls, for the
# bare calls too); what matches none (the standard library, pydantic, ...) belongs to whoever called it, in
# proportion to the time each caller spent in it.
_SDK = ("/azure/cosmos/", "/azure/core/", "/requests/", "/urllib3/", "/http/client.py", "/socket.py", "/email/")
_CALLER = ("/localhost/", "/azure/functions/", "/bench/")
_APP = ("/core/", "/triggers/", "function_app.py")

Func = tuple[str, int, str]


def _file_owner(function: Func) -> str | None:
    path = function[0]
    if "site-packages" not in path and any(part in path for part in _APP):
        return "app"
    if any(part in path for part in _SDK):
        return "sdk"
    if any(part in path for part in _CALLER):
        return "caller"
    return None


def app_costs(stats: pstats.Stats, calls: int, top: int) -> None:
    """Print the functions whose own time the app spends, outside the SDK, the network and the test caller."""
    table: dict[Func, Any] = stats.stats  # type: ignore[attr-defined]
    memo: dict[Func, float] = {}

    def app_share(function: Func) -> float:
        """The fraction of this function's time spent on the app's behalf, outside the SDK."""
        owner = _file_owner(function)
        if owner in ("sdk", "caller"):
            return 0.0
        if function in memo:
            return memo[function]
        memo[function] = 0.0  # recursion guard
        _cc, _nc, _tt, cumulative, callers = table[function]
        if not callers or cumulative <= 0:
            share = 1.0 if owner == "app" else 0.0
        else:
            share = 0.0
            for caller, edge in callers.items():
                caller_owner = _file_owner(caller)
                # The test caller calls into the app: what it calls in the app's files is the app's.
                caller_share = (1.0 if owner == "app" else 0.0) if caller_owner == "caller" else app_share(caller)
                share += edge[3] / cumulative * caller_share
        memo[function] = min(share, 1.0)
        return memo[function]

    rows = []
    iterations = lookups = 0
    for function, (_cc, ncalls, own, _cum, _callers) in table.items():
        if function[0] == "<frozen os>" and function[2] == "__iter__":
            iterations += ncalls
        if function[0] == "<frozen os>" and function[2] == "__getitem__":
            lookups += ncalls
        share = app_share(function)
        if share > 0:
            rows.append((own * share, ncalls * share, function))
    rows.sort(reverse=True)
    total = sum(own for own, _n, _f in rows)
    print(f"  the app's own time: {total / calls * 1e6:7.1f} us/call (profiled: cProfile inflates it several times)")
    for own, ncalls, (path, line, name) in rows[:top]:
        where = path.split("/site-packages/")[-1]
        print(f"    {own / calls * 1e6:7.1f} us/call  {ncalls / calls:5.1f} calls/call  {name}  ({where}:{line})")
    print(
        f"  os.environ, by anyone: {iterations / calls:.1f} iterations over it and {lookups / calls:.1f} keyed reads"
        " per call\n"
    )


def profile_routes(app: FunctionCaller, token: str, n: int, top: int = 15) -> None:
    assignment_id = new_assignment(app)["id"]
    body = new_body()
    for label, call in (
        ("GET /assignments/{id}", partial(get, app, assignment_id, token)),
        ("POST /assignments", partial(create, app, body, token=token, register=False)),
    ):
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(n):
            call()
        profiler.disable()
        print(f"profile of {label}, n={n}: top costs outside the SDK, the network and the test caller")
        app_costs(pstats.Stats(profiler), n, top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="GETs and creates measured (default 2000)")
    parser.add_argument("--writes", type=int, default=500, help="delegations and txn assigns measured (default 500)")
    parser.add_argument("--tokens", type=int, default=2000, help="token validations measured (default 2000)")
    parser.add_argument("--warmup", type=int, default=100, help="rounds not counted, per series (default 100)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="then profile N GETs and N creates")
    parser.add_argument("--only", choices=["get", "create", "delegate", "assign", "tokens"], action="append")
    args = parser.parse_args()
    only = set(args.only or ["get", "create", "delegate", "assign", "tokens"])
    write_warmup = min(args.warmup, max(10, args.writes // 10))

    with function_app() as app:
        token = app.tokens.user(ORIGINATOR)
        new_assignment(app, assigneeEmail=ASSIGNEE)  # warm up: containers, JWKS, connections, the directory
        print(f"Python {platform.python_version()} on {sys.platform}; warm-up rounds not counted: {args.warmup}\n")
        if "get" in only:
            bench_get(app, token, args.n, args.warmup)
        if "create" in only:
            bench_create(app, token, args.n, args.warmup)
        if "delegate" in only:
            bench_delegate(app, args.writes, write_warmup)
        if "assign" in only:
            bench_assign(app, args.writes, write_warmup)
        if "tokens" in only:
            bench_tokens(app, args.tokens, args.warmup)
        if args.profile:
            profile_routes(app, token, args.profile)


if __name__ == "__main__":
    main()
