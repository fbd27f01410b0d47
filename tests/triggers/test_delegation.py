"""POST /assignments/{id}/delegate through the registered function, against the emulator: every rule and
code, exactly-once under concurrency from several OS processes, and atomicity of the batch."""

from __future__ import annotations

import json
import multiprocessing
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.cosmos.exceptions import CosmosBatchOperationError

from core.aggregate import Decision
from core.errors import DuplicateId
from core.models import Status
from core.settings import Settings
from tests.support.api import (
    ASSIGNEE,
    ASSIGNEE_OID,
    ORIGINATOR,
    PUBLIC_FIELDS,
    add_user,
    assert_problem,
    change_stored,
    create,
    delegate,
    get,
    new_assignment,
    new_body,
    stored,
    successors_of,
)
from tests.support.app import FunctionCaller
from tests.support.services import make_cosmos_client


class TestSuccess:
    def test_creates_the_successor_and_marks_the_original(self, app: FunctionCaller) -> None:
        original = new_assignment(app, targetTitle="Onboarding", dueAt="2031-01-01T00:00:00Z", maxAttempts=3)
        delegate_key, delegate_upn = add_user(app)
        response = delegate(app, original["id"], {"toUpn": delegate_upn.upper(), "reason": "on leave"})
        assert response.status == 201, response.body
        successor = response.json()
        assert set(successor) == PUBLIC_FIELDS
        assert successor["id"] == f"{original['id']}.1"
        assert response.headers["location"] == f"/assignments/{successor['id']}"
        assert response.headers["etag"] == successor["_etag"]
        assert successor["assigneeEmail"] == delegate_upn
        assert successor["assigneeUserKey"] == delegate_key
        assert successor["assignedBy"] == ASSIGNEE
        assert successor["status"] == "pending"
        assert successor["delegatedFrom"] == original["id"]
        assert successor["delegatedTo"] is None
        assert successor["delegationChain"] == [ASSIGNEE]
        assert successor["delegationReason"] == "on leave"
        assert successor["createdBy"] == successor["updatedBy"] == ASSIGNEE
        assert successor["createdAt"] == successor["updatedAt"] > original["createdAt"]
        copied = {"targetType", "targetId", "originatorEmail", "completionCriteria", "targetTitle", "dueAt",
                  "maxAttempts", "allowDelegation", "allowRejection", "expiresAt", "passScore", "taskKey",
                  "candidateGroups", "scheduleId", "targetVersion", "originatorName", "originatorMessage"}  # fmt: skip
        assert {name: successor[name] for name in copied} == {name: original[name] for name in copied}

        after = get(app, original["id"], app.tokens.user(ORIGINATOR)).json()
        assert after["status"] == "delegated"
        assert after["delegatedTo"] == successor["id"]
        assert after["delegationReason"] == "on leave"
        assert after["updatedBy"] == ASSIGNEE
        assert after["updatedAt"] == successor["createdAt"]
        assert after["_etag"] != original["_etag"]

    def test_the_new_assignee_and_the_chain_may_read_the_successor(self, app: FunctionCaller) -> None:
        original = new_assignment(app)
        delegate_key, delegate_upn = add_user(app)
        successor = delegate(app, original["id"], {"toUpn": delegate_upn}).json()
        assert get(app, successor["id"], app.tokens.user(delegate_upn, oid=delegate_key)).status == 200
        assert get(app, successor["id"], app.tokens.user(ASSIGNEE)).status == 200

    def test_round_trips_read_directory_batch_then_read_batch_on_a_cache_hit(self, app: FunctionCaller) -> None:
        first, second = new_assignment(app), new_assignment(app)
        _, delegate_upn = add_user(app)
        response, trips = app.round_trips_of(lambda: delegate(app, first["id"], {"toUpn": delegate_upn}))
        assert response.status == 201
        assert trips == 3
        response, trips = app.round_trips_of(lambda: delegate(app, second["id"], {"toUpn": delegate_upn}))
        assert response.status == 201
        assert trips == 2

    def test_an_admin_app_may_delegate(self, app: FunctionCaller) -> None:
        original = new_assignment(app)
        _, delegate_upn = add_user(app)
        response = delegate(app, original["id"], {"toUpn": delegate_upn}, token=app.tokens.admin_app("ops"))
        assert response.status == 201
        assert response.json()["assignedBy"] == "app:ops"
        assert response.json()["delegationChain"] == [ASSIGNEE]

    def test_an_in_progress_assignment_may_be_delegated(self, app: FunctionCaller) -> None:
        original = new_assignment(app)
        change_stored(app, original["id"], status=Status.IN_PROGRESS)
        _, delegate_upn = add_user(app)
        assert delegate(app, original["id"], {"toUpn": delegate_upn}).status == 201

    def test_the_successors_assignee_delegates_on_by_user_key(self, app: FunctionCaller) -> None:
        original = new_assignment(app)
        bea_key, bea = add_user(app)
        _, carl = add_user(app)
        first = delegate(app, original["id"], {"toUpn": bea}).json()
        # The successor is Bea's by key: a token with her UPN but another oid is neither assignee nor reader.
        impostor = app.tokens.user(bea, oid=f"other-{bea_key}")
        assert_problem(delegate(app, first["id"], {"toUpn": carl}, token=impostor), 404, "notFound")
        second = delegate(app, first["id"], {"toUpn": carl}, token=app.tokens.user(bea, oid=bea_key))
        assert second.status == 201
        assert second.json()["id"] == f"{original['id']}.2"
        assert second.json()["delegationChain"] == [ASSIGNEE, bea]


