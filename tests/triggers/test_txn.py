"""POST /workspaces/secure/api/v1/txn/assign and /txn/unassign (seed 003), through the registered functions,
against the emulator: every error key with its exact message and status, the order of the checks, round
trips, the seed's own example, and concurrent assigns from several OS processes."""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from core.aggregate import Decision
from core.bootstrap import Runtime, set_runtime
from core.directory import DirectoryUser
from core.errors import AlreadyAssigned, ServiceUnavailable
from core.models import AssignmentDocument, IdempotencyRecord, format_timestamp
from core.services import Command, Deps, assign_task
from core.settings import Settings
from core.store import AssignmentStore
from localhost.stack import IsolatedSettings
from tests.support.api import (
    GROUP,
    JSON,
    ORIGINATOR,
    PUBLIC_FIELDS,
    TXN,
    assign,
    change_stored,
    create,
    event_types,
    get,
    new_body,
    new_task,
    new_user,
    stored_doc,
    txn,
    unassign,
)
from tests.support.app import TEST_TENANT, FunctionCaller, InstallRuntime, Response, Tokens
from tests.support.processes import race_in_processes

MESSAGES = {
    "invalidRequest": "The request body must be a JSON object with a params map",
    "submitKeyNotSpecified": "submitKey not specified",
    "userKeyNotSpecified": "userKey not specified",
    "txnNotFound": "The transaction specified by the submitKey was not found",
    "accessDenied": "The user does not have access to transaction specified by the submitKey",
    "txnAlreadyFinished": "The transaction specified by the submitKey has already been finished (Completed or "
    "Abandoned)",
    "txnNotTask": "The transaction specified by the submitKey is not a task",
    "txnAlreadyAssigned": "The task is currently assigned to a user. To reassign it, unassign it first, then assign "
    "it to the new user.",
    "txnNotAssigned": "The task is not currently assigned to a user.",
    "userNotFound": "The user account specified by the userKey was not found",
    "unauthorized": "A valid bearer token is required",
    "forbidden": "The token lacks the required scope or role",
    "payloadTooLarge": "The request body is too large",
    "serviceUnavailable": "The service is temporarily unavailable",
    "preconditionFailed": "The task has changed since it was read",
    "idempotencyKeyReused": "This Idempotency-Key was already used with a different request body",
    "notFound": "Ensure the URL endpoint is entered correctly.",
}


# --- helpers -----------------------------------------------------------------------------------------


def assert_txn_error(response: Response, status: int, key: str, message: str | None = None) -> None:
    assert response.status == status, response.body
    assert response.content_type.startswith("application/json")
    assert response.json() == {"errorKey": key, "error": message if message is not None else MESSAGES[key]}


@pytest.fixture
def task(app: FunctionCaller) -> dict[str, Any]:
    return new_task(app)


@pytest.fixture
def user(app: FunctionCaller) -> DirectoryUser:
    return new_user(app)


