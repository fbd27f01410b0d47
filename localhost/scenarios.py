"""Requests the tests and the benches share: calls to the registered functions, directory users whose keys
match the tokens they sign, and direct access to stored documents for states no route reaches. Tests reach
them through `tests.support.api`."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import azure.functions as func
from azure.core.exceptions import ResourceNotFoundError
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from core.directory import DirectoryUser
from core.models import AssignmentDocument
from localhost.caller import TEST_TENANT, FunctionCaller, Response

T = TypeVar("T")

PUBLIC_FIELDS = {
    "id", "targetType", "targetId", "assigneeEmail", "assignedBy", "originatorEmail", "completionCriteria",
    "attempts", "status", "delegationChain", "targetVersion", "targetTitle", "originatorName",
    "originatorMessage", "dueAt", "expiresAt", "maxAttempts", "cancelledAt", "cancelledBy",
    "cancellationReason", "allowRejection", "rejectedAt", "rejectedBy", "rejectionReason", "allowDelegation",
    "delegatedFrom", "delegatedTo", "delegationReason", "reassignedFrom", "scheduleId", "lastReminderAt",
    "remindersSent", "createdAt", "updatedAt", "createdBy", "updatedBy", "_ts", "_etag", "taskKey",
    "candidateGroups", "assigneeUserKey", "passScore",
}  # fmt: skip

ORIGINATOR = "olivia@contoso.com"
ASSIGNEE = "adam@contoso.com"
ASSIGNEE_OID = f"oid-{ASSIGNEE}"
TXN = "/workspaces/secure/api/v1/txn"
JSON = {"content-type": "application/json"}
GROUP = "g-txn-reviewers"
ACTIONS = {
    "events": "post_progress_event",
    "complete": "complete_assignment",
    "reject": "reject_assignment",
    "cancel": "cancel_assignment",
    "reassign": "reassign_assignment",
    "delegate": "delegate_assignment",
}


def key_of(upn: str) -> str:
    """The user key (`oid`) `app.tokens.user(upn)` signs by default; directory users here share it."""
    return f"oid-{upn.lower()}"


# --- the directory ------------------------------------------------------------------------------------

_known: set[tuple[str, str, str, str]] = set()
_known_lock = threading.Lock()


def _database_of(app: FunctionCaller) -> tuple[str, str]:
    """What these caches are about: one account's database (a runtime's id may be reused once it is gone)."""
    return app.runtime.settings.cosmos_endpoint, app.runtime.settings.cosmos_database


def known_user(app: FunctionCaller, upn: str, *, tenant: str = TEST_TENANT) -> DirectoryUser:
    """An enabled directory user whose key is `key_of(upn)`; written once per database and tenant."""
    user = DirectoryUser(user_key=key_of(upn), upn=upn.lower(), display_name="A user", account_enabled=True)
    marker = (*_database_of(app), tenant, user.upn)
    with _known_lock:
        if marker in _known:
            return user
    app.runtime.user_registry.put(tenant, user)
    with _known_lock:
        _known.add(marker)
    return user


def new_upn() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@contoso.com"


def put_user(
    app: FunctionCaller,
    user_key: str,
    body: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    raw: bytes | None = None,
) -> Response:
    return app.call(
        "put_user",
        method="PUT",
        url=f"/users/{user_key}",
        token=token or app.tokens.admin_app(),
        json_body=body,
        body=raw,
        headers={"content-type": "application/json"},
        route_params={"userKey": user_key},
    )


def add_user(
    app: FunctionCaller, upn: str | None = None, *, enabled: bool = True, user_key: str | None = None
) -> tuple[str, str]:
    """A directory user added through `PUT /users`; its key is the one `app.tokens.user(upn)` signs unless
    given. Returns (userKey, upn)."""
    upn = (upn or new_upn()).lower()
    user_key = user_key or key_of(upn)
    response = put_user(app, user_key, {"upn": upn, "displayName": "Test User", "accountEnabled": enabled})
    assert response.status in (200, 201), response.body
    return user_key, upn


def new_user(app: FunctionCaller, *, enabled: bool = True, upn: str | None = None) -> DirectoryUser:
    """A directory user whose key is the `oid` that `app.tokens.user(upn)` signs, so they can sign in too."""
    upn = (upn or f"u-{uuid.uuid4().hex[:10]}@contoso.com").lower()
    user = DirectoryUser(user_key=key_of(upn), upn=upn, display_name="A user", account_enabled=enabled)
    app.runtime.user_registry.put(TEST_TENANT, user)
    return user


# --- assignments --------------------------------------------------------------------------------------


def new_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "targetType": "chat",
        "targetId": "chat-1",
        "assigneeEmail": ASSIGNEE,
        "completionCriteria": "chat_visited",
    }
    body.update(overrides)
    return body


def create(
    app: FunctionCaller, body: dict[str, Any], *, token: str | None = None, register: bool = True, **kw: Any
) -> Response:
    """POST /assignments, by default as ORIGINATOR. The users the body names are put in the directory
    first (keys from `key_of`), unless `register` is False."""
    if register:
        for field in ("assigneeEmail", "originatorEmail"):
            value = body.get(field)
            if isinstance(value, str) and "@" in value:
                known_user(app, value)
    return app.call(
        "create_assignment",
        method="POST",
        url="/assignments",
        token=token or app.tokens.user(ORIGINATOR),
        json_body=body,
        **kw,
    )


def new_assignment(app: FunctionCaller, **overrides: Any) -> dict[str, Any]:
    response = create(app, new_body(**overrides))
    assert response.status == 201, response.body
    return response.json()  # type: ignore[no-any-return]


def new_task(app: FunctionCaller, **overrides: Any) -> dict[str, Any]:
    """An unassigned task of ORIGINATOR's, claimable by members of GROUP."""
    body = new_body(taskKey="review", candidateGroups=[GROUP], **overrides)
    del body["assigneeEmail"]
    response = create(app, body)
    assert response.status == 201, response.body
    return response.json()  # type: ignore[no-any-return]