class TestWho:
    def test_the_originator_may_read_but_not_delegate(self, app: FunctionCaller) -> None:
        original = new_assignment(app)
        _, delegate_upn = add_user(app)
        assert_problem(
            delegate(app, original["id"], {"toUpn": delegate_upn}, token=app.tokens.user(ORIGINATOR)), 403, "forbidden"
        )

    def test_a_former_assignee_in_the_chain_gets_403(self, app: FunctionCaller) -> None:
        original = new_assignment(app)
        _, bea = add_user(app)
        _, carl = add_user(app)
        successor = delegate(app, original["id"], {"toUpn": bea}).json()
        assert_problem(delegate(app, successor["id"], {"toUpn": carl}), 403, "forbidden")

    def test_a_stranger_and_a_missing_assignment_get_404(self, app: FunctionCaller) -> None:
        original = new_assignment(app)
        _, delegate_upn = add_user(app)
        stranger = app.tokens.user("eve@contoso.com")
        assert_problem(delegate(app, original["id"], {"toUpn": delegate_upn}, token=stranger), 404, "notFound")
        assert_problem(delegate(app, "missing-id", {"toUpn": delegate_upn}), 404, "notFound")
        assert_problem(delegate(app, "bad id!", {"toUpn": delegate_upn}), 404, "notFound")

    def test_no_token_is_401_and_a_missing_scope_403(self, app: FunctionCaller) -> None:
        response = app.call(
            "delegate_assignment", method="POST", url="/assignments/x/delegate", route_params={"id": "x"},
            json_body={"toUpn": "a@contoso.com"},
        )  # fmt: skip
        assert_problem(response, 401, "unauthenticated")
        token = app.tokens.user(ASSIGNEE, scopes="User.Read")
        assert_problem(delegate(app, "x", {"toUpn": "a@contoso.com"}, token=token), 403, "forbidden")


class TestBody:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({}, "toUpn"),
            ({"toUpn": "not-a-upn"}, "toUpn"),
            ({"toUpn": 7}, "toUpn"),
            ({"toUpn": "a@contoso.com", "reason": "x" * 2001}, "reason"),
            ({"toUpn": "a@contoso.com", "assigneeEmail": "b@contoso.com"}, "assigneeEmail"),
        ],
    )
    def test_invalid_bodies_are_422(self, app: FunctionCaller, body: dict[str, Any], field: str) -> None:
        original = new_assignment(app)
        problem = assert_problem(delegate(app, original["id"], body), 422, "validationFailed")
        assert field in [error["field"] for error in problem["errors"]]

    def test_a_body_that_is_not_a_json_object_is_400(self, app: FunctionCaller) -> None:
        assert_problem(delegate(app, "x", raw=b"not json"), 400, "invalidRequest")
        assert_problem(delegate(app, "x", raw=b'"a@contoso.com"'), 400, "invalidRequest")

    def test_a_body_over_64_kib_is_413(self, app: FunctionCaller) -> None:
        assert_problem(delegate(app, "x", {"toUpn": "a@contoso.com", "reason": "x" * 70_000}), 413, "payloadTooLarge")


