"""Benchmark the timer's sweep: Cosmos round trips, due-index entries read and duration, with 1,000 and with
100,000 assignments stored, the same 100 of them due each time.

Starts its own services (the patched Cosmos emulator, Azurite) on 127.0.0.1 and ignores any settings in the
environment. Each size gets a database of its own. The assignments that will fall due are created through the
store, each with its events in one batch (as create writes it); the rest are upserted alone (no events: nothing
reads them) by `--processes` processes, since the emulator's batches cost in proportion to what the container
holds. Each due-index entry is computed by the projector's own function (`view_entries`) and upserted in batches
by bucket. Each process writes with `--threads` threads. The other views are not written (the sweep never reads
them).

    .venv/bin/python -m bench.bench_sweep [--sizes 1000 100000] [--repeats 5] [--threads 8] [--processes 3]

Every assignment but the due ones has its next action spread over the next 30 days (the current hour included),
so the due index holds one entry per assignment. Each measured sweep starts from a cursor six hours back, so it
crosses six elapsed, empty hours before the current one, where 100 actions are due: 50 expiries and 50
reminders. Between sweeps the acted-on entries are moved on as the projector would (not measured), and the next
100 become due. The sweep's cost should follow what is due and the hours crossed, not what is stored.

Duration is split into the time spent in the due index (views container: bucket queries and counts) and in the
assignments (point reads and conditional batch writes), to show where any growth comes from.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from core import aggregate
from core.aggregate import Context, Decision
from core.auth import SCOPE_READ_WRITE, Principal
from core.bootstrap import Runtime
from core.directory import DirectoryUser
from core.models import AssignmentDocument, CreateRequest
from core.projections import ViewKind, due_bucket, due_pk, view_entries
from core.services.pipeline import parse_model
from core.services.sweep import sweep
from core.store import AssignmentStore, SweepState, ViewStore
from core.timer_rules import ReminderPolicy
from localhost.dev_signer import JwksServer
from localhost.scenarios import iso
from localhost.services import start_azurite, start_cosmos
from localhost.stack import IsolatedSettings, make_settings

T = TypeVar("T")
TENANT = "bench-tenant"
T0 = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)  # the seeding clock
DUE_PER_SWEEP = 100
ELAPSED_HOURS = 6
FIRST_SWEEP = T0 + timedelta(minutes=10)
SWEEP_EVERY = timedelta(minutes=5)
# Every sweep falls in T0's hour, so at most this many (the warm-up included); the rest is due from the next slot.
MAX_SWEEPS = 8
FUTURE_FROM, FUTURE_SPAN = FIRST_SWEEP + MAX_SWEEPS * SWEEP_EVERY, timedelta(days=30)
ORIGINATOR = Principal(
    oid="key-bench-originator", tid=TENANT, upn="olivia@bench.contoso.com", scopes=frozenset({SCOPE_READ_WRITE})
)
ASSIGNEE = DirectoryUser(
    user_key="key-bench-assignee", upn="adam@bench.contoso.com", display_name=None, account_enabled=True
)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Timed:
    """A store (or view store) whose calls are timed, to split a sweep's duration between containers."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.seconds = 0.0
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed


@dataclasses.dataclass
class Figures:
    round_trips: int
    read: int
    buckets: int
    acted: int
    seconds: float
    views_seconds: float
    store_seconds: float
    calls: str


# --- seeding ------------------------------------------------------------------------------------------------


