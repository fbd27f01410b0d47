"""The change feed end to end over a real socket: the local host runs function_app's own functions (HTTP routes,
the Cosmos DB trigger `project_changes` with its real feed poller, the queue trigger `retry_changes`), and the
test only speaks HTTP and reads Storage queues.

Writes over HTTP put their messages on the notifications queue with the recipients of the table, a delegation
reaches the delegate's inbox and leaves the delegator's active list (GET /assignments), and an event the notifier
can never send ends in the retry queue's `-poison` queue after `maxDequeueCount` tries, blocking nothing else.
Every wait polls up to a deadline that only bounds a hang: nothing here asserts a speed."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import requests

from core.bootstrap import Runtime
from core.errors import ServiceUnavailable
from core.queues import MessageQueue
from core.settings import Settings
from localhost.app_settings import app_settings_of
from localhost.change_feed import DEFAULT_FEED_POLL_DELAY_MS
from localhost.host import LocalHost
from localhost.indexing import index_app
from localhost.scenarios import drain_queue, key_of, known_user, notifications_queue
from tests.localhost.conftest import StartHost
from tests.support import polling
from tests.support.app import TEST_TENANT, FunctionCaller, InstallRuntime, Tokens

T = TypeVar("T")
# Bounds a hang on a loaded machine (the feed polls every 5 s when idle); never a measure of speed.
DEADLINE_S = 90
ORIGINATOR = "olivia@contoso.com"


def eventually(probe: Callable[[], T | None], what: str) -> T:
    """Poll `probe` until it returns something truthy."""
    return polling.eventually(probe, what, timeout=DEADLINE_S, interval=0.1)


def own_settings(settings: Settings) -> Settings:
    """A database and queues of the test's own, so its feed, views and messages are its own."""
    suffix = uuid.uuid4().hex[:10]
    return settings.model_copy(
        update={
            "cosmos_database": f"e2e-{suffix}",
            "notifications_queue": f"notify-{suffix}",
            "changes_retry_queue": f"retry-{suffix}",
        }
    )


def start(start_host: StartHost, own_runtime: InstallRuntime, runtime: Runtime) -> tuple[LocalHost, FunctionCaller]:
    app = own_runtime(runtime)
    runtime.store  # noqa: B018 - the monitored container exists before the feed listener opens it
    host = start_host(index_app("function_app"), settings=app_settings_of(runtime.settings))
    assert any(d.startswith("project_changes: cosmosDBTrigger") for d in host.descriptions), host.descriptions
    assert any(d.startswith("retry_changes: queueTrigger") for d in host.descriptions), host.descriptions
    return host, app


class Client:
    """HTTP calls as a signed-in user."""

    def __init__(self, host: LocalHost, tokens: Tokens, upn: str) -> None:
        self.url = host.url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {tokens.user(upn)}"

    def post(self, path: str, body: dict[str, Any], status: int) -> dict[str, Any]:
        response = self.session.post(f"{self.url}{path}", json=body, timeout=30)
        assert response.status_code == status, response.text
        return response.json()  # type: ignore[no-any-return]

    def list_ids(self, **params: str) -> list[str]:
        response = self.session.get(f"{self.url}/assignments", params=params, timeout=30)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]


def recipient(upn: str, role: str) -> dict[str, str]:
    return {"userKey": key_of(upn), "upn": upn, "role": role}