class TestWhen:
    def test_allow_delegation_false_is_409(self, app: FunctionCaller) -> None:
        original = new_assignment(app, allowDelegation=False)
        _, delegate_upn = add_user(app)
        assert_problem(delegate(app, original["id"], {"toUpn": delegate_upn}), 409, "delegationNotAllowed")

    @pytest.mark.parametrize("status", ["completed", "failed", "expired", "cancelled", "rejected"])
    def test_an_inactive_status_is_an_invalid_transition(self, app: FunctionCaller, status: str) -> None:
        original = new_assignment(app)
        now = datetime.now(UTC)
        extra: dict[str, Any] = {
            "cancelled": {"cancelled_at": now, "cancelled_by": ORIGINATOR},
            "rejected": {"rejected_at": now, "rejected_by": ASSIGNEE},
        }.get(status, {})
        change_stored(app, original["id"], status=Status(status), **extra)
        _, delegate_upn = add_user(app)
        assert_problem(delegate(app, original["id"], {"toUpn": delegate_upn}), 409, "invalidTransition")

    def test_an_unassigned_task_is_not_assigned(self, app: FunctionCaller) -> None:
        body = new_body(taskKey="triage", candidateGroups=["g-1"])
        del body["assigneeEmail"]
        task = create(app, body).json()
        _, delegate_upn = add_user(app)
        admin = app.tokens.admin_app()
        assert_problem(delegate(app, task["id"], {"toUpn": delegate_upn}, token=admin), 409, "notAssigned")
        member = app.tokens.user("mia@contoso.com", groups=["g-1"])
        assert_problem(delegate(app, task["id"], {"toUpn": delegate_upn}, token=member), 403, "forbidden")

    def test_past_expires_at_is_expired_before_the_timer_persists_it(self, app: FunctionCaller) -> None:
        original = new_assignment(app, allowDelegation=False)
        change_stored(app, original["id"], expires_at=datetime.now(UTC) - timedelta(seconds=1))
        _, delegate_upn = add_user(app)
        assert_problem(delegate(app, original["id"], {"toUpn": delegate_upn}), 409, "expired")


class TestToWhom:
    def test_an_unknown_user_is_422(self, app: FunctionCaller) -> None:
        original = new_assignment(app)
        problem = assert_problem(delegate(app, original["id"], {"toUpn": "nobody@contoso.com"}), 422, "userNotFound")
        assert "nobody@contoso.com" in problem["detail"]

    def test_a_disabled_user_is_422(self, app: FunctionCaller) -> None:
        original = new_assignment(app)
        _, disabled = add_user(app, enabled=False)
        assert_problem(delegate(app, original["id"], {"toUpn": disabled}), 422, "userNotFound")

    def test_the_current_assignee_is_self_delegation_before_the_directory(self, app: FunctionCaller) -> None:
        original = new_assignment(app)
        response, trips = app.round_trips_of(lambda: delegate(app, original["id"], {"toUpn": ASSIGNEE.upper()}))
        assert_problem(response, 422, "selfDelegation")
        assert trips == 1, "refused on the read alone: the assignee is not even in the directory"

    def test_someone_in_the_chain_is_a_cycle(self, app: FunctionCaller) -> None:
        original = new_assignment(app)
        bea_key, bea = add_user(app)
        add_user(app, ASSIGNEE)
        successor = delegate(app, original["id"], {"toUpn": bea}).json()
        response = delegate(app, successor["id"], {"toUpn": ASSIGNEE}, token=app.tokens.user(bea, oid=bea_key))
        assert_problem(response, 422, "delegationCycle")

    def test_the_tenth_delegation_succeeds_and_the_eleventh_is_too_deep(self, app: FunctionCaller) -> None:
        assert app.runtime.settings.delegation_max_depth == 10
        current = new_assignment(app)
        holder = app.tokens.user(ASSIGNEE, oid=ASSIGNEE_OID)
        for depth in range(1, 11):
            user_key, upn = add_user(app)
            response = delegate(app, current["id"], {"toUpn": upn}, token=holder)
            assert response.status == 201, (depth, response.body)
            current, holder = response.json(), app.tokens.user(upn, oid=user_key)
            assert len(current["delegationChain"]) == depth
        _, upn = add_user(app)
        assert_problem(delegate(app, current["id"], {"toUpn": upn}, token=holder), 422, "delegationTooDeep")