def get(app: FunctionCaller, assignment_id: str, token: str) -> Response:
    return app.call(
        "get_assignment", url=f"/assignments/{assignment_id}", token=token, route_params={"id": assignment_id}
    )


def assert_problem(response: Response, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, response.body
    assert response.content_type.startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status
    assert problem["code"] == code
    assert {"type", "title", "detail", "traceId"} <= problem.keys()
    return problem  # type: ignore[no-any-return]


def ok(response: Response, status: int = 200) -> dict[str, Any]:
    assert response.status == status, response.body
    body: dict[str, Any] = response.json()
    assert set(body) == PUBLIC_FIELDS
    assert response.headers["etag"] == body["_etag"]
    return body


# --- writes -------------------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def now_iso(offset: timedelta = timedelta()) -> str:
    return iso(datetime.now(UTC) + offset)


def _call_assignment(
    app: FunctionCaller, function_name: str, assignment_id: str, path: str = "", *, token: str | None, **kw: Any
) -> Response:
    """A call to /assignments/{id}{path}, by default as ORIGINATOR."""
    return app.call(
        function_name,
        url=f"/assignments/{assignment_id}{path}",
        token=token or app.tokens.user(ORIGINATOR),
        route_params={"id": assignment_id},
        **kw,
    )


def act(
    app: FunctionCaller,
    action: str,
    assignment_id: str,
    body: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> Response:
    """POST /assignments/{id}/{action}; by default the originator acts, with a JSON body when one is given."""
    return _call_assignment(
        app,
        ACTIONS[action],
        assignment_id,
        f"/{action}",
        method="POST",
        token=token,
        json_body=body,
        body=raw,
        headers=headers,
    )


def post_event(
    app: FunctionCaller,
    assignment_id: str,
    kind: str,
    *,
    token: str | None = None,
    event_id: str | None = None,
    **fields: Any,
) -> Response:
    body = {"eventId": event_id or uuid.uuid4().hex, "type": kind, "occurredAt": now_iso(), **fields}
    return act(app, "events", assignment_id, body, token=token or app.tokens.user(ASSIGNEE))


def patch(
    app: FunctionCaller,
    assignment_id: str,
    body: dict[str, Any],
    *,
    if_match: str | None,
    token: str | None = None,
    content_type: str = "application/merge-patch+json",
    headers: dict[str, str] | None = None,
) -> Response:
    all_headers = {"content-type": content_type, **(headers or {})}
    if if_match is not None:
        all_headers["if-match"] = if_match
    return _call_assignment(
        app, "edit_assignment", assignment_id, method="PATCH", token=token, json_body=body, headers=all_headers
    )


def delegate(
    app: FunctionCaller,
    assignment_id: str,
    body: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    **kw: Any,
) -> Response:
    """POST /assignments/{id}/delegate (`kw` as for `act`), by default as ASSIGNEE and as JSON, even a raw body."""
    return act(
        app,
        "delegate",
        assignment_id,
        body,
        token=token or app.tokens.user(ASSIGNEE),
        headers={**JSON, **(headers or {})},
        **kw,
    )


def txn(
    app: FunctionCaller,
    operation: str,
    params: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    body: Any = None,
    **kw: Any,
) -> Response:
    """POST to txn/assign or txn/unassign; `params` is wrapped in the seed's `{"params": ...}`."""
    return app.call(
        f"txn_{operation}",
        method="POST",
        url=f"{TXN}/{operation}",
        token=token or app.tokens.user(ORIGINATOR),
        json_body={"params": params} if body is None else body,
        **kw,
    )


def assign(app: FunctionCaller, submit_key: Any, user_key: Any, **kw: Any) -> Response:
    return txn(app, "assign", {"submitKey": submit_key, "userKey": user_key}, **kw)


def unassign(app: FunctionCaller, submit_key: Any, **kw: Any) -> Response:
    return txn(app, "unassign", {"submitKey": submit_key}, **kw)


# --- stored documents ---------------------------------------------------------------------------------


def stored(app: FunctionCaller, assignment_id: str, *, tenant: str = TEST_TENANT) -> AssignmentDocument | None:
    return app.runtime.store.read(tenant, assignment_id)


def stored_doc(app: FunctionCaller, assignment_id: str) -> AssignmentDocument:
    document = stored(app, assignment_id)
    assert document is not None
    return document


def change_stored(app: FunctionCaller, assignment_id: str, **fields: Any) -> None:
    """Put the assignment into a state no route reaches (e.g. a persisted expiry), bypassing the routes."""
    document = stored_doc(app, assignment_id)
    # A new version, as every write makes, so the projector takes it as news.
    changed = document.model_copy(update={"version": document.version + 1, **fields})
    app.runtime.assignments_container.replace_item(document.id, changed.to_cosmos())


def successors_of(app: FunctionCaller, assignment_id: str) -> list[dict[str, Any]]:
    root = assignment_id.split(".")[0]
    items = app.runtime.assignments_container.query_items(
        "SELECT * FROM c WHERE c.delegatedFrom = @id",
        parameters=[{"name": "@id", "value": assignment_id}],
        partition_key=f"{TEST_TENANT}:{root}",
    )
    return list(items)


def version_of(app: FunctionCaller, assignment_id: str) -> int:
    return stored_doc(app, assignment_id).version


def event_types(app: FunctionCaller, assignment_id: str, *, tenant: str = TEST_TENANT) -> list[str]:
    """The types of the assignment's event documents, oldest first."""
    types: list[str] = []
    token: str | None = None
    while True:
        events, token = app.runtime.store.history_page(tenant, assignment_id, page_size=100, continuation_token=token)
        types += [str(event.type) for event in events]
        if token is None:
            return types


# --- the change feed, in-process ----------------------------------------------------------------------


class Collected(func.Out[T]):
    """An output binding's value, as the host would collect it."""

    def __init__(self) -> None:
        self.value: T | None = None

    def set(self, val: T) -> None:
        self.value = val

    def get(self) -> T:
        assert self.value is not None, "nothing was set"
        return self.value


_feed_positions: dict[tuple[str, str], str] = {}
_feed_lock = threading.Lock()


def catch_up(app: FunctionCaller) -> int:
    """Run the registered change-feed function on everything written since the last call (per database), as
    the host would, and the retry function on what it hands to the retry queue; return the documents fed."""
    container = app.runtime.assignments_container
    fed = 0
    with _feed_lock:
        token = _feed_positions.get(_database_of(app))
        position: dict[str, Any] = {"continuation": token} if token else {"start_time": "Beginning"}
        for page in container.query_items_change_feed(max_item_count=100, **position).by_page():
            documents = list(page)
            token = container.client_connection.last_response_headers.get("etag")
            if documents:
                retries: Collected[list[str]] = Collected()
                batch = func.DocumentList([func.Document.from_dict(document) for document in documents])
                app.functions["project_changes"].call(documents=batch, retries=retries)
                for body in retries.value or []:
                    # The subclass the host hands queue triggers (it carries `dequeue_count`).
                    message = QueueMessage(body=body.encode(), dequeue_count=1)
                    app.functions["retry_changes"].call(message=message)
                fed += len(documents)
        if token:
            _feed_positions[_database_of(app)] = token
    return fed


# --- what the change feed delivers, and what it leaves behind -----------------------------------------


class FeedTape:
    """Every version of every assignment and event document written since it was made, in write order: what a
    change feed that never collapses would deliver. `snap()` after each write records the documents that
    changed (exactly as stored, system properties included), so a test or bench can deliver any sequence of
    versions to `handle_changes`: duplicated, reordered, or with intermediate versions left out."""

    def __init__(self, app: FunctionCaller) -> None:
        self._container = app.runtime.assignments_container
        self._seen: set[tuple[str, str, str]] = set()
        self._since = 0
        self.bodies: list[dict[str, Any]] = []
        self.snap()
        self.bodies.clear()

    def snap(self) -> list[dict[str, Any]]:
        """Record and return the documents written since the last snap (assignments before events, by id)."""
        # `_ts` has whole seconds: read from the last second seen again, and skip what was recorded.
        query = "SELECT * FROM c WHERE (c.docType = 'assignment' OR c.docType = 'event') AND c._ts >= @since"
        new = []
        for body in self._container.query_items(
            query, parameters=[{"name": "@since", "value": self._since}], enable_cross_partition_query=True
        ):
            self._since = max(self._since, int(body["_ts"]))
            key = (str(body["pk"]), str(body["id"]), str(body["_etag"]))
            if key not in self._seen:
                self._seen.add(key)
                new.append(body)
        new.sort(key=lambda body: (body["docType"] != "assignment", body["id"]))
        self.bodies += new
        return new

    def versions(self, document_id: str) -> list[dict[str, Any]]:
        """Every recorded version of one document, oldest first."""
        return [body for body in self.bodies if body["id"] == document_id]

    def latest(self) -> list[dict[str, Any]]:
        """The newest recorded version of each document: what a latest-version feed read now would deliver."""
        newest: dict[tuple[str, str], dict[str, Any]] = {}
        for body in self.bodies:
            newest[(str(body["pk"]), str(body["id"]))] = body
        return list(newest.values())


def notifications_queue(app: FunctionCaller, name: str | None = None) -> QueueClient:
    """The notifications queue of the app's settings (or another queue of the same account), decoding base64
    as the Functions queue trigger does."""
    settings = app.runtime.settings
    assert settings.azure_web_jobs_storage, "the in-process stack has a Storage connection string"
    return QueueClient.from_connection_string(
        settings.azure_web_jobs_storage,
        name or settings.notifications_queue,
        message_decode_policy=TextBase64DecodePolicy(),
    )


def drain_queue(client: QueueClient) -> list[dict[str, Any]]:
    """Receive and delete every message the queue holds now, as JSON; an absent queue holds none."""
    messages: list[dict[str, Any]] = []
    try:
        while True:
            batch = list(client.receive_messages(max_messages=32, visibility_timeout=300))
            if not batch:
                return messages
            for message in batch:
                messages.append(json.loads(message.content))
                client.delete_message(message)
    except ResourceNotFoundError:
        return messages