class FailingDirectory:
    """A directory whose lookups fail, for the error paths nothing else can reach."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def find_by_upn(self, tenant_id: str, upn: str) -> DirectoryUser | None:
        raise self.error

    def find_by_key(self, tenant_id: str, user_key: str) -> DirectoryUser | None:
        raise self.error


# --- success -----------------------------------------------------------------------------------------

# What an assign may change; every other public field stays as it was.
CHANGED = {"assigneeEmail", "assigneeUserKey", "assignedBy", "updatedAt", "updatedBy", "_etag", "_ts", "status"}


class TestAssign:
    def test_assigns_with_three_round_trips_and_returns_the_task(
        self, app: FunctionCaller, task: dict[str, Any], user: DirectoryUser
    ) -> None:
        response, trips = app.round_trips_of(lambda: assign(app, task["id"], user.user_key))
        assert response.status == 200, response.body
        # One point read, one directory lookup (a miss: the user is new), one conditional replace.
        assert trips == 3
        body = response.json()
        assert set(body) == PUBLIC_FIELDS
        assert response.headers["etag"] == body["_etag"] != task["_etag"]
        assert body["assigneeEmail"] == user.upn
        assert body["assigneeUserKey"] == user.user_key
        assert body["assignedBy"] == ORIGINATOR
        assert body["updatedBy"] == ORIGINATOR
        assert body["updatedAt"] >= task["updatedAt"]
        assert body["status"] == "pending"
        assert {k: v for k, v in body.items() if k not in CHANGED} == {
            k: v for k, v in task.items() if k not in CHANGED
        }
        assert get(app, task["id"], app.tokens.user(ORIGINATOR)).json() == body
        document = stored_doc(app, task["id"])
        assert document.version == 2
        assert event_types(app, document.id) == ["created", "assigned"]

    def test_a_directory_cache_hit_saves_the_lookup(
        self, app: FunctionCaller, task: dict[str, Any], user: DirectoryUser
    ) -> None:
        assert assign(app, task["id"], user.user_key).status == 200
        assert unassign(app, task["id"]).status == 200
        response, trips = app.round_trips_of(lambda: assign(app, task["id"], user.user_key))
        assert response.status == 200
        assert trips == 2  # point read and conditional replace; the user came from the cache

    def test_the_assignees_upn_comes_from_the_directory_in_lower_case(
        self, app: FunctionCaller, task: dict[str, Any]
    ) -> None:
        user = new_user(app, upn=f"Mixed.{uuid.uuid4().hex[:6]}@Contoso.com")
        body = assign(app, task["id"], user.user_key).json()
        assert body["assigneeEmail"] == user.upn.lower()
        assert get(app, task["id"], app.tokens.user(user.upn)).status == 200

    def test_the_assignee_then_reads_and_candidates_no_longer_do(
        self, app: FunctionCaller, task: dict[str, Any], user: DirectoryUser
    ) -> None:
        member = app.tokens.user("mia@contoso.com", groups=[GROUP])
        assert get(app, task["id"], member).status == 200
        assert assign(app, task["id"], user.user_key).status == 200
        assert get(app, task["id"], app.tokens.user(user.upn)).status == 200
        assert get(app, task["id"], member).status == 404

    @pytest.mark.parametrize("caller", ["originator", "candidate", "admin", "assigner"])
    def test_who_may_assign(self, app: FunctionCaller, user: DirectoryUser, caller: str) -> None:
        task = new_task(app)
        actors = {
            "originator": (app.tokens.user(ORIGINATOR), ORIGINATOR),
            "candidate": (app.tokens.user("mia@contoso.com", groups=["other", GROUP]), "mia@contoso.com"),
            "admin": (app.tokens.admin_app("ops"), "app:ops"),
        }
        if caller == "assigner":
            # `assignedBy` keeps access after an unassign, and may assign again.
            first_assigner = "mia@contoso.com"
            member = app.tokens.user(first_assigner, groups=[GROUP])
            assert assign(app, task["id"], new_user(app).user_key, token=member).status == 200
            assert unassign(app, task["id"]).status == 200
            actors["assigner"] = (app.tokens.user(first_assigner), first_assigner)
        token, actor = actors[caller]
        response = assign(app, task["id"], user.user_key, token=token)
        assert response.status == 200, response.body
        assert response.json()["assignedBy"] == actor

    def test_the_seeds_example_verbatim(self, own_runtime: InstallRuntime, settings: Settings) -> None:
        # The seed's ids are fixed, and the emulator is shared by the whole session: a database of its own.
        own_database = settings.model_copy(update={"cosmos_database": f"seed-{uuid.uuid4().hex[:8]}"})
        seed_app = own_runtime(Runtime(own_database))
        body = new_body(id="15d071280b92c867f86975b9cd2e8765", taskKey="seed-task")
        del body["assigneeEmail"]
        assert create(seed_app, body).status == 201
        seed_app.runtime.user_registry.put(
            TEST_TENANT, DirectoryUser("378595572a1bd63ff9b5972b7a1c91dd", "seed.user@contoso.com", "Seed User", True)
        )
        seed_request = (
            b"{\n"
            b'"params": {\n'
            b'"submitKey": "15d071280b92c867f86975b9cd2e8765",\n'
            b'"userKey": "378595572a1bd63ff9b5972b7a1c91dd"\n'
            b"}\n"
            b"}"
        )
        response = seed_app.call(
            "txn_assign",
            method="POST",
            url=f"{TXN}/assign",
            token=seed_app.tokens.user(ORIGINATOR),
            body=seed_request,
            headers={"Content-Type": "application/json"},
        )
        assert response.status == 200, response.body
        assert response.json()["id"] == "15d071280b92c867f86975b9cd2e8765"
        assert response.json()["assigneeUserKey"] == "378595572a1bd63ff9b5972b7a1c91dd"
        assert response.json()["assigneeEmail"] == "seed.user@contoso.com"


class TestUnassign:
    def test_unassign_clears_the_assignee_and_the_task_can_be_assigned_again(
        self, app: FunctionCaller, task: dict[str, Any], user: DirectoryUser
    ) -> None:
        assigned = assign(app, task["id"], user.user_key).json()
        response, trips = app.round_trips_of(lambda: unassign(app, task["id"]))
        assert response.status == 200, response.body
        assert trips == 2  # one point read, one conditional replace
        body = response.json()
        assert body["assigneeEmail"] is None
        assert body["assigneeUserKey"] is None
        assert body["status"] == "pending"
        assert body["assignedBy"] == assigned["assignedBy"]
        assert response.headers["etag"] == body["_etag"]
        assert event_types(app, task["id"])[-1] == "unassigned"
        again = assign(app, task["id"], new_user(app).user_key)
        assert again.status == 200
        assert again.json()["assigneeEmail"] != user.upn

    def test_unassigning_a_started_task_hands_it_back_as_pending(
        self, app: FunctionCaller, task: dict[str, Any], user: DirectoryUser
    ) -> None:
        assert assign(app, task["id"], user.user_key).status == 200
        change_stored(app, task["id"], status="in_progress")
        body = unassign(app, task["id"]).json()
        assert body["status"] == "pending"
        assert body["assigneeEmail"] is None

    @pytest.mark.parametrize("caller", ["originator", "assignee", "admin", "assigner"])
    def test_who_may_unassign(
        self, app: FunctionCaller, task: dict[str, Any], user: DirectoryUser, caller: str
    ) -> None:
        member = app.tokens.user("mia@contoso.com", groups=[GROUP])
        assert assign(app, task["id"], user.user_key, token=member).status == 200
        token = {
            "originator": app.tokens.user(ORIGINATOR),
            "assignee": app.tokens.user(user.upn),
            "admin": app.tokens.admin_app(),
            "assigner": app.tokens.user("mia@contoso.com"),
        }[caller]
        assert unassign(app, task["id"], token=token).status == 200


# --- each error key ----------------------------------------------------------------------------------


class TestBodyErrors:
    @pytest.mark.parametrize(
        ("operation", "body", "headers"),
        [
            *[
                (operation, body, headers)
                for operation in ("assign", "unassign")
                for body, headers in (
                    (b"{not json", JSON),
                    (b'{"params": {}}', {"content-type": "text/plain"}),
                    (b'{"params": {}}', {}),
                    (b"[1]", JSON),
                    (b'{"params": []}', JSON),
                    (b'{"params": null}', JSON),
                    (b'{"other": 1}', JSON),
                    (b'{"params": {"submitKey": 1}, "other": 1}', JSON),
                )
            ],
            ("assign", b'{"params": {"submitKey": "s", "userKey": false}}', JSON),
            ("assign", b'{"params": {"submitKey": ["s"], "userKey": "u"}}', JSON),
            ("unassign", b'{"params": {"submitKey": {"id": "s"}}}', JSON),
        ],
    )
    def test_invalid_request(self, app: FunctionCaller, operation: str, body: bytes, headers: dict[str, str]) -> None:
        response = app.call(
            f"txn_{operation}",
            method="POST",
            url=f"{TXN}/{operation}",
            token=app.tokens.user(ORIGINATOR),
            body=body,
            headers=headers,
        )
        assert_txn_error(response, 400, "invalidRequest")

    @pytest.mark.parametrize(
        ("body", "key", "message"),
        [
            ({"params": {"submitKey": "s", "userKey": "u"}, "extra": 1}, "invalidRequestAttribute",
             "Invalid request attribute: extra"),
            ({"params": {"submitKey": "s", "userKey": "u", "assignee": "x"}}, "invalidAssignAttribute",
             "Invalid assign attribute: assignee"),
            ({"params": {"userKey": "u"}}, "submitKeyNotSpecified", None),
            ({"params": {"submitKey": None, "userKey": "u"}}, "submitKeyNotSpecified", None),
            ({"params": {"submitKey": "", "userKey": "u"}}, "submitKeyNotSpecified", None),
            ({"params": {"submitKey": "s"}}, "userKeyNotSpecified", None),
            ({"params": {"submitKey": "s", "userKey": None}}, "userKeyNotSpecified", None),
            ({"params": {"submitKey": "s", "userKey": ""}}, "userKeyNotSpecified", None),
        ],
    )  # fmt: skip
    def test_seed_body_errors_cost_no_round_trip(
        self, app: FunctionCaller, body: dict[str, Any], key: str, message: str | None
    ) -> None:
        response, trips = app.round_trips_of(lambda: txn(app, "assign", body=body))
        assert_txn_error(response, 400, key, message)
        assert trips == 0

    @pytest.mark.parametrize(
        ("body", "key", "message"),
        [
            ({"params": {"submitKey": "s"}, "extra": 1}, "invalidRequestAttribute", "Invalid request attribute: extra"),
            ({"params": {"submitKey": "s", "userKey": "u"}}, "invalidAssignAttribute",
             "Invalid assign attribute: userKey"),
            ({"params": {}}, "submitKeyNotSpecified", None),
            ({"params": {"submitKey": ""}}, "submitKeyNotSpecified", None),
        ],
    )  # fmt: skip
    def test_unassign_body_errors(
        self, app: FunctionCaller, body: dict[str, Any], key: str, message: str | None
    ) -> None:
        assert_txn_error(txn(app, "unassign", body=body), 400, key, message)

    def test_a_body_over_64_kib_is_413(self, app: FunctionCaller) -> None:
        response = assign(app, "x" * (65 * 1024), "u")
        assert_txn_error(response, 413, "payloadTooLarge")


class TestLookupAndStateErrors:
    @pytest.mark.parametrize("submit_key", ["no-such-task", "bad id!", " ", "x" * 200])
    def test_txn_not_found(self, app: FunctionCaller, user: DirectoryUser, submit_key: str) -> None:
        assert_txn_error(assign(app, submit_key, user.user_key), 400, "txnNotFound")
        assert_txn_error(unassign(app, submit_key), 400, "txnNotFound")

    def test_access_denied_to_a_stranger_and_a_non_member(
        self, app: FunctionCaller, task: dict[str, Any], user: DirectoryUser
    ) -> None:
        for token in (app.tokens.user("eve@contoso.com"), app.tokens.user("otto@contoso.com", groups=["g-other"])):
            assert_txn_error(assign(app, task["id"], user.user_key, token=token), 400, "accessDenied")
            assert_txn_error(unassign(app, task["id"], token=token), 400, "accessDenied")

    def test_the_assignee_may_not_assign_and_a_candidate_may_not_unassign(
        self, app: FunctionCaller, task: dict[str, Any], user: DirectoryUser
    ) -> None:
        assert assign(app, task["id"], user.user_key).status == 200
        assignee = app.tokens.user(user.upn)
        assert_txn_error(assign(app, task["id"], new_user(app).user_key, token=assignee), 400, "accessDenied")
        member = app.tokens.user("mia@contoso.com", groups=[GROUP])
        assert_txn_error(unassign(app, task["id"], token=member), 400, "accessDenied")

    @pytest.mark.parametrize("status", ["completed", "failed", "expired", "cancelled", "rejected", "delegated"])
    def test_txn_already_finished(
        self, app: FunctionCaller, task: dict[str, Any], user: DirectoryUser, status: str
    ) -> None:
        change_stored(app, task["id"], status=status)
        assert_txn_error(assign(app, task["id"], user.user_key), 400, "txnAlreadyFinished")
        assert_txn_error(unassign(app, task["id"]), 400, "txnAlreadyFinished")

    def test_txn_already_finished_once_expires_at_has_passed(
        self, app: FunctionCaller, task: dict[str, Any], user: DirectoryUser
    ) -> None:
        change_stored(app, task["id"], expires_at=datetime.now(UTC) - timedelta(seconds=1))
        assert_txn_error(assign(app, task["id"], user.user_key), 400, "txnAlreadyFinished")

    def test_txn_not_task(self, app: FunctionCaller, user: DirectoryUser) -> None:
        assignment = create(app, new_body()).json()
        assert_txn_error(assign(app, assignment["id"], user.user_key), 400, "txnNotTask")
        assert_txn_error(unassign(app, assignment["id"]), 400, "txnNotTask")

    def test_txn_already_assigned(self, app: FunctionCaller, task: dict[str, Any], user: DirectoryUser) -> None:
        assert assign(app, task["id"], user.user_key).status == 200
        assert_txn_error(assign(app, task["id"], new_user(app).user_key), 400, "txnAlreadyAssigned")
        # Even to the same user: the seed says to unassign first.
        assert_txn_error(assign(app, task["id"], user.user_key), 400, "txnAlreadyAssigned")

    def test_a_candidate_claiming_a_taken_task_is_denied_access(
        self, app: FunctionCaller, task: dict[str, Any], user: DirectoryUser
    ) -> None:
        # docs/api-rules.md: candidate-group members may assign only an unassigned task.
        assert assign(app, task["id"], user.user_key).status == 200
        member = app.tokens.user("mia@contoso.com", groups=[GROUP])
        assert_txn_error(assign(app, task["id"], new_user(app).user_key, token=member), 400, "accessDenied")

    def test_a_started_unassigned_task_can_be_assigned_and_keeps_its_progress(
        self, app: FunctionCaller, task: dict[str, Any], user: DirectoryUser
    ) -> None:
        event = {"eventId": uuid.uuid4().hex, "type": "engaged", "occurredAt": format_timestamp(datetime.now(UTC))}
        started = app.call(
            "post_progress_event",
            method="POST",
            url=f"/assignments/{task['id']}/events",
            token=app.tokens.reporter_app(),
            json_body=event,
            route_params={"id": task["id"]},
        )
        assert started.status == 200, started.body
        assert started.json()["status"] == "in_progress"
        assigned = assign(app, task["id"], user.user_key)
        assert assigned.status == 200
        assert assigned.json()["status"] == "in_progress"
        assert assigned.json()["assigneeUserKey"] == user.user_key

    def test_txn_not_assigned(self, app: FunctionCaller, task: dict[str, Any]) -> None:
        assert_txn_error(unassign(app, task["id"]), 400, "txnNotAssigned")

    def test_user_not_found_for_an_unknown_or_disabled_account(self, app: FunctionCaller, task: dict[str, Any]) -> None:
        assert_txn_error(assign(app, task["id"], f"no-such-user-{uuid.uuid4().hex}"), 400, "userNotFound")
        disabled = new_user(app, enabled=False)
        assert_txn_error(assign(app, task["id"], disabled.user_key), 400, "userNotFound")
        assert stored_doc(app, task["id"]).version == 1


class TestCheckOrder:
    """Each pair shows one check winning over the next one in docs/api-rules.md's list."""

    def test_txn_not_found_before_access_denied(self, app: FunctionCaller) -> None:
        assert_txn_error(assign(app, "missing", "u", token=app.tokens.user("eve@contoso.com")), 400, "txnNotFound")

    def test_access_denied_before_txn_already_finished(self, app: FunctionCaller, task: dict[str, Any]) -> None:
        change_stored(app, task["id"], status="completed")
        token = app.tokens.user("eve@contoso.com")
        assert_txn_error(assign(app, task["id"], "u", token=token), 400, "accessDenied")

    def test_txn_already_finished_before_txn_not_task(self, app: FunctionCaller) -> None:
        assignment = create(app, new_body()).json()
        change_stored(app, assignment["id"], status="cancelled")
        assert_txn_error(assign(app, assignment["id"], "u"), 400, "txnAlreadyFinished")

    def test_txn_not_task_before_txn_already_assigned(self, app: FunctionCaller) -> None:
        assignment = create(app, new_body()).json()  # assigned, and not a task
        assert_txn_error(assign(app, assignment["id"], "u"), 400, "txnNotTask")

    def test_txn_already_assigned_before_user_not_found(
        self, app: FunctionCaller, task: dict[str, Any], user: DirectoryUser
    ) -> None:
        assert assign(app, task["id"], user.user_key).status == 200
        response, trips = app.round_trips_of(lambda: assign(app, task["id"], "no-such-user"))
        assert_txn_error(response, 400, "txnAlreadyAssigned")
        assert trips == 1  # the directory is not asked

    def test_a_started_task_is_already_assigned_not_finished(
        self, app: FunctionCaller, task: dict[str, Any], user: DirectoryUser
    ) -> None:
        assert assign(app, task["id"], user.user_key).status == 200
        change_stored(app, task["id"], status="in_progress")
        assert_txn_error(assign(app, task["id"], user.user_key), 400, "txnAlreadyAssigned")

    def test_if_match_after_access_and_before_state(self, app: FunctionCaller, task: dict[str, Any]) -> None:
        change_stored(app, task["id"], status="completed")
        stale = {"If-Match": task["_etag"]}
        token = app.tokens.user("eve@contoso.com")
        assert_txn_error(assign(app, task["id"], "u", token=token, headers=stale), 400, "accessDenied")
        assert_txn_error(assign(app, task["id"], "u", headers=stale), 412, "preconditionFailed")


