"""Load test of the local host: many clients for a while over loopback, contention on a hot set, two faults,
and an audit of the store afterwards. Figures and audit results only; it is not part of the test suite.

    .venv/bin/python -m bench.bench_load [--seconds 60] [--clients 50] [--think 0.75] [--users 200] [--seed 300]
                                         [--hot 5] [--hot-share 0.2] [--freeze 10] [--no-faults]

1. Starts the Cosmos emulator and Azurite (localhost.services) and a development signer (localhost.dev_signer)
   on 127.0.0.1, then the local host serving function_app.py (its HTTP routes, its Cosmos DB trigger, its queue
   triggers and its timer) in a process of its own on a free port (`--serve`, below), so that it can be killed.
   Seeds `--users` directory users and `--seed` assignments and tasks through the API.
2. For `--seconds`, `--clients` threads, each with a keep-alive `requests.Session` and a random pause of
   `--think` s on average between requests, mix reads, lists, creates, delegates, txn assigns and unassigns,
   progress events and cancels; `--hot-share` of them target a hot set of `--hot` assignments, replaced as
   they finish. (With `--think 0` the host saturates; the change feed then falls far behind, and catching up
   takes minutes.) A 503 is answered as README says ("What a client should
   do with a 503"): wait `Retry-After`, send the same request again (same Idempotency-Key). Prints throughput,
   p50/p99/max latency, statuses by operation, the share of requests on hot ids and the share that overlapped
   another request on the same id, and every 500.
3. Faults during the load (unless `--no-faults`): the Cosmos emulator is frozen (SIGSTOP for `--freeze` s, then
   SIGCONT) at a quarter of the run; at two thirds the host is killed (SIGKILL) while the change feed hands it a
   batch, and started again on the same port and leases. Prints what clients saw in each window.
4. The audit, once the projector has caught up (`projection_lag` is 0 and every event with recipients is
   recorded as sent): every acknowledged write is in the store (its assignment exists, updated no earlier than
   acknowledged, with the event the write leaves at or before the acknowledged `updatedAt`, or the progress
   event's marker; a created one once per Idempotency-Key; a cancel left it `cancelled`; a delegation left it
   `delegated` with the acknowledged successor); every delegated assignment has exactly one successor;
   the views equal a rebuild (the views container is snapshotted, `rebuild` runs, and it must remove nothing
   and leave every entry and projection record as it was, system fields aside); every event with recipients is
   on the notifications queue exactly once by eventId (more than once only for events of the batch the kill
   interrupted) and nothing else is; the retry and poison queues are empty; the host logged no ERROR but while
   a fault lasted and shortly after.

The host process (`python -m bench.bench_load --serve`) takes its app settings as JSON in BENCH_LOAD_SETTINGS
and its port in BENCH_LOAD_PORT, and reports on stdout when it listens and each change-feed batch it handles
(`@batch`, `@doc`, `@end`), so the kill can land in the middle of one.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import importlib
import json
import logging
import os
import queue
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from azure.storage.queue import QueueClient

from localhost.scenarios import now_iso
from localhost.services import terminate

REPO_ROOT = Path(__file__).resolve().parents[1]
SETTINGS_ENV = "BENCH_LOAD_SETTINGS"
PORT_ENV = "BENCH_LOAD_PORT"
GROUP = "g-load"
TARGETS = 20
CONNECT_TIMEOUT_S = 5
# A client waits this long for an answer; longer is a hang, counted as "timeout".
CLIENT_READ_TIMEOUT_S = 60
# A client honours Retry-After up to this, and sends a refused request at most this often.
MAX_RETRY_AFTER_S = 5
MAX_ATTEMPTS = 4
# While the host is down, a client tries again this often, for at most this long.
RECONNECT_DELAY_S = 0.25
RECONNECT_FOR_S = 20
HOST_START_TIMEOUT_S = 60
KILL_MIN_BATCH = 8
SEED_CLIENTS = 8
# The change feed counts as caught up once its function has not been called for this long (feedPollDelay is 5 s).
FEED_QUIET_S = 7
CATCH_UP_DEADLINE_S = 120
# Host ERRORs this long after a fault are its consequences (retried documents, failed polls).
FAULT_GRACE_S = 20
TERMINAL = {"completed", "failed", "expired", "cancelled", "rejected", "delegated"}
# The event each acknowledged write leaves (progress events leave a marker instead).
EXPECTED_EVENT = {
    "create": "created",
    "cancel": "cancelled",
    "delegate": "delegated",
    "txnAssign": "assigned",
    "txnUnassign": "unassigned",
}
SYSTEM_FIELDS = {"_rid", "_self", "_etag", "_attachments", "_ts", "_lsn"}


# --- the host process ---------------------------------------------------------------------------------------


def serve() -> None:
    """The local host with function_app.py's functions, in this process, until SIGTERM (or SIGKILL)."""
    from core.bootstrap import Runtime, set_runtime
    from core.services import projection
    from localhost.host import LocalHost
    from localhost.indexing import index_app
    from localhost.stack import IsolatedSettings

    feed: Any = importlib.import_module("triggers.feed")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("azure", "assignments.http", "assignments.feed", "localhost.http"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    values: dict[str, str] = json.loads(os.environ[SETTINGS_ENV])
    os.environ.update(values)
    runtime = Runtime(IsolatedSettings(**values))  # type: ignore[arg-type]
    set_runtime(runtime)
    runtime.store  # noqa: B018 - the containers exist before the change-feed listener starts

    # Markers of each change-feed batch, so the parent can kill this process in the middle of one. They
    # wrap the functions the trigger calls and change nothing else.
    batches = iter(range(1, 1 << 62))
    current = {"batch": 0, "doc": 0}
    handle_changes, handle_change = feed.handle_changes, projection.handle_change

    def traced_changes(bodies: Any, deps: Any) -> Any:
        bodies = list(bodies)
        number = next(batches)
        current.update(batch=number, doc=0)
        notified = [b.get("eventId") for b in bodies if b.get("docType") == "event" and b.get("recipients")]
        print(f"@batch {number} {len(bodies)} {json.dumps(notified)}", flush=True)
        result = handle_changes(bodies, deps)
        print(f"@end {number}", flush=True)
        return result

    def traced_change(body: Any, deps: Any, result: Any) -> None:
        handle_change(body, deps, result)
        current["doc"] += 1
        print(f"@doc {current['batch']} {current['doc']}", flush=True)

    feed.handle_changes = traced_changes
    projection.handle_change = traced_change

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    host = LocalHost(index_app("function_app"), values, port=int(os.environ.get(PORT_ENV, "0")))
    host.start()
    try:
        print(f"@ready {host.http.port}", flush=True)
        while True:
            time.sleep(3600)
    finally:
        host.stop()


@dataclass
class Batch:
    number: int
    size: int
    notified: list[str]
    started: float = field(default_factory=time.monotonic)
    handled: int = 0
    ended: float | None = None


class HostProcess:
    """`python -m bench.bench_load --serve` on `port` (0: a free one), its markers read on a thread."""

    def __init__(self, app_settings: Mapping[str, str], port: int, log_path: Path) -> None:
        env = {**os.environ, SETTINGS_ENV: json.dumps(dict(app_settings)), PORT_ENV: str(port)}
        env.update(PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.bench_load", "--serve"],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self.ready: queue.Queue[int] = queue.Queue()
        self.batches: dict[int, Batch] = {}
        self.last_marker = time.monotonic()
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, name="host-markers", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            parts = line.split(" ", 3)
            with self.changed:
                self.last_marker = time.monotonic()
                if parts[0] == "@ready":
                    self.ready.put(int(parts[1]))
                elif parts[0] == "@batch":
                    self.batches[int(parts[1])] = Batch(int(parts[1]), int(parts[2]), json.loads(parts[3]))
                elif parts[0] == "@doc" and int(parts[1]) in self.batches:
                    self.batches[int(parts[1])].handled = int(parts[2])
                elif parts[0] == "@end" and int(parts[1]) in self.batches:
                    self.batches[int(parts[1])].ended = time.monotonic()
                self.changed.notify_all()

    def wait_ready(self) -> int:
        try:
            return self.ready.get(timeout=HOST_START_TIMEOUT_S)
        except queue.Empty:
            raise RuntimeError(f"the host did not start; see {self.log_path}") from None

    def kill_mid_batch(self, min_size: int, deadline: float) -> Batch | None:
        """SIGKILL once a batch of at least `min_size` documents has handled a third of them and not ended (or at
        `deadline`); the batch."""
        seen = set(self.batches)
        with self.changed:
            while time.monotonic() < deadline:
                started = [
                    b
                    for n, b in self.batches.items()
                    if n not in seen and b.size >= min_size and b.handled >= b.size // 3 and b.ended is None
                ]
                if started:
                    os.kill(self.process.pid, signal.SIGKILL)
                    break
                self.changed.wait(0.05)
            else:
                os.kill(self.process.pid, signal.SIGKILL)
                started = []
        self.process.wait()
        self.reader.join(timeout=10)  # every marker written before the kill
        return self.batches[started[0].number] if started else None

    def stop(self) -> None:
        terminate(self.process, timeout=30)


# --- what the clients know ----------------------------------------------------------------------------------


@dataclass
class Known:
    id: str
    originator: int
    assignee: int | None
    task: bool
    status: str = "pending"
    etag: str | None = None


@dataclass(eq=False)
class Sample:
    op: str
    status: int | str  # an HTTP status, or "connection" / "timeout"
    started: float
    latency: float
    hot: bool
    contended: bool = False
    retry_after: str | None = None
    detail: str = ""


@dataclass
class Ack:
    op: str
    status: int
    body: dict[str, Any]
    key: str | None = None
    target: str | None = None
    # When the acknowledged attempt was sent, and the earlier attempts of the same request that got a 503, no
    # answer or a refused connection.
    last_sent: str = ""
    refused: list[str] = field(default_factory=list)


class World:
    """The assignments the clients know of, the hot set, and which ids have requests in flight."""

    def __init__(self, users: int, hot_size: int) -> None:
        self.lock = threading.Lock()
        self.users = users
        self.user_of_key = {user_key(i): i for i in range(users)}
        self.known: dict[str, Known] = {}
        self.ids: list[str] = []
        self.tasks: list[str] = []
        self.hot: list[str] = []
        self.hot_size = hot_size
        self.inflight: dict[str, list[Sample]] = defaultdict(list)

    def add(self, item: Known) -> None:
        with self.lock:
            if item.id not in self.known:
                self.ids.append(item.id)
                if item.task:
                    self.tasks.append(item.id)
            self.known[item.id] = item

    def learn(self, body: dict[str, Any], originator: int | None = None) -> None:
        """Take in an assignment a response showed; a finished hot one makes way for its successor or another."""
        if not isinstance(body, dict) or "id" not in body:
            return
        assignment_id = str(body["id"])
        assignee = self.user_of_key.get(str(body.get("assigneeUserKey")))
        with self.lock:
            item = self.known.get(assignment_id)
        if item is None:
            parent = self.known.get(str(body.get("delegatedFrom")))
            who = originator if originator is not None else parent.originator if parent else None
            if who is None:
                return
            item = Known(assignment_id, who, assignee, bool(body.get("taskKey")), str(body.get("status")))
            self.add(item)
        with self.lock:
            item.assignee = assignee
            item.status = str(body.get("status"))
            item.etag = body.get("_etag")
        if item.status in TERMINAL:
            self.finished(assignment_id, body.get("delegatedTo"))

    def finished(self, assignment_id: str, successor: str | None) -> None:
        """A finished hot assignment makes way for its successor, or another active one."""
        with self.lock:
            if successor is not None:
                self.known[assignment_id].status = "delegated"
            if assignment_id in self.hot:
                replacement = successor if successor in self.known else self._fresh()
                self.hot[self.hot.index(assignment_id)] = replacement or assignment_id

    def _fresh(self) -> str | None:
        for _ in range(50):
            candidate = random.choice(self.ids)
            if self.known[candidate].status not in TERMINAL and candidate not in self.hot:
                return candidate
        return None

    def pick(self, rng: random.Random, hot_share: float, *, tasks: bool = False) -> tuple[Known, bool]:
        with self.lock:
            if rng.random() < hot_share:
                pool = [i for i in self.hot if self.known[i].task == tasks] or self.hot
                return self.known[rng.choice(pool)], True
            pool = self.tasks if tasks else self.ids
            return self.known[rng.choice(pool)], False

    def begin(self, target: str | None, sample: Sample) -> None:
        if target is None:
            return
        with self.lock:
            others = self.inflight[target]
            if others:
                sample.contended = True
                for other in others:
                    other.contended = True
            others.append(sample)

    def end(self, target: str | None, sample: Sample) -> None:
        if target is None:
            return
        with self.lock:
            self.inflight[target].remove(sample)


def error_code(response: requests.Response) -> str:
    """The problem's `code`, or the txn routes' `errorKey`."""
    try:
        body = response.json()
    except ValueError:
        return "?"
    return str(body.get("code") or body.get("errorKey")) if isinstance(body, dict) else "?"


def user_key(index: int) -> str:
    return f"load-user-{index:03d}"


def upn(index: int) -> str:
    return f"u{index:03d}@contoso.com"


# --- the clients --------------------------------------------------------------------------------------------


class Client:
    """One simulated client: a keep-alive session, a random generator, its own samples and acknowledgements."""

    def __init__(self, number: int, load: Load) -> None:
        self.load = load
        self.world = load.world
        self.rng = random.Random(number)
        self.session = requests.Session()
        self.samples: list[Sample] = []
        self.acks: list[Ack] = []
        # The attempts of the last request sent: when each was sent (UTC, as the service stamps), and its sample.
        self.attempts: list[tuple[str, Sample]] = []

    def token(self, user: int) -> str:
        return self.load.user_tokens[user]

    def send(
        self,
        op: str,
        method: str,
        path: str,
        token: str,
        *,
        body: Any = None,
        key: str | None = None,
        target: str | None = None,
        hot: bool = False,
        retry: bool = True,
        if_match: str | None = None,
    ) -> requests.Response | None:
        """Send, and send the same request again after a 503 (after Retry-After) or a refused connection."""
        headers = {"Authorization": f"Bearer {token}"}
        if if_match is not None:
            headers["If-Match"] = if_match
        if key is not None:
            headers["Idempotency-Key"] = key
        first = time.monotonic()
        self.attempts = []
        for attempt in range(1, 1 << 30):
            sample = Sample(op, 0, time.monotonic() - self.load.t0, 0.0, hot)
            self.attempts.append((now_iso(), sample))
            self.world.begin(target, sample)
            started = time.perf_counter()
            response: requests.Response | None = None
            try:
                response = self.session.request(
                    method,
                    self.load.url + path,
                    json=body,
                    headers=headers,
                    timeout=(CONNECT_TIMEOUT_S, CLIENT_READ_TIMEOUT_S),
                )
                sample.status = response.status_code
                sample.retry_after = response.headers.get("Retry-After")
                if response.status_code >= 500:
                    sample.detail = f"{response.headers.get('X-Trace-Id')} {response.text[:300]}"
                elif response.status_code >= 400:
                    sample.detail = error_code(response)
            except requests.Timeout as error:
                sample.status, sample.detail = "timeout", str(error)[:200]
            except requests.ConnectionError as error:
                sample.status, sample.detail = "connection", str(error)[:200]
                self.session.close()
                self.session = requests.Session()
            finally:
                sample.latency = time.perf_counter() - started
                self.world.end(target, sample)
                self.samples.append(sample)
            if not retry or (attempt >= MAX_ATTEMPTS and sample.status != "connection"):
                return response
            if sample.status == 503:
                try:
                    wait = float(sample.retry_after or 1)
                except ValueError:
                    wait = 1.0
                time.sleep(min(wait, MAX_RETRY_AFTER_S))
                continue
            if sample.status == "connection" and time.monotonic() - first < RECONNECT_FOR_S:
                time.sleep(RECONNECT_DELAY_S)
                continue
            return response
        return None

    def acknowledge(self, op: str, response: requests.Response | None, **extra: Any) -> dict[str, Any] | None:
        if response is None or response.status_code not in (200, 201):
            return None
        body: dict[str, Any] = response.json()
        refused = [sent for sent, sample in self.attempts[:-1] if sample.status in (503, "connection", "timeout")]
        self.acks.append(Ack(op, response.status_code, body, last_sent=self.attempts[-1][0], refused=refused, **extra))
        return body

    # --- operations -----------------------------------------------------------------------------------------

    def read(self) -> None:
        item, hot = self.world.pick(self.rng, self.load.hot_share)
        token = self.load.admin_token if self.rng.random() < 0.3 else self.token(item.originator)
        response = self.send("read", "GET", f"/assignments/{item.id}", token, target=item.id, hot=hot, retry=False)
        if response is not None and response.status_code == 200:
            self.world.learn(response.json())

    def list(self) -> None:
        user = self.rng.randrange(self.world.users)
        choice = self.rng.random()
        if choice < 0.35:
            path = "/assignments?role=assignee&pageSize=20"
        elif choice < 0.6:
            path = "/assignments?role=originator&status=pending,in_progress&orderBy=dueAt&pageSize=20"
        elif choice < 0.75:
            path = "/assignments/summary?role=assignee"
        elif choice < 0.85:
            path = "/assignments?role=candidate&pageSize=20"
        else:
            path = f"/targets/chat/load-{self.rng.randrange(TARGETS)}/assignments?pageSize=20"
            self.send("list", "GET", path, self.load.admin_token, retry=False)
            return
        self.send("list", "GET", path, self.token(user), retry=False)

    def create(self) -> None:
        originator = self.rng.randrange(self.world.users)
        key = uuid.uuid4().hex
        body = self.load.new_body(self.rng, originator, key, task=self.rng.random() < 0.2)
        response = self.send("create", "POST", "/assignments", self.token(originator), body=body, key=key)
        created = self.acknowledge("create", response, key=key)
        if created is not None:
            self.world.learn(created, originator=originator)

    def delegate(self) -> None:
        item, hot = self.world.pick(self.rng, self.load.hot_share)
        if item.assignee is None:
            return self.events()
        to = self.rng.randrange(self.world.users)
        path = f"/assignments/{item.id}/delegate"
        body = {"toUpn": upn(to), "reason": "load"}
        response = self.send("delegate", "POST", path, self.token(item.assignee), body=body, target=item.id, hot=hot)
        successor = self.acknowledge("delegate", response, target=item.id)
        if successor is not None:
            self.world.learn(successor)
            self.world.finished(item.id, str(successor["id"]))
        return None

    def txn_assign(self) -> None:
        item, hot = self.world.pick(self.rng, self.load.hot_share, tasks=True)
        caller, to = self.rng.randrange(self.world.users), self.rng.randrange(self.world.users)
        body = {"params": {"submitKey": item.id, "userKey": user_key(to)}}
        key = uuid.uuid4().hex
        path = "/workspaces/secure/api/v1/txn/assign"
        response = self.send("txnAssign", "POST", path, self.token(caller), body=body, key=key, target=item.id, hot=hot)
        assigned = self.acknowledge("txnAssign", response, key=key, target=item.id)
        if assigned is not None:
            self.world.learn(assigned)

    def txn_unassign(self) -> None:
        item, hot = self.world.pick(self.rng, self.load.hot_share, tasks=True)
        body = {"params": {"submitKey": item.id}}
        key = uuid.uuid4().hex
        path = "/workspaces/secure/api/v1/txn/unassign"
        token = self.token(item.originator)
        response = self.send("txnUnassign", "POST", path, token, body=body, key=key, target=item.id, hot=hot)
        unassigned = self.acknowledge("txnUnassign", response, key=key, target=item.id)
        if unassigned is not None:
            self.world.learn(unassigned)

    def events(self) -> None:
        item, hot = self.world.pick(self.rng, self.load.hot_share)
        kind = self.rng.choice(["visited", "engaged", "flow_started", "flow_completed"])
        body: dict[str, Any] = {
            "eventId": uuid.uuid4().hex,
            "type": kind,
            "occurredAt": now_iso(),
            "chatLogId": f"log-{self.rng.randrange(3)}",
        }
        if kind == "flow_completed":
            body["score"] = self.rng.randrange(101)
        if item.assignee is not None and self.rng.random() < 0.6:
            token = self.token(item.assignee)
        else:
            token = self.load.reporter_token
        path = f"/assignments/{item.id}/events"
        response = self.send("events", "POST", path, token, body=body, target=item.id, hot=hot)
        recorded = self.acknowledge("events", response, key=body["eventId"], target=item.id)
        if recorded is not None:
            self.world.learn(recorded)

    def cancel(self) -> None:
        item, hot = self.world.pick(self.rng, self.load.hot_share)
        key = uuid.uuid4().hex
        path = f"/assignments/{item.id}/cancel"
        token = self.token(item.originator)
        # Half the cancels are conditional on the version this client last saw (412 when it moved on).
        if_match = item.etag if self.rng.random() < 0.5 else None
        response = self.send(
            "cancel", "POST", path, token, body={"reason": "load"}, key=key, target=item.id, hot=hot, if_match=if_match
        )
        cancelled = self.acknowledge("cancel", response, key=key, target=item.id)
        if cancelled is not None:
            self.world.learn(cancelled)

    def run(self, until: float) -> None:
        operations: list[tuple[float, Callable[[], None]]] = [
            (0.25, self.read),
            (0.12, self.list),
            (0.15, self.create),
            (0.10, self.delegate),
            (0.10, self.txn_assign),
            (0.03, self.txn_unassign),
            (0.17, self.events),
            (0.08, self.cancel),
        ]
        weights = [weight for weight, _ in operations]
        while time.monotonic() < until:
            self.rng.choices(operations, weights)[0][1]()
            time.sleep(self.rng.uniform(0, 2 * self.load.think))


# --- the run ------------------------------------------------------------------------------------------------


@dataclass
class FaultReport:
    lines: list[str] = field(default_factory=list)
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)
    wall: list[tuple[datetime, datetime]] = field(default_factory=list)
    killed_batch: Batch | None = None
    restarts: int = 0

    def during_fault(self, stamp: str) -> bool:
        """Whether a host log line's local time (`2026-12-01 16:06:15,797`) falls in a fault or its grace."""
        try:
            moment = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
        except ValueError:
            return False
        return any(start <= moment <= end + timedelta(seconds=FAULT_GRACE_S) for start, end in self.wall)


class Load:
    def __init__(self, args: argparse.Namespace, url: str, signer: Any) -> None:
        from localhost.dev_signer import LOCAL_ADMIN_APP, LOCAL_REPORTER_APP

        self.url = url
        self.hot_share = args.hot_share
        self.think = args.think
        self.world = World(args.users, args.hot)
        self.user_tokens: list[str] = [
            signer.user_token(oid=user_key(i), upn=upn(i), groups=[GROUP]) for i in range(args.users)
        ]
        self.admin_token = signer.app_token(LOCAL_ADMIN_APP)
        self.reporter_token = signer.app_token(LOCAL_REPORTER_APP)
        self.t0 = time.monotonic()
        self.due = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:00:00Z")

    def new_body(self, rng: random.Random, originator: int, key: str, *, task: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "targetType": "chat",
            "targetId": f"load-{rng.randrange(TARGETS)}",
            "completionCriteria": rng.choice(["chat_visited", "chat_engaged", "flow_completed", "manual"]),
            "dueAt": self.due,
            "allowDelegation": True,
            "originatorMessage": f"key:{key}",
        }
        if task:
            body.update(taskKey="review", candidateGroups=[GROUP])
        else:
            assignee = rng.randrange(self.world.users - 1)
            body["assigneeEmail"] = upn(assignee if assignee < originator else assignee + 1)
        return body


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def print_figures(samples: list[Sample], elapsed: float) -> list[Sample]:
    answered = [s for s in samples if isinstance(s.status, int)]
    latencies = [s.latency for s in answered]
    print(f"\n== load: {len(samples)} requests in {elapsed:.1f} s = {len(samples) / elapsed:.0f} req/s")
    print(
        f"latency of answered requests: p50 {ms(percentile(latencies, 0.5))}  p99 {ms(percentile(latencies, 0.99))}  "
        f"max {ms(max(latencies, default=0))}"
    )
    by_op: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_op[sample.op].append(sample)
    print(f"{'operation':<12} {'n':>6} {'p50':>11} {'p99':>11} {'max':>11}  statuses")
    for op, group in sorted(by_op.items()):
        lat = [s.latency for s in group if isinstance(s.status, int)]
        statuses = Counter(str(s.status) for s in group)
        shown = " ".join(f"{status}:{count}" for status, count in sorted(statuses.items()))
        print(
            f"{op:<12} {len(group):>6} {ms(percentile(lat, 0.5))} {ms(percentile(lat, 0.99))} "
            f"{ms(max(lat, default=0))}  {shown}"
        )
    statuses = Counter(str(s.status) for s in samples)
    total = len(samples)
    print(
        "statuses: "
        + ", ".join(f"{status} {count} ({count / total:.1%})" for status, count in sorted(statuses.items()))
    )
    targeted = [s for s in samples if s.op not in ("list", "create")]
    hot = sum(s.hot for s in targeted)
    contended = sum(s.contended for s in targeted)
    print(
        f"contention: {hot} of {total} requests ({hot / total:.1%}) targeted the hot set; {contended} "
        f"({contended / total:.1%}) overlapped another request on the same assignment"
    )
    refused = Counter(
        f"{s.op} {s.status} {s.detail}" for s in samples if isinstance(s.status, int) and 400 <= s.status < 500
    )
    print("4xx by operation and code: " + ", ".join(f"{what} x{n}" for what, n in sorted(refused.items())))
    failures = [s for s in samples if s.status == 500]
    print(f"500s: {len(failures)}")
    for sample in failures[:10]:
        print(f"  {sample.op} at {sample.started:.1f} s: {sample.detail}")
    return failures


def window_report(label: str, samples: list[Sample], start: float, end: float) -> list[str]:
    """What clients saw of requests in flight at any moment of [start, end]."""
    inside = [s for s in samples if s.started <= end and s.started + s.latency >= start]
    statuses = Counter(str(s.status) for s in inside)
    unavailable = [s for s in inside if s.status == 503]
    bare = [s for s in unavailable if not s.retry_after]
    worst = max(inside, key=lambda s: s.latency, default=None)
    lines = [
        f"{label}: {len(inside)} requests in flight during [{start:.1f} s, {end:.1f} s]: "
        + ", ".join(f"{status} {count}" for status, count in sorted(statuses.items())),
        f"  503: {len(unavailable)} ({len(unavailable) - len(bare)} with Retry-After, {len(bare)} without); "
        f"500: {statuses.get('500', 0)}; client timeouts (> {CLIENT_READ_TIMEOUT_S} s): {statuses.get('timeout', 0)}",
    ]
    if worst is not None:
        lines.append(
            f"  worst latency {worst.latency:.2f} s ({worst.op}, {worst.status}, started at {worst.started:.1f} s)"
        )
    return lines


class Stack:
    """The emulators, the signer, the bench's own runtime (seeding and the audit) and the host process."""

    def __init__(self, workdir: Path) -> None:
        from core.bootstrap import Runtime
        from localhost.app_settings import app_settings_of
        from localhost.dev_signer import DEV_TENANT_ID, DevSigner
        from localhost.services import start_azurite, start_cosmos
        from localhost.stack import IsolatedSettings

        self.workdir = workdir
        self.cosmos = start_cosmos()
        self.azurite = start_azurite()
        self.signer = DevSigner(tenant_ids=(DEV_TENANT_ID,))
        self.tenant = DEV_TENANT_ID
        values: dict[str, Any] = {
            "COSMOS_ENDPOINT": self.cosmos.endpoint,
            "COSMOS_KEY": self.cosmos.key,
            "COSMOS_DATABASE": f"load-{uuid.uuid4().hex[:8]}",
            "AzureWebJobsStorage": self.azurite.connection_string,
            "DIRECTORY": "cosmos",
            "NOTIFICATIONS_QUEUE": "load-notifications",
            "CHANGES_RETRY_QUEUE": "load-changes-retry",
            **self.signer.app_settings(),
        }
        self.settings = IsolatedSettings(**values)
        self.runtime = Runtime(self.settings)
        self.runtime.store  # noqa: B018 - create the database and containers
        self.app_settings = app_settings_of(self.settings)
        for name in (self.settings.changes_retry_queue,):  # the trigger's queue is the deployment's to create
            with contextlib.suppress(Exception):
                self.queue(name).create_queue()
        self.host: HostProcess | None = None
        self.hosts: list[HostProcess] = []
        self.port = 0

    def queue(self, name: str) -> QueueClient:
        return QueueClient.from_connection_string(self.azurite.connection_string, name)

    def start_host(self) -> float:
        started = time.monotonic()
        self.host = HostProcess(self.app_settings, self.port, self.workdir / "host.log")
        self.hosts.append(self.host)
        self.port = self.host.wait_ready()
        return time.monotonic() - started

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.host is not None:
            self.host.stop()
        self.signer.stop()
        self.azurite.stop()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.cosmos.pid, signal.SIGCONT)
        self.cosmos.stop()