class TestExactlyOnce:
    def test_the_same_caller_and_user_later_get_200_with_the_successor(self, app: FunctionCaller) -> None:
        original = new_assignment(app)
        _, delegate_upn = add_user(app)
        first = delegate(app, original["id"], {"toUpn": delegate_upn})
        again = delegate(app, original["id"], {"toUpn": delegate_upn.upper(), "reason": "ignored"})
        assert first.status == 201
        assert again.status == 200
        assert again.json() == first.json()
        assert again.headers["location"] == first.headers["location"]
        assert again.headers["etag"] == first.headers["etag"]
        stale = delegate(app, original["id"], {"toUpn": delegate_upn}, headers={"If-Match": original["_etag"]})
        assert stale.status == 200, "whatever If-Match says"
        assert len(successors_of(app, original["id"])) == 1

    def test_a_different_user_after_success_is_already_delegated(self, app: FunctionCaller) -> None:
        original = new_assignment(app)
        _, bea = add_user(app)
        _, carl = add_user(app)
        assert delegate(app, original["id"], {"toUpn": bea}).status == 201
        assert_problem(delegate(app, original["id"], {"toUpn": carl}), 409, "alreadyDelegated")

    def test_another_caller_with_the_same_user_is_already_delegated(self, app: FunctionCaller) -> None:
        original = new_assignment(app)
        _, bea = add_user(app)
        assert delegate(app, original["id"], {"toUpn": bea}).status == 201
        admin = app.tokens.admin_app()
        assert_problem(delegate(app, original["id"], {"toUpn": bea}, token=admin), 409, "alreadyDelegated")

    def test_a_stale_if_match_is_412_and_changes_nothing(self, app: FunctionCaller) -> None:
        original = new_assignment(app)
        change_stored(app, original["id"], delegation_reason=None)  # a newer version than the caller's
        before = stored(app, original["id"])
        assert before is not None
        _, bea = add_user(app)
        response = delegate(app, original["id"], {"toUpn": bea}, headers={"If-Match": original["_etag"]})
        assert_problem(response, 412, "preconditionFailed")
        after = stored(app, original["id"])
        assert after is not None
        assert after.etag == before.etag
        assert successors_of(app, original["id"]) == []
        current = delegate(app, original["id"], {"toUpn": bea}, headers={"If-Match": before.etag or ""})
        assert current.status == 201

    @pytest.mark.parametrize("if_match", ["*", '"stale", {etag}'])
    def test_if_match_star_or_a_list_holding_the_etag_passes(self, app: FunctionCaller, if_match: str) -> None:
        original = new_assignment(app)
        _, bea = add_user(app)
        headers = {"If-Match": if_match.format(etag=original["_etag"])}
        assert delegate(app, original["id"], {"toUpn": bea}, headers=headers).status == 201

    def test_a_weak_etag_never_matches(self, app: FunctionCaller) -> None:
        # If-Match compares strongly (RFC 9110 13.1.1): W/"x" does not match "x".
        original = new_assignment(app)
        _, bea = add_user(app)
        weak = {"If-Match": f"W/{original['_etag']}"}
        assert_problem(delegate(app, original["id"], {"toUpn": bea}, headers=weak), 412, "preconditionFailed")
        assert successors_of(app, original["id"]) == []

    def test_if_match_comes_after_permission_and_before_state(self, app: FunctionCaller) -> None:
        original = new_assignment(app, allowDelegation=False)
        _, bea = add_user(app)
        stale = {"If-Match": '"stale"'}
        originator = app.tokens.user(ORIGINATOR)
        assert_problem(delegate(app, original["id"], {"toUpn": bea}, token=originator, headers=stale), 403, "forbidden")
        assert_problem(delegate(app, original["id"], {"toUpn": bea}, headers=stale), 412, "preconditionFailed")

    def test_an_idempotency_key_replays_the_first_response(self, app: FunctionCaller) -> None:
        original = new_assignment(app)
        _, bea = add_user(app)
        key = {"Idempotency-Key": uuid.uuid4().hex}
        first = delegate(app, original["id"], {"toUpn": bea, "reason": "r"}, headers=key)
        replay, trips = app.round_trips_of(
            lambda: delegate(app, original["id"], {"toUpn": bea, "reason": "r"}, headers=key)
        )
        assert first.status == replay.status == 201
        assert replay.json() == first.json()
        assert replay.headers["location"] == first.headers["location"]
        # A key costs one read more than without (docs/api-rules.md): its record, beside the original.
        assert trips == 3, "the original, the key's record, then the successor it names"

    def test_an_idempotency_key_with_another_body_is_422(self, app: FunctionCaller) -> None:
        original = new_assignment(app)
        _, bea = add_user(app)
        key = {"Idempotency-Key": uuid.uuid4().hex}
        assert delegate(app, original["id"], {"toUpn": bea}, headers=key).status == 201
        reused = delegate(app, original["id"], {"toUpn": bea, "reason": "other"}, headers=key)
        assert_problem(reused, 422, "idempotencyKeyReused")
        invalid = delegate(app, original["id"], {"toUpn": "not a upn"}, headers=key)
        assert_problem(invalid, 422, "idempotencyKeyReused")