def _body(index: int, size: int, sweeps: int) -> dict[str, Any]:
    """Create's body for assignment `index`: the first 100 x sweeps are due one hundred per sweep (half expire,
    half get their before-due reminder); the rest have their next action spread over the next 30 days."""
    body: dict[str, Any] = {
        "id": f"bench-{index:06d}",
        "targetType": "chat",
        "targetId": f"chat-{index % 97}",
        "assigneeEmail": ASSIGNEE.upn,
        "completionCriteria": "chat_visited",
    }
    due_ones = DUE_PER_SWEEP * sweeps
    if index < due_ones:
        sweep_at = FIRST_SWEEP + (index // DUE_PER_SWEEP) * SWEEP_EVERY
        if index % 2:
            body["expiresAt"] = iso(sweep_at - timedelta(minutes=1))
        else:
            body["dueAt"] = iso(sweep_at - timedelta(minutes=1) + timedelta(hours=24))  # lead 24 h
        return body
    offset = FUTURE_SPAN * (index - due_ones) / max(1, size - due_ones)
    body["dueAt"] = iso(FUTURE_FROM + offset + timedelta(hours=24))
    return body


def _decide(index: int, size: int, sweeps: int) -> Decision:
    """What create decides for assignment `index` (the document and its `created` and `assigned` events)."""
    request = parse_model(CreateRequest, _body(index, size, sweeps))
    ctx = Context(principal=ORIGINATOR, now=T0, user=ASSIGNEE, user_resolved=True)
    return aggregate.create(
        request,
        ctx,
        assignment_id=str(request.id),
        originator_email=str(ORIGINATOR.upn),
        originator_user_key=ORIGINATOR.oid,
    )


def _due_entry(document: AssignmentDocument, policy: ReminderPolicy) -> tuple[str, dict[str, Any]]:
    """The due-index entry the projector files for the document, by its own function."""
    (entry,) = (e for e in view_entries(document, policy, now=T0) if e.body["kind"] == ViewKind.DUE)
    return entry.key.pk, entry.body


def _concurrently(threads: int, work: Callable[[T], None], items: Iterable[T]) -> None:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(work, items):
            pass


def _file_due_entries(runtime: Runtime, entries: list[tuple[str, dict[str, Any]]], threads: int) -> None:
    """Upsert due-index entries a bucket at a time: one transactional batch per bucket and 100 entries."""
    by_bucket: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for pk, body in entries:
        by_bucket[pk].append(body)
    chunks = [(pk, bodies[i : i + 100]) for pk, bodies in by_bucket.items() for i in range(0, len(bodies), 100)]
    container = runtime.views_container

    def upsert(chunk: tuple[str, list[dict[str, Any]]]) -> None:
        pk, bodies = chunk
        container.execute_item_batch([("upsert", (body,)) for body in bodies], partition_key=pk)

    _concurrently(threads, upsert, chunks)


def _seed_slice(settings_fields: dict[str, Any], indices: range, size: int, sweeps: int, threads: int) -> None:
    """One seeding process: assignments `indices` upserted (no events: nothing reads them), then their
    due-index entries, bucket by bucket."""
    runtime = Runtime(IsolatedSettings(**settings_fields))
    container = runtime.assignments_container
    entries: list[tuple[str, dict[str, Any]]] = []

    def write(index: int) -> None:
        document = _decide(index, size, sweeps).document
        assert document is not None
        container.upsert_item(document.to_cosmos())
        entries.append(_due_entry(document, runtime.policy))

    _concurrently(threads, write, indices)
    _file_due_entries(runtime, entries, threads)


def seed(runtime: Runtime, size: int, sweeps: int, *, processes: int, threads: int) -> float:
    """The due ones through the store as create writes them (the document and its events in one batch), the
    rest by concurrent upserts from several processes (the emulator's batches cost in proportion to what the
    container holds, so 100,000 batches would take most of an hour); every due-index entry as the projector
    files it."""
    started = time.perf_counter()
    due_ones = min(size, DUE_PER_SWEEP * sweeps)
    due_entries: list[tuple[str, dict[str, Any]]] = []

    def create(index: int) -> None:
        due_entries.append(_due_entry(runtime.store.create(_decide(index, size, sweeps)), runtime.policy))

    _concurrently(threads, create, range(due_ones))
    _file_due_entries(runtime, due_entries, threads)
    context = multiprocessing.get_context("spawn")
    fields = runtime.settings.model_dump()
    workers = [
        context.Process(target=_seed_slice, args=(fields, range(due_ones + k, size, processes), size, sweeps, threads))
        for k in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
        assert worker.exitcode == 0, "a seeding process failed"
    return time.perf_counter() - started


# --- sweeping -----------------------------------------------------------------------------------------------


def _move_on(runtime: Runtime, acted: list[str]) -> None:
    """What the projector does after a sweep, for the assignments it acted on: each due entry is replaced by the
    one the assignment implies now (none once expired)."""
    views = runtime.views
    for assignment_id in acted:
        document = runtime.store.read(TENANT, assignment_id)
        assert document is not None
        views.delete(due_pk(due_bucket(T0)), f"{TENANT}|{assignment_id}")
        for entry in view_entries(document, runtime.policy, now=runtime.clock()):
            if entry.body["kind"] == ViewKind.DUE:
                views.upsert(entry.key.pk, entry.body)


def sweep_once(runtime: Runtime, clock: Clock, number: int) -> Figures:
    clock.now = FIRST_SWEEP + number * SWEEP_EVERY
    state = runtime.views.read_sweep_state()
    runtime.views.save_sweep_state(
        SweepState(cursor=due_bucket(T0 - timedelta(hours=ELAPSED_HOURS)), etag=state.etag if state else None)
    )
    views, store = Timed(runtime.views), Timed(runtime.store)
    deps = dataclasses.replace(runtime.sweep_deps(), views=cast(ViewStore, views), store=cast(AssignmentStore, store))
    before, started = runtime.round_trips.count, time.perf_counter()
    result = sweep(deps)
    seconds = time.perf_counter() - started
    trips = runtime.round_trips.count - before
    acted = result.expired + result.reminded + result.expiring
    assert (result.expired, result.reminded, result.remaining) == (50, 50, 0), result
    first = number * DUE_PER_SWEEP
    _move_on(runtime, [f"bench-{index:06d}" for index in range(first, first + DUE_PER_SWEEP)])
    calls = ", ".join(f"{name} {count}" for name, count in sorted((views.calls + store.calls).items()))
    return Figures(trips, result.read, result.buckets, acted, seconds, views.seconds, store.seconds, calls)


def calibrate(runtime: Runtime, samples: int = 21) -> dict[str, float]:
    """The emulator's own cost of the three kinds of request a sweep makes, outside any sweep (median ms): a
    point read, a query of one empty partition, and a one-operation transactional batch."""
    container, views = runtime.assignments_container, runtime.views
    probe = {"id": "probe", "pk": "bench-probe", "docType": "probe"}
    kinds: dict[str, Callable[[], object]] = {
        "point read (assignments)": lambda: runtime.store.read(TENANT, "bench-000000"),
        "query, empty partition (views)": lambda: views.count("due|empty"),
        "batch of one upsert (assignments)": lambda: container.execute_item_batch(
            [("upsert", (probe,))], partition_key="bench-probe"
        ),
    }
    figures = {}
    for name, request in kinds.items():
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            request()
            times.append(time.perf_counter() - started)
        figures[name] = statistics.median(times) * 1000
    return figures


# --- the report ---------------------------------------------------------------------------------------------


def _median(figures: list[Figures], name: str) -> float:
    return float(statistics.median(getattr(f, name) for f in figures))


ROWS = (
    ("Cosmos round trips", "round_trips", "{:.0f}"),
    ("due-index entries read", "read", "{:.0f}"),
    ("hourly buckets crossed", "buckets", "{:.0f}"),
    ("actions taken", "acted", "{:.0f}"),
    ("duration, ms", "seconds", "{:.0f}"),
    ("  in the due index (views), ms", "views_seconds", "{:.0f}"),
    ("  in the assignments, ms", "store_seconds", "{:.0f}"),
)


def report(results: dict[int, list[Figures]], calibration: dict[int, dict[str, float]]) -> None:
    sizes = sorted(results)
    scale = {"seconds": 1000.0, "views_seconds": 1000.0, "store_seconds": 1000.0}
    header = f"{'per sweep (median)':<32}" + "".join(f"{f'{size:,} stored':>16}" for size in sizes)
    if len(sizes) == 2:
        header += f"{'ratio':>10}"
    print(header)
    for label, name, fmt in ROWS:
        values = [_median(results[size], name) * scale.get(name, 1.0) for size in sizes]
        line = f"{label:<32}" + "".join(f"{fmt.format(value):>16}" for value in values)
        if len(sizes) == 2:
            line += f"{values[1] / values[0]:>10.2f}" if values[0] else f"{'-':>10}"
        print(line)
    print()
    print(f"{'the emulator, per request (median)':<40}" + "".join(f"{f'{size:,} stored':>16}" for size in sizes))
    for name in calibration[sizes[0]]:
        print(f"{name + ', ms':<40}" + "".join(f"{calibration[size][name]:>16.1f}" for size in sizes))
    print()
    print("the calls each sweep made (views: due, count, sweep state; assignments: read, write):")
    for size in sizes:
        print(f"  {size:,}: " + " | ".join(sorted({f.calls for f in results[size]})))
    print()
    print("each sweep:")
    for size in sizes:
        each = ", ".join(f"{f.round_trips} trips / {f.read} read / {f.seconds * 1000:.0f} ms" for f in results[size])
        print(f"  {size:,}: {each}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000], help="assignments stored")
    parser.add_argument("--repeats", type=int, default=5, help="measured sweeps per size (default 5, at most 7)")
    parser.add_argument("--threads", type=int, default=8, help="writer threads per seeding process (default 8)")
    parser.add_argument("--processes", type=int, default=3, help="seeding processes (default 3)")
    args = parser.parse_args()
    sweeps = args.repeats + 1  # and a warm-up
    assert sweeps <= MAX_SWEEPS, f"at most {MAX_SWEEPS - 1} repeats"

    cosmos, azurite = start_cosmos(), start_azurite()
    jwks = JwksServer([])
    stacks: dict[int, tuple[Runtime, Clock]] = {}
    results: dict[int, list[Figures]] = {size: [] for size in args.sizes}
    calibrations: dict[int, list[dict[str, float]]] = {size: [] for size in args.sizes}
    try:
        for size in args.sizes:
            clock = Clock(T0)
            settings = make_settings(cosmos, azurite, jwks, EXPIRY_WARNING_HOURS=0, REMINDER_LEAD_HOURS=24)
            runtime = Runtime(settings, clock=clock)
            runtime.store.ping()
            seconds = seed(runtime, size, sweeps, processes=args.processes, threads=args.threads)
            print(
                f"seeded {size:,} assignments and their due-index entries in {seconds:.1f} s ({size / seconds:,.0f}/s)"
            )
            stacks[size] = (runtime, clock)
        for runtime, clock in stacks.values():
            sweep_once(runtime, clock, 0)  # warm up: connections, query plans (its 100 are then moved on)
        # The sizes take turns, so that both see the same load on a shared machine.
        for number in range(1, sweeps):
            for size, (runtime, clock) in stacks.items():
                results[size].append(sweep_once(runtime, clock, number))
                calibrations[size].append(calibrate(runtime, samples=5))
    finally:
        jwks.stop()
        cosmos.stop()
        azurite.stop()
    calibration = {
        size: {name: statistics.median(c[name] for c in rounds) for name in rounds[0]}
        for size, rounds in calibrations.items()
    }
    print()
    report(results, calibration)


if __name__ == "__main__":
    main()