def seed(stack: Stack, load: Load, users: int, count: int, hot: int) -> None:
    from core.directory import DirectoryUser

    registry = stack.runtime.user_registry
    for i in range(users):
        registry.put(stack.tenant, DirectoryUser(user_key(i), upn(i), f"U{i}", account_enabled=True))
    sessions = threading.local()

    def create(n: int) -> Known:
        rng = random.Random(n)
        originator = rng.randrange(users)
        key = uuid.uuid4().hex
        body = load.new_body(rng, originator, key, task=n % 4 == 0)
        headers = {"Authorization": f"Bearer {load.user_tokens[originator]}", "Idempotency-Key": key}
        if not hasattr(sessions, "session"):
            sessions.session = requests.Session()
        response = sessions.session.post(f"{stack.url}/assignments", json=body, headers=headers, timeout=30)
        assert response.status_code == 201, response.text
        answer = response.json()
        assignee = load.world.user_of_key.get(str(answer.get("assigneeUserKey")))
        return Known(answer["id"], originator, assignee, bool(answer.get("taskKey")), etag=answer.get("_etag"))

    with ThreadPoolExecutor(SEED_CLIENTS) as pool:
        created = list(pool.map(create, range(count)))
    for item in created:
        load.world.add(item)
    tasks = [item.id for item in created if item.task]
    others = [item.id for item in created if not item.task]
    load.world.hot = tasks[: max(1, hot * 3 // 10)] + others[: hot - max(1, hot * 3 // 10)]


def faults(stack: Stack, load: Load, args: argparse.Namespace, report: FaultReport) -> None:
    """The fault timeline, on a thread of its own: freeze Cosmos, then kill and restart the host."""
    t = lambda: time.monotonic() - load.t0  # noqa: E731
    freeze_at, kill_at = args.seconds * 0.25, args.seconds * 0.65
    time.sleep(max(0.0, freeze_at - t()))
    start, wall_start = t(), datetime.now()  # local: the host log writes local times
    os.kill(stack.cosmos.pid, signal.SIGSTOP)
    health: list[str] = []

    def probe() -> None:
        began = time.perf_counter()
        try:
            answer = requests.get(f"{stack.url}/health", timeout=(CONNECT_TIMEOUT_S, CLIENT_READ_TIMEOUT_S))
            health.append(f"{answer.status_code} Retry-After={answer.headers.get('Retry-After')}")
        except requests.RequestException as error:
            health.append(type(error).__name__)
        health.append(f"{time.perf_counter() - began:.2f} s")

    time.sleep(min(1.0, args.freeze / 4))  # its two Cosmos attempts (2 x 4 s) end within the freeze
    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    time.sleep(max(0.0, start + args.freeze - t()))
    os.kill(stack.cosmos.pid, signal.SIGCONT)
    end = t()
    report.wall.append((wall_start, datetime.now()))
    prober.join(timeout=CLIENT_READ_TIMEOUT_S)
    report.windows["Cosmos frozen"] = (start, end)
    report.lines.append(
        f"Cosmos emulator (pid {stack.cosmos.pid}) stopped at {start:.1f} s, continued at {end:.1f} s; "
        f"GET /health during the freeze: {' in '.join(health) or 'no answer'}"
    )
    time.sleep(max(0.0, kill_at - t()))
    assert stack.host is not None
    killed, wall_killed = t(), datetime.now()
    batch = stack.host.kill_mid_batch(KILL_MIN_BATCH, time.monotonic() + 10)
    died = t()
    report.killed_batch = batch
    downtime = stack.start_host()
    report.restarts += 1
    back = t()
    report.wall.append((wall_killed, datetime.now()))
    report.windows["host killed"] = (died, back)
    if batch is None:
        report.lines.append(f"host killed at {died:.1f} s without a batch of {KILL_MIN_BATCH}+ documents starting")
    else:
        where = "before its end" if batch.ended is None else "AFTER its end (not mid-batch)"
        report.lines.append(
            f"host killed (SIGKILL) at {died:.1f} s, {died - killed:.2f} s after waiting for a batch, while batch "
            f"#{batch.number} of {batch.size} documents ({len(batch.notified)} events to notify) was being handled: "
            f"{batch.handled} of {batch.size} handled {where}"
        )
    report.lines.append(f"host restarted on port {stack.port} (same leases) in {downtime:.1f} s; back at {back:.1f} s")


# --- the audit ----------------------------------------------------------------------------------------------


def query(container: Any, sql: str) -> list[dict[str, Any]]:
    return list(container.query_items(sql, enable_cross_partition_query=True, max_item_count=1000))


def clean(document: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in document.items() if name not in SYSTEM_FIELDS}


def views_snapshot(runtime: Any) -> dict[tuple[str, str], dict[str, Any]]:
    items = query(runtime.views_container, "SELECT * FROM c WHERE c.docType = 'view' OR c.docType = 'projection'")
    return {(str(item["pk"]), str(item["id"])): clean(item) for item in items}


def drain(client: QueueClient) -> list[str]:
    """Every message on a queue (received, so invisible for a while; nothing else reads these)."""
    bodies: list[str] = []
    while True:
        batch = list(client.receive_messages(messages_per_page=32, visibility_timeout=600, max_messages=32))
        if not batch:
            return bodies
        bodies += [base64.b64decode(message.content).decode() for message in batch]


def wait_caught_up(stack: Stack, deadline_s: float) -> list[str]:
    """Wait until the change feed has been quiet for a while, then poll `projection_lag` until it is 0, then
    until every event with recipients is recorded as sent; each within `deadline_s`."""
    from core.services.projection import projection_lag

    deps = stack.runtime.feed_deps()
    started = time.monotonic()
    while True:
        assert stack.host is not None
        quiet = time.monotonic() - stack.host.last_marker
        if quiet >= FEED_QUIET_S or time.monotonic() - started > deadline_s:
            lag = projection_lag(deps)
            if lag.behind == 0 or time.monotonic() - started > deadline_s:
                break
        time.sleep(1)
    lines = [
        f"projection lag {lag.behind} of {lag.assignments} assignments {time.monotonic() - started:.1f} s after the "
        f"load (the change feed quiet for {FEED_QUIET_S} s first)"
    ]
    events = query(stack.runtime.assignments_container, "SELECT c.eventId, c.recipients FROM c WHERE c.docType='event'")
    notified = {e["eventId"] for e in events if e.get("recipients")}
    while True:
        sent = {s["id"] for s in query(stack.runtime.views_container, "SELECT c.id FROM c WHERE c.docType='sent'")}
        if not notified - sent or time.monotonic() - started > deadline_s:
            break
        time.sleep(2)
    lines.append(f"events recorded as sent: {len(notified & sent)} of {len(notified)} with recipients")
    return lines


def feed_figures(hosts: list[HostProcess], t0: float, end: float) -> str:
    """What the change-feed function handled while the clients ran, from the host's markers."""
    batches = [b for host in hosts for b in host.batches.values() if t0 <= b.started <= end]
    documents = sum(b.handled for b in batches)
    return (
        f"change feed during the load: {len(batches)} batches, {documents} documents handled "
        f"({documents / max(end - t0, 1e-9):.0f}/s), mean batch {documents / max(len(batches), 1):.0f}"
    )


def audit(stack: Stack, acks: list[Ack], report: FaultReport) -> list[tuple[bool, str]]:
    from core.services.projection import rebuild

    runtime = stack.runtime
    results: list[tuple[bool, str]] = []

    def check(ok: bool, text: str) -> None:
        results.append((ok, text))

    documents = {
        d["id"]: d for d in query(runtime.assignments_container, "SELECT * FROM c WHERE c.docType='assignment'")
    }
    events = query(runtime.assignments_container, "SELECT * FROM c WHERE c.docType='event'")

    # Acknowledged writes: each left the state and the event (or the event marker) it reported.
    event_types = defaultdict(list)
    for event in events:
        event_types[(event["assignmentId"], event["type"])].append(event["at"])
    markers = {m["id"] for m in query(runtime.assignments_container, "SELECT c.id FROM c WHERE c.docType='marker'")}
    missing, unrecorded, wrong = [], [], []
    keys: Counter[str] = Counter()
    for document in documents.values():
        message = str(document.get("originatorMessage") or "")
        # A successor copies its original's message: only originals count.
        if message.startswith("key:") and not document.get("delegatedFrom"):
            keys[message[4:]] += 1
    for ack in acks:
        body = ack.body
        stored = documents.get(body["id"])
        if stored is None or stored["updatedAt"] < body["updatedAt"]:
            missing.append(f"{ack.op} {body['id']} at {body['updatedAt']}")
            continue
        if ack.op == "events":
            digest = hashlib.sha256(str(ack.key).encode()).hexdigest()
            recorded = f"{ack.target}:event:{digest}" in markers
        else:
            subject = str(ack.target) if ack.op == "delegate" else body["id"]
            times = event_types[(subject, EXPECTED_EVENT[ack.op])]
            # A replayed response shows the assignment as it is now: its event came at or before.
            recorded = any(at <= body["updatedAt"] for at in times)
        if not recorded:
            unrecorded.append(f"{ack.op} {ack.target or body['id']} at {body['updatedAt']}")
        if ack.op == "create" and keys[str(ack.key)] != 1:
            wrong.append(f"create with key {ack.key}: {keys[str(ack.key)]} assignments")
        if ack.op == "cancel" and stored["status"] != "cancelled":
            wrong.append(f"cancel {body['id']} acknowledged, stored status {stored['status']}")
        if ack.op == "delegate":
            original = documents.get(str(ack.target))
            if original is None or original["status"] != "delegated" or original["delegatedTo"] != body["id"]:
                shown = original and (original["status"], original["delegatedTo"])
                wrong.append(f"delegate {ack.target} -> {body['id']} acknowledged, original {shown}")
    by_op = Counter(ack.op for ack in acks)
    check(
        not missing and not unrecorded,
        f"acknowledged writes present: {len(acks)} ({', '.join(f'{op} {n}' for op, n in sorted(by_op.items()))}); "
        f"missing or older {len(missing)} {missing[:5]}; without their event or marker {len(unrecorded)} "
        f"{unrecorded[:5]}",
    )
    # A write answered 503 (a Cosmos timeout) or cut off may have been applied all the same: its resend (same
    # Idempotency-Key) then replays it. Seen when the acknowledged state was stamped before the resend was sent.
    applied_anyway = Counter(
        ack.op
        for ack in acks
        if ack.refused
        and (
            (ack.op == "create" and ack.body["createdAt"] < ack.last_sent)
            or (ack.op == "cancel" and str(ack.body.get("cancelledAt")) < ack.last_sent)
        )
    )
    resent = Counter(ack.op for ack in acks if ack.refused)
    results.append(
        (
            True,
            f"(figure) acknowledged after a resend: {dict(resent)}; of those, applied by an attempt that had been "
            f"answered 503 or cut off: {dict(applied_anyway)} (creates and cancels, by their stamps)",
        )
    )
    duplicates = {key: n for key, n in keys.items() if n > 1}
    check(
        not wrong and not duplicates,
        f"acknowledged outcomes hold (create once per Idempotency-Key, cancel -> cancelled, delegate -> delegated "
        f"with its successor): {len(wrong)} wrong {wrong[:5]}; keys with several assignments {len(duplicates)}",
    )

    # Delegation: exactly one successor each.
    successors: Counter[str] = Counter(str(d["delegatedFrom"]) for d in documents.values() if d.get("delegatedFrom"))
    delegated = [d["id"] for d in documents.values() if d["status"] == "delegated"]
    bad = [i for i in delegated if successors[i] != 1]
    orphans = [i for i in successors if documents.get(i, {}).get("status") != "delegated"]
    check(
        not bad and not orphans,
        f"delegated assignments with exactly one successor: {len(delegated) - len(bad)} of {len(delegated)}; "
        f"successors of assignments not delegated: {len(orphans)} {orphans[:5]}",
    )

    # Views equal a rebuild.
    before = views_snapshot(runtime)
    rebuilt = rebuild(runtime.feed_deps())
    after = views_snapshot(runtime)
    changed = [key for key in before.keys() & after.keys() if before[key] != after[key]]
    added, gone = after.keys() - before.keys(), before.keys() - after.keys()
    check(
        rebuilt.removed == 0 and not changed and not added and not gone,
        f"views equal a rebuild: rebuild projected {rebuilt.assignments} assignments, removed {rebuilt.removed}; "
        f"of {len(before)} entries and records {len(changed)} changed, {len(added)} added, {len(gone)} gone "
        f"{[*changed, *added, *gone][:3]}",
    )

    # Notifications: each event with recipients exactly once.
    bodies = drain(stack.queue(runtime.settings.notifications_queue))
    counts = Counter(json.loads(body)["eventId"] for body in bodies)
    expected = {e["eventId"] for e in events if e.get("recipients")}
    # More than once is allowed where sending and recording came apart: the batch the kill cut short, and an
    # event whose handling failed (logged, then retried through the retry queue).
    allowed = set(report.killed_batch.notified) if report.killed_batch else set()
    host_log = (stack.workdir / "host.log").read_text(errors="replace")
    allowed |= {e["eventId"] for e in events if f"Projecting event {e['id']} failed" in host_log}
    lost = expected - counts.keys()
    extra = counts.keys() - expected
    repeated = {event_id: n for event_id, n in counts.items() if n > 1}
    unexplained = {event_id: n for event_id, n in repeated.items() if event_id not in allowed}
    check(
        not lost and not extra and not unexplained,
        f"notifications: {len(bodies)} messages for {len(expected)} events with recipients; lost {len(lost)}, "
        f"unknown {len(extra)}, repeated {len(repeated)} ({len(repeated) - len(unexplained)} of the killed batch or "
        f"a logged failure, {len(unexplained)} unexplained {list(unexplained.items())[:3]})",
    )

    # Nothing left to retry, nothing poisoned.
    leftovers = {}
    for name in (runtime.settings.changes_retry_queue, f"{runtime.settings.changes_retry_queue}-poison"):
        with contextlib.suppress(Exception):
            leftovers[name] = stack.queue(name).get_queue_properties().approximate_message_count
    check(not any(leftovers.values()), f"retry and poison queues empty: {leftovers}")

    # ERRORs are expected while a fault lasts and shortly after (the change feed's failed polls, documents sent
    # to the retry queue); any other is not.
    log = host_log
    errors = [line for line in log.splitlines() if " ERROR " in line]
    warnings = Counter(line[24:][:70] for line in log.splitlines() if " WARNING " in line)
    during = [line for line in errors if report.during_fault(line[:23])]
    others = [line for line in errors if line not in during]
    kinds = Counter(line[24:].split(":", 1)[0] + ": " + line[24:].split(":", 1)[-1][:60].strip() for line in during)
    check(
        not others,
        f"host log: {len(during)} ERROR lines during the faults {dict(kinds.most_common(4))}; "
        f"{len(others)} at other times {[line[:200] for line in others[:3]]}; "
        f"WARNING lines {dict(warnings.most_common(4))}",
    )
    return results


# --- main ---------------------------------------------------------------------------------------------------


def cosmos_timeouts(runtime: Any) -> str:
    policy = runtime.assignments_container.client_connection.connection_policy
    retry = policy.ConnectionRetryConfiguration
    return (
        f"Cosmos client: connection_timeout {policy.RequestTimeout} s, read_timeout {policy.ReadTimeout} s, "
        f"retries on read timeouts of reads {min(retry.total_retries, retry.read_retries)} "
        f"(writes: none), throttling retries {policy.RetryOptions.MaxRetryAttemptCount}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=60, help="how long the clients run (default 60)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--users", type=int, default=200, help="directory users (default 200)")
    parser.add_argument("--seed", type=int, default=300, help="assignments and tasks created first (default 300)")
    parser.add_argument("--hot", type=int, default=5, help="size of the hot set (default 5)")
    parser.add_argument("--hot-share", type=float, default=0.2, help="share of requests on the hot set (0.2)")
    parser.add_argument(
        "--think", type=float, default=0.75, help="mean pause of a client between requests, seconds (default 0.75)"
    )
    parser.add_argument("--freeze", type=float, default=10, help="seconds the Cosmos emulator is frozen (10)")
    parser.add_argument("--no-faults", action="store_true", help="no freeze, no kill")
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    stack = Stack(workdir)
    passed = False
    try:
        downtime = stack.start_host()
        print(f"emulators: Cosmos pid {stack.cosmos.pid}, Azurite pid {stack.azurite.pid}; logs in {workdir}")
        print(f"local host at {stack.url}, up in {downtime:.1f} s")
        print(cosmos_timeouts(stack.runtime))
        load = Load(args, stack.url, stack.signer)
        seeded = time.monotonic()
        seed(stack, load, args.users, args.seed, args.hot)
        print(f"seeded {args.users} users and {args.seed} assignments in {time.monotonic() - seeded:.1f} s")

        clients = [Client(n, load) for n in range(args.clients)]
        report = FaultReport()
        load.t0 = time.monotonic()
        until = load.t0 + args.seconds
        threads = [threading.Thread(target=c.run, args=(until,), daemon=True) for c in clients]
        if not args.no_faults:
            threads.append(threading.Thread(target=faults, args=(stack, load, args, report), daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=args.seconds + CLIENT_READ_TIMEOUT_S * MAX_ATTEMPTS + 60)
        stuck = sum(thread.is_alive() for thread in threads)
        elapsed = time.monotonic() - load.t0
        samples = sorted((s for c in clients for s in c.samples), key=lambda s: s.started)
        acks = [a for c in clients for a in c.acks]
        failures = print_figures(samples, elapsed)
        print(feed_figures(stack.hosts, load.t0, load.t0 + elapsed))
        if stuck:
            print(f"!! {stuck} client threads still running after the deadline")

        if not args.no_faults:
            print("\n== faults")
            for line in report.lines:
                print(line)
            for label, (start, end) in report.windows.items():
                for line in window_report(label, samples, start, end):
                    print(line)

        print("\n== audit")
        for line in wait_caught_up(stack, CATCH_UP_DEADLINE_S):
            print(line)
        audited = time.monotonic()
        results = audit(stack, acks, report)
        for ok, text in results:
            print(f"{'PASS' if ok else 'FAIL'}  {text}")
        passed = all(ok for ok, _ in results) and not failures and not stuck
        print(f"(audit took {time.monotonic() - audited:.1f} s)")
        print(f"\n{'PASSED' if passed else 'FAILED'}: audit and no 500s; total time {time.monotonic() - began:.0f} s")
    finally:
        stack.stop()
    if passed:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"logs kept in {workdir}")


if __name__ == "__main__":
    main()