class TestBatch:
    def test_a_conflicting_create_rolls_back_the_replace_in_the_server(self, app: FunctionCaller) -> None:
        original = new_assignment(app)
        decoy = stored(app, original["id"])
        assert decoy is not None
        decoy.id = f"{original['id']}.1"
        app.runtime.store.create(Decision(shown=decoy, document=decoy))
        before = stored(app, original["id"])
        assert before is not None
        _, bea = add_user(app)
        assert_problem(delegate(app, original["id"], {"toUpn": bea}), 409, "duplicateId")
        after = stored(app, original["id"])
        assert after is not None
        assert after.etag == before.etag
        assert after.status == Status.PENDING
        assert after.delegated_to is None
        assert successors_of(app, original["id"]) == []

    def test_the_sdk_raises_a_batch_error_and_the_store_a_domain_error(
        self, app: FunctionCaller, settings: Settings
    ) -> None:
        original = new_assignment(app)
        document = stored(app, original["id"])
        assert document is not None
        etag = document.etag or ""
        occupant = document.model_copy(update={"id": f"{original['id']}.1"})
        app.runtime.store.create(Decision(shown=occupant, document=occupant))
        changed = document.model_copy(update={"status": Status.DELEGATED, "delegated_to": occupant.id})
        # The SDK itself, beneath the store adapter.
        assignments = (
            make_cosmos_client(settings.cosmos_endpoint)
            .get_database_client(settings.cosmos_database)
            .get_container_client(settings.cosmos_assignments_container)
        )
        operations: list[Any] = [
            ("replace", (document.id, changed.to_cosmos()), {"if_match_etag": etag}),
            ("create", (occupant.to_cosmos(),)),
        ]
        with pytest.raises(CosmosBatchOperationError) as caught:
            assignments.execute_item_batch(operations, partition_key=document.pk)
        assert caught.value.error_index == 1
        decision = Decision(shown=occupant, document=changed, successor=occupant, created=True)
        with pytest.raises(DuplicateId):
            app.runtime.store.write(decision, etag=etag)
        after = stored(app, original["id"])
        assert after is not None
        assert after.etag == etag
        assert after.status == Status.PENDING


# --- concurrency from several OS processes -------------------------------------------------------------

PROCESSES = 4
REQUESTS_PER_PROCESS = 5