class TestAuth:
    def test_no_token_is_401_with_a_bearer_challenge(self, app: FunctionCaller) -> None:
        response = app.call("txn_assign", method="POST", url=f"{TXN}/assign", json_body={"params": {}})
        assert_txn_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"

    def test_a_bad_token_is_401_with_invalid_token(self, app: FunctionCaller) -> None:
        response = unassign(app, "x", token="abc.def.ghi")
        assert_txn_error(response, 401, "unauthorized")
        assert 'error="invalid_token"' in response.headers["www-authenticate"]

    def test_authentication_comes_before_the_body(self, app: FunctionCaller) -> None:
        response = app.call("txn_assign", method="POST", url=f"{TXN}/assign", body=b"{not json")
        assert_txn_error(response, 401, "unauthorized")

    @pytest.mark.parametrize("who", ["no scope", "app without a role", "reporter app"])
    def test_403(self, app: FunctionCaller, task: dict[str, Any], who: str) -> None:
        token = {
            "no scope": app.tokens.user(ORIGINATOR, scopes="User.Read"),
            "app without a role": app.tokens.factory.app_token(app_id="nobody", roles=()),
            "reporter app": app.tokens.reporter_app(),
        }[who]
        assert_txn_error(assign(app, task["id"], "u", token=token), 403, "forbidden")
        assert_txn_error(txn(app, "unassign", body={"bad": 1}, token=token), 403, "forbidden")


