"""Benchmark the change feed: projection and notification throughput, and the lag from a write to its views and
to its message.

Starts its own services (bench.harness). Two parts, each on a database and notifications queue of its own:

1. In-process: writes through the registered functions (creates with an assignee, then a reassign of each),
   recorded as the feed would deliver them (`FeedTape`), then handed to `handle_changes` in batches of 100
   (the trigger's `maxItemsPerInvocation`): projected changes/s and Cosmos round trips per projected change,
   for first projections (creates) and for changes of assignee; then the event documents alone: messages/s.
2. Through the local host: function_app's functions with their real feed poller; writes over HTTP at random
   moments, while one client polls the assignee's inbox (GET /assignments) and another the notifications queue.
   Prints p50/p99/max of write → inbox and write → message, with the trigger's `feedPollDelay`.

    .venv/bin/python -m bench.bench_feed [--assignments 300] [--writes 60]

Figures only, no assertions (the goal for the lag: p99 under 1 s locally).
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import requests

from bench.harness import function_app
from core.bootstrap import Runtime, set_runtime
from core.services.projection import handle_changes
from localhost.app_settings import app_settings_of
from localhost.caller import FunctionCaller
from localhost.change_feed import DEFAULT_FEED_POLL_DELAY_MS
from localhost.host import LocalHost
from localhost.indexing import index_app
from localhost.scenarios import (
    FeedTape,
    act,
    create,
    drain_queue,
    known_user,
    new_body,
    notifications_queue,
)

BATCH = 100
ASSIGNEE = "bench-assignee@contoso.com"
OTHER = "bench-other@contoso.com"


def percentiles(values_ms: Sequence[float]) -> str:
    cuts = statistics.quantiles(values_ms, n=100, method="inclusive") if len(values_ms) > 1 else [values_ms[0]] * 99
    return f"p50 {statistics.median(values_ms):7.1f} ms  p99 {cuts[98]:7.1f} ms  max {max(values_ms):7.1f} ms"


def deliver(app: FunctionCaller, label: str, bodies: list[dict[str, Any]], unit: str) -> None:
    """Hand `bodies` to the projector in batches, as the trigger would; print throughput and round trips per
    document of `unit` (projected changes, skipped deliveries or sent messages)."""
    deps = app.runtime.feed_deps()
    before, started = app.runtime.round_trips.count, time.perf_counter()
    counted = {"changes": 0, "skips": 0, "messages": 0}
    failed = 0
    for start in range(0, len(bodies), BATCH):
        result = handle_changes(bodies[start : start + BATCH], deps)
        counted["changes"] += result.projected
        counted["skips"] += result.skipped
        counted["messages"] += result.notified
        failed += len(result.failed)
    elapsed = time.perf_counter() - started
    trips = app.runtime.round_trips.count - before
    done = counted[unit]
    print(
        f"{label:<44} n={len(bodies):<5} {done / elapsed:6.0f} {unit}/s  "
        f"{trips / max(done, 1):5.2f} Cosmos round trips each  (failed {failed})"
    )


def throughput(app: FunctionCaller, assignments: int) -> None:
    known_user(app, ASSIGNEE)
    known_user(app, OTHER)
    tape = FeedTape(app)
    ids = []
    for number in range(assignments):
        response = create(app, new_body(assigneeEmail=ASSIGNEE, targetId=f"bench-{number % 10}"))
        assert response.status == 201, response.body
        ids.append(response.json()["id"])
    created = tape.snap()
    for assignment_id in ids:
        response = act(app, "reassign", assignment_id, {"toUpn": OTHER})
        assert response.status == 200, response.body
    reassigned = tape.snap()

    def of(bodies: list[dict[str, Any]], doc_type: str) -> list[dict[str, Any]]:
        return [body for body in bodies if body["docType"] == doc_type]

    print(f"projection and notification, in-process, batches of {BATCH}")
    deliver(app, "project: creates (first projection)", of(created, "assignment"), "changes")
    deliver(app, "project: reassigns (inbox moves)", of(reassigned, "assignment"), "changes")
    deliver(app, "project: the same versions again", of(created + reassigned, "assignment"), "skips")
    events = of(created + reassigned, "event")
    deliver(app, "notify: events (created/assigned/reassigned)", events, "messages")
    sent = drain_queue(notifications_queue(app))
    print(f"{'':<44} {len(sent)} messages on the queue for {sum(1 for e in events if e['recipients'])} events")


def lag(app: FunctionCaller, writes: int) -> None:
    """Write at random moments over HTTP; find when the inbox lists each write and when its message arrives."""
    app.runtime.store  # noqa: B018 - the monitored container exists before the feed listener opens it
    known_user(app, ASSIGNEE)
    functions = index_app("function_app")
    (feed,) = [f for f in functions if f.name == "project_changes"]
    poll_delay = feed.trigger.get("feedPollDelay") or DEFAULT_FEED_POLL_DELAY_MS
    with LocalHost(functions, app_settings_of(app.runtime.settings), port=0) as host:
        written: dict[str, float] = {}
        in_inbox: dict[str, float] = {}
        in_queue: dict[str, float] = {}
        stop = threading.Event()

        def watch_inbox() -> None:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {app.tokens.user(ASSIGNEE)}"
            while not stop.is_set():
                response = session.get(f"{host.url}/assignments", params={"pageSize": "100"}, timeout=30)
                seen = time.monotonic()
                for item in response.json()["items"]:
                    in_inbox.setdefault(item["id"], seen)
                time.sleep(0.01)

        def watch_queue() -> None:
            queue = notifications_queue(app)
            while not stop.is_set():
                messages = drain_queue(queue)
                seen = time.monotonic()
                for message in messages:
                    if message["type"] == "assigned":
                        in_queue.setdefault(message["assignmentId"], seen)
                if not messages:
                    time.sleep(0.01)

        watchers = [threading.Thread(target=watch_inbox), threading.Thread(target=watch_queue)]
        for watcher in watchers:
            watcher.start()
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {app.tokens.user('bench-originator@contoso.com')}"
        try:
            for _ in range(writes):
                time.sleep(random.uniform(0, 0.5))  # arrive at random points of the poll cycle
                assignment_id = f"lag-{uuid.uuid4().hex}"
                body = {**new_body(assigneeEmail=ASSIGNEE), "id": assignment_id}
                response = session.post(f"{host.url}/assignments", json=body, timeout=30)
                written[assignment_id] = time.monotonic()
                assert response.status_code == 201, response.text
            deadline = time.monotonic() + 60
            while (set(written) - set(in_inbox) or set(written) - set(in_queue)) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            for watcher in watchers:
                watcher.join()
    print(f"lag through the local host (project_changes feedPollDelay={poll_delay} ms), {writes} writes")
    for label, seen in (("write -> assignee's inbox (GET)", in_inbox), ("write -> its message on the queue", in_queue)):
        lags = [(seen[i] - at) * 1000 for i, at in written.items() if i in seen]
        missing = len(written) - len(lags)
        print(f"{label:<44} n={len(lags):<5} {percentiles(lags)}" + (f"  ({missing} never seen)" if missing else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignments", type=int, default=300, help="assignments for throughput (default 300)")
    parser.add_argument("--writes", type=int, default=60, help="writes for the lag (default 60)")
    args = parser.parse_args()

    with function_app() as app:
        lag(app, args.writes)
        suffix = uuid.uuid4().hex[:8]
        update = {"cosmos_database": f"bench-feed-{suffix}", "notifications_queue": f"bench-notify-{suffix}"}
        runtime = Runtime(app.runtime.settings.model_copy(update=update))
        set_runtime(runtime)
        throughput(FunctionCaller(runtime=runtime, tokens=app.tokens), args.assignments)


if __name__ == "__main__":
    main()