def _delegate_in_worker(
    settings: Settings,
    assignment_id: str,
    requests: list[tuple[str, dict[str, Any], dict[str, str]]],
    start: Any,
    results: Any,
) -> None:
    """One OS process: its own Runtime (clients, JWKS cache, directory cache) against the shared
    emulator, calling the registered function from several threads at once."""
    from core.bootstrap import Runtime, set_runtime
    from localhost.indexing import index_app

    runtime = Runtime(settings)
    set_runtime(runtime)
    functions = {f.name: f for f in index_app()}

    def call(name: str, token: str, body: dict[str, Any] | None, headers: dict[str, str]) -> tuple[int, Any, str]:
        request = func.HttpRequest(
            "POST" if body is not None else "GET",
            f"http://localhost/assignments/{assignment_id}",
            headers={"authorization": f"Bearer {token}", "content-type": "application/json", **headers},
            route_params={"id": assignment_id},
            body=json.dumps(body).encode() if body is not None else b"",
        )
        response = functions[name].call(req=request)
        return response.status_code, json.loads(response.get_body()), response.headers.get("Location", "")

    # Warm up (containers, JWKS, connections) so the timed requests overlap as much as they can.
    call("get_assignment", requests[0][0], None, {})
    threads_ready = threading.Barrier(len(requests))

    def fire(request: tuple[str, dict[str, Any], dict[str, str]]) -> tuple[int, Any, str]:
        threads_ready.wait()
        return call("delegate_assignment", *request)

    start.wait()
    with ThreadPoolExecutor(len(requests)) as pool:
        results.put(list(pool.map(fire, requests)))


def run_from_processes(
    settings: Settings, assignment_id: str, requests: list[tuple[str, dict[str, Any], dict[str, str]]]
) -> list[tuple[int, Any, str]]:
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(PROCESSES), context.Queue()
    workers = [
        context.Process(
            target=_delegate_in_worker,
            args=(settings, assignment_id, requests[i::PROCESSES], start, results),
        )
        for i in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = [outcome for _ in workers for outcome in results.get(timeout=120)]
    finally:
        for worker in workers:
            worker.join(timeout=30)
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES
    assert len({worker.pid for worker in workers}) == PROCESSES
    return outcomes


class TestConcurrency:
    def test_twenty_delegations_to_different_users_from_four_processes(
        self, app: FunctionCaller, settings: Settings
    ) -> None:
        original = new_assignment(app)
        token = app.tokens.user(ASSIGNEE, oid=ASSIGNEE_OID)
        upns = [add_user(app)[1] for _ in range(PROCESSES * REQUESTS_PER_PROCESS)]
        outcomes = run_from_processes(settings, original["id"], [(token, {"toUpn": upn}, {}) for upn in upns])
        statuses = sorted(status for status, _, _ in outcomes)
        assert statuses == [201] + [409] * (len(upns) - 1)
        assert {body["code"] for status, body, _ in outcomes if status == 409} == {"alreadyDelegated"}
        (winner,) = [body for status, body, _ in outcomes if status == 201]
        successors = successors_of(app, original["id"])
        assert [s["id"] for s in successors] == [winner["id"]] == [f"{original['id']}.1"]
        assert successors[0]["assigneeEmail"] == winner["assigneeEmail"]
        after = stored(app, original["id"])
        assert after is not None
        assert after.delegated_to == winner["id"]

    @pytest.mark.parametrize("with_key", [False, True], ids=["natural", "idempotency-key"])
    def test_twenty_identical_delegations_make_one_successor(
        self, app: FunctionCaller, settings: Settings, with_key: bool
    ) -> None:
        original = new_assignment(app)
        token = app.tokens.user(ASSIGNEE, oid=ASSIGNEE_OID)
        _, bea = add_user(app)
        headers = {"idempotency-key": uuid.uuid4().hex} if with_key else {}
        requests = [(token, {"toUpn": bea}, headers)] * (PROCESSES * REQUESTS_PER_PROCESS)
        outcomes = run_from_processes(settings, original["id"], requests)
        statuses = sorted(status for status, _, _ in outcomes)
        # A key replays the first response exactly (201); without one, repeats are answered 200.
        assert statuses == [201] * len(requests) if with_key else [200] * (len(requests) - 1) + [201]
        assert len({json.dumps(body, sort_keys=True) for _, body, _ in outcomes}) == 1
        assert {location for _, _, location in outcomes} == {f"/assignments/{original['id']}.1"}
        assert len(successors_of(app, original["id"])) == 1