def test_writes_over_http_reach_the_queue_and_the_inboxes(
    start_host: StartHost, own_runtime: InstallRuntime, settings: Settings, tokens: Tokens
) -> None:
    host, app = start(start_host, own_runtime, Runtime(own_settings(settings)))
    ann, bob = f"ann-{uuid.uuid4().hex[:6]}@contoso.com", f"bob-{uuid.uuid4().hex[:6]}@contoso.com"
    for upn in (ann, bob):
        known_user(app, upn)
    olivia, as_ann, as_bob = (Client(host, tokens, upn) for upn in (ORIGINATOR, ann, bob))
    queue = notifications_queue(app)
    received: list[dict[str, Any]] = []

    def message(assignment_id: str, event_type: str) -> dict[str, Any] | None:
        received.extend(drain_queue(queue))
        found = [m for m in received if (m["assignmentId"], m["type"]) == (assignment_id, event_type)]
        return found[0] if found else None

    body = {"targetType": "chat", "targetId": "e2e", "assigneeEmail": ann, "completionCriteria": "chat_visited"}
    created = olivia.post("/assignments", body, 201)
    assigned = eventually(lambda: message(created["id"], "assigned"), "the assigned message")
    assert assigned["recipients"] == [recipient(ann, "assignee")]
    assert assigned["tenantId"] == TEST_TENANT
    assert assigned["assignment"]["assigneeEmail"] == ann
    assert eventually(lambda: as_ann.list_ids(role="assignee"), "Ann's inbox") == [created["id"]]

    successor = as_ann.post(f"/assignments/{created['id']}/delegate", {"toUpn": bob}, 201)
    delegated = eventually(lambda: message(created["id"], "delegated"), "the delegated message")
    assert delegated["recipients"] == [
        recipient(bob, "assignee"),
        recipient(ann, "previousAssignee"),
        recipient(ORIGINATOR, "originator"),
    ]
    assert eventually(lambda: as_bob.list_ids(role="assignee"), "Bob's inbox") == [successor["id"]]
    active = {"role": "assignee", "status": "pending,in_progress"}
    eventually(lambda: as_ann.list_ids(**active) == [], "the delegation leaving Ann's active list")
    assert as_ann.list_ids(role="assignee", status="delegated") == [created["id"]]

    olivia.post(f"/assignments/{successor['id']}/cancel", {}, 200)
    cancelled = eventually(lambda: message(successor["id"], "cancelled"), "the cancelled message")
    assert cancelled["recipients"] == [recipient(bob, "assignee")]
    assert cancelled["assignment"]["status"] == "cancelled"
    eventually(lambda: as_bob.list_ids(**active) == [], "the cancel leaving Bob's active list")

    ids = [m["eventId"] for m in received]
    assert len(ids) == len(set(ids)), "no event was sent twice"
    assert {(m["assignmentId"], m["type"]) for m in received} == {
        (created["id"], "assigned"),
        (created["id"], "delegated"),
        (successor["id"], "cancelled"),
    }


class Refusing:
    """The notifications queue, refusing every message of one assignment: an event that can never be sent."""

    def __init__(self, inner: MessageQueue, refused: str) -> None:
        self._inner = inner
        self._refused = refused

    def send(self, message: dict[str, Any]) -> None:
        if message["assignmentId"] == self._refused:
            raise ServiceUnavailable("this message is never taken", retry_after=1)
        self._inner.send(message)


class PoisonedRuntime(Runtime):
    refused = ""

    @property
    def notifications(self) -> MessageQueue:
        return Refusing(super().notifications, self.refused)


def test_an_event_that_can_never_be_sent_ends_in_the_poison_queue_and_blocks_nothing(
    start_host: StartHost, own_runtime: InstallRuntime, settings: Settings, tokens: Tokens
) -> None:
    runtime = PoisonedRuntime(own_settings(settings))
    poisoned = f"poison-{uuid.uuid4().hex[:8]}"
    runtime.refused = poisoned
    host, app = start(start_host, own_runtime, runtime)
    ann = f"ann-{uuid.uuid4().hex[:6]}@contoso.com"
    known_user(app, ann)
    olivia = Client(host, tokens, ORIGINATOR)
    body = {"targetType": "chat", "targetId": "e2e", "assigneeEmail": ann, "completionCriteria": "chat_visited"}
    olivia.post("/assignments", {**body, "id": poisoned}, 201)
    healthy = olivia.post("/assignments", {**body, "id": f"healthy-{uuid.uuid4().hex[:8]}"}, 201)

    retry_queue = runtime.settings.changes_retry_queue
    poison = notifications_queue(app, f"{retry_queue}-poison")
    (ref,) = eventually(lambda: drain_queue(poison), "the retry message in the poison queue")
    assert ref == {
        "tenantId": TEST_TENANT,
        "docType": "event",
        "id": f"{poisoned}:evt:0000000002",
        "pk": f"{TEST_TENANT}:{poisoned}",
    }
    # Tried by the feed, then by the queue trigger up to maxDequeueCount (5): the log says so.
    messages = drain_queue(notifications_queue(app))
    assert [(m["assignmentId"], m["type"]) for m in messages] == [(healthy["id"], "assigned")]
    assert drain_queue(notifications_queue(app, retry_queue)) == []
    # Its views were kept all the same: only the message was poison.
    assert eventually(lambda: Client(host, tokens, ann).list_ids(role="assignee"), "Ann's inbox") in (
        [healthy["id"], poisoned],
        [poisoned, healthy["id"]],
    )


def test_the_projector_polls_an_idle_feed_often_enough_to_catch_up_within_a_second() -> None:
    """docs/api-rules.md, "Lists, views and history": views reflect a write under a second locally. An idle feed
    is read again only after `feedPollDelay` (5 s when the binding leaves it out, on the real host as on the local
    one), which alone would put a write up to 5 s behind; bench_feed measures the lag."""
    (feed,) = [f for f in index_app("function_app") if f.name == "project_changes"]
    assert int(feed.trigger.get("feedPollDelay") or DEFAULT_FEED_POLL_DELAY_MS) <= 500
