"""End to end over a real socket: function_app's own functions plus a test-only change-feed function, hosted
together. A signed token creates an assignment over HTTP, reads it back, and the change-feed function is called
with the stored document and sends its id to a queue."""

import base64
import json
import uuid
from typing import Any

import requests
from azure.storage.queue import QueueClient

from core.bootstrap import Runtime
from core.directory import DirectoryUser
from localhost.indexing import index_app
from localhost.probe_app import FEED
from tests.localhost.conftest import StartHost, probe_functions
from tests.support import polling
from tests.support.app import TEST_TENANT, Tokens


def test_create_read_back_and_the_change_feed_function_sees_it(
    start_host: StartHost, runtime: Runtime, tokens: Tokens, app_settings: dict[str, str]
) -> None:
    runtime.store  # noqa: B018 - the containers exist before the listener starts, as the run command ensures
    functions = index_app("function_app") + probe_functions("localhost.probe_app", "feed_probe")
    assert "feed_probe" not in {f.name for f in index_app("function_app")}
    host = start_host(functions)
    queue = QueueClient.from_connection_string(app_settings["AzureWebJobsStorage"], app_settings["FEED_PROBE_QUEUE"])
    queue.create_queue()  # so the test can poll it before the function's first message creates it

    originator = f"ada-{uuid.uuid4().hex[:8]}@contoso.com"
    assignee = f"grace-{uuid.uuid4().hex[:8]}@contoso.com"
    runtime.user_registry.put(TEST_TENANT, DirectoryUser(f"oid-{assignee}", assignee, "Grace", account_enabled=True))
    auth = {"Authorization": f"Bearer {tokens.user(originator)}"}
    assignment_id = f"e2e-{uuid.uuid4().hex}"
    body = {
        "id": assignment_id,
        "targetType": "chat",
        "targetId": "onboarding",
        "assigneeEmail": assignee,
        "completionCriteria": "chat_visited",
    }
    created = requests.post(f"{host.url}/assignments", json=body, headers=auth, timeout=10)
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == f"/assignments/{assignment_id}"
    assert created.headers["Content-Type"] == "application/json"

    read = requests.get(f"{host.url}/assignments/{assignment_id}", headers=auth, timeout=10)
    assert read.status_code == 200
    assert read.json()["id"] == assignment_id
    assert read.json()["originatorEmail"] == originator
    assert read.headers["ETag"] == created.headers["ETag"]

    def delivered(entries: list[tuple[float, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
        return [document for _, batch in entries for document in batch if document["id"] == assignment_id]

    (document,) = FEED.wait_for(delivered, timeout=10)
    assert document["status"] == "pending"
    assert document["pk"] == f"{TEST_TENANT}:{assignment_id}"  # the stored document, internal fields included
    assert document["_etag"] == created.headers["ETag"]

    # The function's queue output is sent once it returns: poll for it.
    sent: list[list[str]] = []

    def sent_its_id() -> bool:
        sent.extend(json.loads(base64.b64decode(m.content)) for m in queue.receive_messages(max_messages=32))
        return any(assignment_id in ids for ids in sent)

    polling.eventually(sent_its_id, "the change-feed function's message on its queue", timeout=5, interval=0.05)


def test_without_a_token_the_apps_own_401_comes_back(start_host: StartHost, runtime: Runtime) -> None:
    host = start_host(index_app("function_app"))
    response = requests.get(f"{host.url}/assignments/anything", timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.headers["Content-Type"] == "application/problem+json"