class TestWriteHeaders:
    def test_if_match_with_the_current_etag_succeeds_and_a_stale_one_is_412(
        self, app: FunctionCaller, task: dict[str, Any], user: DirectoryUser
    ) -> None:
        assigned = assign(app, task["id"], user.user_key, headers={"If-Match": task["_etag"]})
        assert assigned.status == 200
        assert_txn_error(unassign(app, task["id"], headers={"If-Match": task["_etag"]}), 412, "preconditionFailed")
        assert unassign(app, task["id"], headers={"If-Match": assigned.headers["etag"]}).status == 200

    def test_an_idempotency_key_replays_the_first_response_without_writing(
        self, app: FunctionCaller, task: dict[str, Any], user: DirectoryUser
    ) -> None:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        first = assign(app, task["id"], user.user_key, headers=key)
        assert first.status == 200
        replay, trips = app.round_trips_of(lambda: assign(app, task["id"], user.user_key, headers=key))
        assert replay.status == 200
        assert replay.json() == first.json()
        assert replay.headers["etag"] == first.headers["etag"]
        assert trips == 2  # the task and the key's record beside it; nothing is written
        # Without the key the same request is a new one, and the task is taken.
        assert_txn_error(assign(app, task["id"], user.user_key), 400, "txnAlreadyAssigned")

    def test_an_idempotency_key_reused_with_another_body_is_422(
        self, app: FunctionCaller, task: dict[str, Any], user: DirectoryUser
    ) -> None:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        assert assign(app, task["id"], user.user_key, headers=key).status == 200
        response = assign(app, task["id"], new_user(app).user_key, headers=key)
        assert_txn_error(response, 422, "idempotencyKeyReused")

    def test_a_malformed_idempotency_key_is_422(self, app: FunctionCaller, task: dict[str, Any]) -> None:
        response = assign(app, task["id"], "u", headers={"Idempotency-Key": "k" * 256})
        assert_txn_error(response, 422, "validationFailed", "Idempotency-Key must be 1 to 255 characters")


