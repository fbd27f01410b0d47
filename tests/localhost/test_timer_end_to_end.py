"""The timer end to end, over a real socket and with the real clock: function_app's own functions on the local
host (HTTP, the Cosmos DB trigger that files the due index and sends notifications, the queue trigger that
retries it, and the timer on `%SWEEP_SCHEDULE%`, here every two seconds). An assignment created to expire a few
seconds ahead becomes `expired` after a sweep, shows in the originator's `expired` list (a view), and its
`expired` notification reaches the notifications queue (Azurite, base64 as the queue trigger reads it)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import requests

from core.bootstrap import Runtime
from core.directory import DirectoryUser
from localhost.app_settings import app_settings_of
from localhost.indexing import index_app
from localhost.scenarios import drain_queue, iso, notifications_queue
from localhost.stack import make_settings
from tests.localhost.conftest import StartHost
from tests.support import polling
from tests.support.app import TEST_TENANT, InstallRuntime, Tokens
from tests.support.services import RunningService
from tests.support.tokens import JwksServer

T = TypeVar("T")
# Bounds a hang, it does not measure speed: the feed polls every 5 s (the host's default feedPollDelay), twice.
DEADLINE_S = 60


def poll(what: str, check: Callable[[], T | None]) -> T:
    """Poll `check` until it returns something truthy (every probe here returns None or a non-empty value)."""
    return polling.eventually(check, what, timeout=DEADLINE_S, interval=0.25)


def test_an_assignment_expires_on_the_timer_shows_in_the_expired_list_and_its_message_is_queued(
    start_host: StartHost,
    own_runtime: InstallRuntime,
    cosmos_service: RunningService,
    azurite_service: RunningService,
    jwks_server: JwksServer,
    tokens: Tokens,
) -> None:
    # A database of its own (the feed starts from the beginning, the sweep's cursor is per database), a sweep
    # every two seconds, and no expiry warning (so the one timer event is `expired`).
    settings = make_settings(
        cosmos_service,
        azurite_service,
        jwks_server,
        SWEEP_SCHEDULE="*/2 * * * * *",
        EXPIRY_WARNING_HOURS=0,
        NOTIFICATIONS_QUEUE=f"notify-{uuid.uuid4().hex[:12]}",
        CHANGES_RETRY_QUEUE=f"retry-{uuid.uuid4().hex[:12]}",
    )
    runtime = Runtime(settings)
    app = own_runtime(runtime)  # the functions the host runs in-process use this runtime
    runtime.store  # noqa: B018 - the containers exist before the listeners start, as the run command ensures
    host = start_host(index_app("function_app"), settings=app_settings_of(settings))
    assert "sweep_due: timerTrigger (*/2 * * * * *)" in host.descriptions

    originator = f"ada-{uuid.uuid4().hex[:8]}@contoso.com"
    assignee = f"grace-{uuid.uuid4().hex[:8]}@contoso.com"
    runtime.user_registry.put(TEST_TENANT, DirectoryUser(f"oid-{assignee}", assignee, "Grace", account_enabled=True))
    auth = {"Authorization": f"Bearer {tokens.user(originator)}"}
    expires_at = iso(datetime.now(UTC) + timedelta(seconds=4))
    body = {
        "targetType": "chat",
        "targetId": "onboarding",
        "assigneeEmail": assignee,
        "completionCriteria": "chat_visited",
        "expiresAt": expires_at,
    }
    created = requests.post(f"{host.url}/assignments", json=body, headers=auth, timeout=10)
    assert created.status_code == 201, created.text
    assignment_id = created.json()["id"]
    assert created.json()["status"] == "pending"

    def expired() -> dict[str, Any] | None:
        read = requests.get(f"{host.url}/assignments/{assignment_id}", headers=auth, timeout=10)
        assert read.status_code == 200, read.text
        shown: dict[str, Any] = read.json()
        return shown if shown["status"] == "expired" else None

    shown = poll("GET shows the assignment expired", expired)
    assert shown["updatedBy"] == "system:timer"
    assert shown["expiresAt"] == expires_at
    assert shown["updatedAt"] >= expires_at  # the invariant: expired => expiresAt <= updatedAt
    assert shown["updatedAt"] <= iso(datetime.now(UTC))

    def listed() -> list[str] | None:
        params = {"role": "originator", "status": "expired"}
        response = requests.get(f"{host.url}/assignments", params=params, headers=auth, timeout=10)
        assert response.status_code == 200, response.text
        ids = [item["id"] for item in response.json()["items"]]
        return ids or None

    assert poll("the originator's expired list shows it", listed) == [assignment_id]

    queue = notifications_queue(app)
    messages: list[dict[str, Any]] = []

    def expired_message() -> dict[str, Any] | None:
        messages.extend(drain_queue(queue))  # none until the notifier creates the queue with its first message
        return next((m for m in messages if m["assignmentId"] == assignment_id and m["type"] == "expired"), None)

    message = poll("the expired notification is on the queue", expired_message)
    assert message["tenantId"] == TEST_TENANT
    assert message["assignment"]["status"] == "expired"
    assert [(r["upn"], r["role"]) for r in message["recipients"]] == [
        (assignee, "assignee"),
        (originator, "originator"),
    ]
    history = requests.get(f"{host.url}/assignments/{assignment_id}/history", headers=auth, timeout=10).json()
    (event,) = [item for item in history["items"] if item["type"] == "expired"]
    assert (event["eventId"], event["actor"]) == (message["eventId"], "system:timer")
    assert [m["type"] for m in messages if m["assignmentId"] == assignment_id] == ["assigned", "expired"]
