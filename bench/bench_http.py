"""Benchmark the local host over HTTP: throughput and latency of two routes, and change-feed lag.

Starts its own services (bench.harness), then the local host on a free port with function_app.py's functions
plus the test-only change-feed function `feed_probe` (localhost/probe_app.py), and drives it with
real signed tokens over keep-alive connections.

    .venv/bin/python -m bench.bench_http [--n 1000] [--concurrency 8] [--writes 100]

Prints, for GET /assignments/{id} and POST /assignments: requests/s and p50/p99 latency, one client and
`--concurrency` clients; then the lag from a write's response to the change-feed function's call. Figures only,
no assertions.
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests

from bench.harness import function_app
from localhost.app_settings import app_settings_of
from localhost.host import LocalHost
from localhost.indexing import index_app
from localhost.probe_app import FEED, FEED_POLL_DELAY_MS

ORIGINATOR = "bench-originator@contoso.com"
ASSIGNEE = "bench-assignee@contoso.com"


def assignment_body(assignment_id: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {
        "targetType": "chat",
        "targetId": "bench",
        "assigneeEmail": ASSIGNEE,
        "completionCriteria": "chat_visited",
    }
    if assignment_id:
        body["id"] = assignment_id
    return body


Request = Callable[[requests.Session], requests.Response]


def drive(label: str, request: Request, *, n: int, concurrency: int, expect: int) -> None:
    """Send `n` requests from `concurrency` clients, each on its own keep-alive connection; print the figures."""
    latencies_ms: list[float] = []
    lock = threading.Lock()
    per_client = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]

    def client(count: int) -> None:
        session = requests.Session()
        mine: list[float] = []
        for _ in range(count):
            started = time.perf_counter()
            response = request(session)
            mine.append((time.perf_counter() - started) * 1000)
            assert response.status_code == expect, response.text
        with lock:
            latencies_ms.extend(mine)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, per_client))
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies_ms, n=100)
    print(
        f"{label:<34} clients={concurrency:<3} n={n:<6} {n / elapsed:8.0f} req/s  "
        f"p50 {statistics.median(latencies_ms):6.2f} ms  p99 {cuts[98]:6.2f} ms"
    )


def change_feed_lag(url: str, headers: dict[str, str], writes: int) -> None:
    """Write, note when the response arrived, and find when `feed_probe` received that document."""
    session = requests.Session()
    written: dict[str, float] = {}
    for _ in range(writes):
        time.sleep(random.uniform(0, 0.1))  # arrive at random points of the poll cycle
        assignment_id = f"lag-{uuid.uuid4().hex}"
        response = session.post(f"{url}/assignments", json=assignment_body(assignment_id), headers=headers)
        written[assignment_id] = time.monotonic()
        assert response.status_code == 201, response.text

    def received(entries: list[tuple[float, list[dict[str, object]]]]) -> dict[str, float]:
        seen = {str(d["id"]): at for at, batch in entries for d in batch if d["id"] in written}
        return seen if len(seen) == len(written) else {}

    seen = FEED.wait_for(received, timeout=30)
    lags_ms = [(seen[assignment_id] - at) * 1000 for assignment_id, at in written.items()]
    cuts = statistics.quantiles(lags_ms, n=100)
    print(
        f"{'write -> change-feed call':<34} feedPollDelay={FEED_POLL_DELAY_MS} ms  n={writes:<4} "
        f"p50 {statistics.median(lags_ms):6.1f} ms  p99 {cuts[98]:6.1f} ms  max {max(lags_ms):6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="requests per measurement (default 1000)")
    parser.add_argument("--concurrency", type=int, default=8, help="clients of the concurrent runs (default 8)")
    parser.add_argument("--writes", type=int, default=100, help="writes for the change-feed lag (default 100)")
    args = parser.parse_args()

    with function_app() as app:
        app.runtime.store  # noqa: B018 - the containers must exist before the change-feed listener starts
        settings = {**app_settings_of(app.runtime.settings), "FEED_PROBE_QUEUE": "bench-feed-probe"}
        probe = [f for f in index_app("localhost.probe_app") if f.name == "feed_probe"]
        with LocalHost(index_app("function_app") + probe, settings, port=0) as host:
            headers = {"Authorization": f"Bearer {app.tokens.user(ORIGINATOR)}"}
            created = requests.post(f"{host.url}/assignments", json=assignment_body(), headers=headers)
            assert created.status_code == 201, created.text
            read_url = f"{host.url}/assignments/{created.json()['id']}"

            def get(session: requests.Session) -> requests.Response:
                return session.get(read_url, headers=headers)

            def post(session: requests.Session) -> requests.Response:
                return session.post(f"{host.url}/assignments", json=assignment_body(), headers=headers)

            print(f"local host at {host.url}, {args.n} requests per line")
            drive("warm-up GET", get, n=min(args.n, 200), concurrency=1, expect=200)
            for concurrency in (1, args.concurrency):
                drive("GET /assignments/{id}", get, n=args.n, concurrency=concurrency, expect=200)
                drive("POST /assignments", post, n=args.n, concurrency=concurrency, expect=201)
            change_feed_lag(host.url, headers, args.writes)


if __name__ == "__main__":
    main()