class TestServerErrors:
    def test_an_unexpected_error_is_500_with_a_logged_error_log_id(
        self,
        app: FunctionCaller,
        settings: Settings,
        own_runtime: InstallRuntime,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        task = new_task(app)
        broken = own_runtime(Runtime(settings, directory=FailingDirectory(RuntimeError("secret internals"))))
        with caplog.at_level(logging.ERROR, logger="assignments.http"):
            response = assign(broken, task["id"], "u")
        assert response.status == 500
        body = response.json()
        assert set(body) == {"errorKey", "error"}
        assert body["errorKey"] == "internalError"
        match = re.fullmatch(r"Please see Error Log ID (\d+)", body["error"])
        assert match is not None
        logged = [r for r in caplog.records if f"Error Log ID {match.group(1)}" in r.getMessage()]
        assert len(logged) == 1
        assert logged[0].exc_info is not None
        assert "secret internals" in str(logged[0].exc_info[1])
        assert b"secret" not in response.body

    def test_an_outage_is_503_with_retry_after(
        self, app: FunctionCaller, settings: Settings, own_runtime: InstallRuntime
    ) -> None:
        task = new_task(app)
        outage = FailingDirectory(ServiceUnavailable(retry_after=7))
        response = assign(own_runtime(Runtime(settings, directory=outage)), task["id"], "u")
        assert_txn_error(response, 503, "serviceUnavailable")
        assert response.headers["retry-after"] == "7"


class TestOtherPaths:
    @pytest.mark.parametrize(
        ("method", "rest"),
        [
            ("POST", "secure/api/v1/txn/reassign"),
            ("GET", "secure/api/v1/txn"),
            ("DELETE", "anything/at/all"),
            ("GET", ""),
        ],
    )
    def test_an_unknown_path_under_workspaces_is_404(self, app: FunctionCaller, method: str, rest: str) -> None:
        response = app.call(
            "workspaces_not_found", method=method, url=f"/workspaces/{rest}", route_params={"rest": rest}
        )
        assert_txn_error(response, 404, "notFound")

    def test_a_txn_path_with_another_method_is_405(self, app: FunctionCaller) -> None:
        rest = "secure/api/v1/txn/assign"
        response = app.call(
            "workspaces_not_found", method="GET", url=f"/workspaces/{rest}", route_params={"rest": rest}
        )
        assert_txn_error(response, 405, "methodNotAllowed", "The HTTP method is not allowed here")
        assert response.headers["allow"] == "POST"

    def test_routes_are_anonymous_posts_and_the_catch_all_takes_any_method(self, app: FunctionCaller) -> None:
        for name, route in (("txn_assign", "assign"), ("txn_unassign", "unassign")):
            trigger = app.functions[name].trigger
            assert trigger["route"] == f"workspaces/secure/api/v1/txn/{route}"
            assert trigger["methods"] == ["POST"]
            assert trigger["authLevel"] == "ANONYMOUS"
        catch_all = app.functions["workspaces_not_found"].trigger
        assert catch_all["route"] == "workspaces/{*rest}"
        assert "methods" not in catch_all
        assert catch_all["authLevel"] == "ANONYMOUS"


# --- races -------------------------------------------------------------------------------------------


class StoreThatLosesTheFirstRace:
    """The real store, except that just before the first conditional replace another request assigns the
    task, so that replace's ETag is stale: the use case must re-read and refuse."""

    def __init__(self, inner: AssignmentStore, competitor: Any) -> None:
        self._inner = inner
        self._competitor = competitor
        self.replaces = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def write(self, decision: Decision, *, etag: str, record: IdempotencyRecord | None = None) -> AssignmentDocument:
        self.replaces += 1
        if self.replaces == 1:
            self._competitor()
        return self._inner.write(decision, etag=etag, record=record)


def test_a_lost_race_is_re_decided_and_refused(app: FunctionCaller, task: dict[str, Any], user: DirectoryUser) -> None:
    winner = new_user(app)

    def competitor() -> None:
        assert assign(app, task["id"], winner.user_key).status == 200

    racing = StoreThatLosesTheFirstRace(app.runtime.store, competitor)
    deps = Deps(store=cast(AssignmentStore, racing), clock=app.runtime.clock, directory=app.runtime.directory)
    principal = app.runtime.authenticate(f"Bearer {app.tokens.user(ORIGINATOR)}")
    body = {"params": {"submitKey": task["id"], "userKey": user.user_key}}
    with pytest.raises(AlreadyAssigned):
        assign_task(Command(principal=principal, body=body), deps)
    assert racing.replaces == 1
    assert stored_doc(app, task["id"]).assignee_user_key == winner.user_key


def _assign_from_another_process(
    settings_fields: dict[str, Any], token: str, body: dict[str, Any], barrier: Any, results: Any
) -> None:
    """One OS process: its own Runtime (Cosmos client, JWKS cache) against the shared emulator."""
    runtime = Runtime(IsolatedSettings(**settings_fields))
    set_runtime(runtime)
    runtime.authenticate(f"Bearer {token}")  # warm up: JWKS fetched and containers ensured before the race
    runtime.store.ping()
    # This caller signs nothing itself: its token was signed by the parent, whose key the JWKS server holds.
    caller = FunctionCaller(runtime=runtime, tokens=cast(Tokens, None))
    barrier.wait(timeout=60)
    response, trips = caller.round_trips_of(
        lambda: caller.call("txn_assign", method="POST", url=f"{TXN}/assign", token=token, json_body=body)
    )
    results.put((response.status, response.json(), trips))


def test_concurrent_assigns_from_several_processes_give_one_winner(
    app: FunctionCaller, settings: Settings, task: dict[str, Any]
) -> None:
    workers = 4
    users = [new_user(app) for _ in range(workers)]
    each_args = [
        (
            settings.model_dump(),
            # Dispatchers allowed to assign whatever the task's state: several admin apps at once.
            app.tokens.admin_app(f"dispatcher-{index}"),
            {"params": {"submitKey": task["id"], "userKey": users[index].user_key}},
        )
        for index in range(workers)
    ]
    outcomes = race_in_processes(_assign_from_another_process, each_args, timeout=120)
    winners = [body for status, body, _ in outcomes if status == 200]
    losers = [(status, body) for status, body, _ in outcomes if status != 200]
    assert len(winners) == 1, outcomes
    # The winner: read, directory, replace. A loser either read the winner's write (1 round trip), or lost
    # the race: read, directory, a refused replace, and the re-read that refuses it (4).
    assert all(trips in ((3,) if status == 200 else (1, 4)) for status, _, trips in outcomes), outcomes
    assert losers == [(400, {"errorKey": "txnAlreadyAssigned", "error": MESSAGES["txnAlreadyAssigned"]})] * (
        workers - 1
    )
    document = stored_doc(app, task["id"])
    assert document.assignee_user_key == winners[0]["assigneeUserKey"]
    assert document.assignee_email == winners[0]["assigneeEmail"]
    assert document.version == 2
    assert event_types(app, document.id).count("assigned") == 1
    assert winners[0]["_etag"] == document.etag
