"""Faults under the local host, over a real socket: while the Cosmos account stops answering (its emulator frozen
with SIGSTOP: connections are accepted, nothing is answered), every route family answers 503 with Retry-After
within the Cosmos client's bound, never a 500 and never a hang; once it answers again, each refused write sent
again as README says (same request, same Idempotency-Key) succeeds exactly once, whether or not the timed-out
attempt was applied after all.

The emulator is the test's own: freezing the session's would stall every other test. bench/bench_load.py does
the same under load, and kills the host too."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from core.bootstrap import Runtime
from core.cosmos.client import READ_TIMEOUT_SECONDS
from core.directory import DirectoryUser
from localhost.app_settings import app_settings_of
from localhost.host import LocalHost
from localhost.indexing import index_app
from localhost.stack import make_settings
from tests.support.app import TEST_TENANT, InstallRuntime, Tokens
from tests.support.services import RunningService, start_cosmos
from tests.support.tokens import JwksServer

TXN = "/workspaces/secure/api/v1/txn"
GROUP = "g-faults"
# One Cosmos call waits at most two read timeouts; a request's calls before the freeze took milliseconds.
BOUND_S = 2 * READ_TIMEOUT_SECONDS + 2


@dataclass
class Answer:
    status: int | str
    retry_after: str | None
    body: Any
    elapsed: float


@pytest.fixture
def frozen_account_host(
    own_runtime: InstallRuntime, azurite_service: RunningService, jwks_server: JwksServer
) -> Iterator[tuple[LocalHost, RunningService, Runtime]]:
    """The app's HTTP functions on a free port, on a Cosmos emulator of their own."""
    cosmos = start_cosmos()
    try:
        settings = make_settings(cosmos, azurite_service, jwks_server)
        runtime = Runtime(settings)
        own_runtime(runtime)
        runtime.store  # noqa: B018 - provisions the database and containers
        http = [f for f in index_app("function_app") if f.trigger["type"] == "httpTrigger"]
        host = LocalHost(http, app_settings_of(settings), port=0)
        host.start()
        try:
            yield host, cosmos, runtime
        finally:
            host.stop()
    finally:
        os.kill(cosmos.pid, signal.SIGCONT)
        cosmos.stop()


def test_a_frozen_cosmos_is_503_with_retry_after_on_every_route_family_and_a_resent_write_lands_once(
    frozen_account_host: tuple[LocalHost, RunningService, Runtime], tokens: Tokens
) -> None:
    host, cosmos, runtime = frozen_account_host
    originator, assignee = f"o-{uuid.uuid4().hex[:8]}@contoso.com", f"a-{uuid.uuid4().hex[:8]}@contoso.com"
    for upn in (originator, assignee):
        runtime.user_registry.put(TEST_TENANT, DirectoryUser(f"oid-{upn}", upn, "User", account_enabled=True))
    as_originator = {"Authorization": f"Bearer {tokens.user(originator, groups=[GROUP])}"}
    body = {"targetType": "chat", "targetId": "faults", "assigneeEmail": assignee, "completionCriteria": "manual"}
    session = requests.Session()
    existing = session.post(f"{host.url}/assignments", json=body, headers=as_originator, timeout=10)
    task = session.post(
        f"{host.url}/assignments",
        json={**{k: v for k, v in body.items() if k != "assigneeEmail"}, "taskKey": "t", "candidateGroups": [GROUP]},
        headers=as_originator,
        timeout=10,
    )
    assert existing.status_code == task.status_code == 201, (existing.text, task.text)
    assignment_id, task_id = existing.json()["id"], task.json()["id"]
    new_id = f"faults-{uuid.uuid4().hex[:12]}"
    keys = {"create": uuid.uuid4().hex, "cancel": uuid.uuid4().hex, "txn": uuid.uuid4().hex}
    requests_by_name: dict[str, tuple[str, str, Any, dict[str, str]]] = {
        "read": ("GET", f"/assignments/{assignment_id}", None, {}),
        "list": ("GET", "/assignments?role=originator", None, {}),
        "create": ("POST", "/assignments", {**body, "id": new_id}, {"Idempotency-Key": keys["create"]}),
        "cancel": ("POST", f"/assignments/{assignment_id}/cancel", {}, {"Idempotency-Key": keys["cancel"]}),
        "txn": (
            "POST",
            f"{TXN}/assign",
            {"params": {"submitKey": task_id, "userKey": f"oid-{assignee}"}},
            {"Idempotency-Key": keys["txn"]},
        ),
    }
    answers: dict[str, Answer] = {}

    def send(name: str) -> Answer:
        method, path, json_body, headers = requests_by_name[name]
        started = time.monotonic()
        try:
            response = requests.request(
                method, host.url + path, json=json_body, headers={**as_originator, **headers}, timeout=(5, 30)
            )
        except requests.RequestException as error:
            return Answer(type(error).__name__, None, None, time.monotonic() - started)
        return Answer(
            response.status_code, response.headers.get("Retry-After"), response.json(), time.monotonic() - started
        )

    def frozen(name: str) -> None:
        answers[name] = send(name)

    os.kill(cosmos.pid, signal.SIGSTOP)
    try:
        threads = [threading.Thread(target=frozen, args=(name,), daemon=True) for name in requests_by_name]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=BOUND_S + 10)
    finally:
        os.kill(cosmos.pid, signal.SIGCONT)

    for name in requests_by_name:
        answer = answers.get(name)
        assert answer is not None, f"{name}: no answer after {BOUND_S + 10} s"
        assert answer.status == 503, (name, answer)
        assert answer.retry_after is not None, (name, answer)
        assert int(answer.retry_after) >= 1, (name, answer)
        assert answer.elapsed <= BOUND_S, (name, answer.elapsed)
        code = answer.body.get("errorKey") if name == "txn" else answer.body.get("code")
        assert code == "serviceUnavailable", (name, answer.body)

    # Back: each write, sent again as it was, lands once (its timed-out attempt may have been applied meanwhile).
    created = send("create")
    assert created.status == 201, created
    assert created.body["id"] == new_id
    cancelled = send("cancel")
    assert cancelled.status == 200, cancelled
    assert cancelled.body["status"] == "cancelled"
    assigned = send("txn")
    assert assigned.status == 200, assigned
    assert assigned.body["assigneeUserKey"] == f"oid-{assignee}"
    mine = runtime.assignments_container.query_items(
        "SELECT VALUE COUNT(1) FROM c WHERE c.docType = 'assignment' AND c.targetId = 'faults'",
        enable_cross_partition_query=True,
    )
    assert list(mine) == [3]
