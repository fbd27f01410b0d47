"""POST /assignments and GET /assignments/{id}, through the registered functions, against the emulator."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.bootstrap import Runtime, set_runtime
from core.models import format_timestamp
from core.settings import Settings
from tests.support.api import (
    ASSIGNEE,
    ORIGINATOR,
    PUBLIC_FIELDS,
    assert_problem,
    create,
    get,
    key_of,
    known_user,
    new_body,
)
from tests.support.app import FunctionCaller


class TestCreate:
    def test_creates_with_every_public_field_and_location(self, app: FunctionCaller) -> None:
        response = create(app, new_body(targetTitle="Onboarding chat", dueAt="2030-01-02T03:04:05+01:00"))
        assert response.status == 201
        body = response.json()
        assert set(body) == PUBLIC_FIELDS
        assert response.headers["location"] == f"/assignments/{body['id']}"
        assert response.headers["etag"] == body["_etag"]
        assert len(body["id"]) == 32
        assert all(c in "0123456789abcdef" for c in body["id"])
        assert body["status"] == "pending"
        assert body["originatorEmail"] == ORIGINATOR
        assert body["createdBy"] == body["updatedBy"] == ORIGINATOR
        assert body["assignedBy"] == ORIGINATOR
        # Create resolves the assignee through the directory and keeps their key (it was left null).
        assert body["assigneeUserKey"] == key_of(ASSIGNEE)
        assert body["attempts"] == []
        assert body["delegationChain"] == []
        assert body["candidateGroups"] == []
        assert body["dueAt"] == "2030-01-02T02:04:05.000Z"
        assert body["createdAt"].endswith("Z")
        assert len(body["createdAt"]) == 24
        assert body["allowDelegation"] is True
        assert body["allowRejection"] is False
        assert body["maxAttempts"] is None
        assert body["passScore"] is None
        assert body["remindersSent"] == 0
        for internal in ("pk", "version", "outbox", "idempotency", "docType"):
            assert internal not in body

    def test_round_trips_two_on_a_directory_miss_one_on_a_hit_and_a_key_adds_its_claim(
        self, app: FunctionCaller
    ) -> None:
        upn = f"rt-{uuid.uuid4().hex[:8]}@contoso.com"
        known_user(app, upn)
        body = new_body(assigneeEmail=upn)
        for expected in (2, 1):  # the directory lookup misses, then hits the cache
            response, trips = app.round_trips_of(lambda: create(app, body))
            assert response.status == 201
            assert trips == expected
        key = {"Idempotency-Key": uuid.uuid4().hex}
        response, trips = app.round_trips_of(lambda: create(app, body, headers=key))
        assert (response.status, trips) == (201, 2)
        task = new_body(taskKey="t", candidateGroups=["g"])
        del task["assigneeEmail"]
        response, trips = app.round_trips_of(lambda: create(app, task))
        assert (response.status, trips) == (201, 1)

    def test_accepts_a_client_id_and_refuses_its_duplicate(self, app: FunctionCaller) -> None:
        assignment_id = f"client-{uuid.uuid4().hex[:8]}"
        assert create(app, new_body(id=assignment_id)).status == 201
        assert_problem(create(app, new_body(id=assignment_id)), 409, "duplicateId")

    @pytest.mark.parametrize("bad_id", ["", "has space", "dot.ted", "x" * 65, "slash/id", 12])
    def test_refuses_a_malformed_id(self, app: FunctionCaller, bad_id: object) -> None:
        problem = assert_problem(create(app, new_body(id=bad_id)), 422, "validationFailed")
        assert problem["errors"][0]["field"] == "id"

    def test_an_unassigned_task(self, app: FunctionCaller) -> None:
        body = new_body(taskKey="review", candidateGroups=["g-reviewers"])
        del body["assigneeEmail"]
        created = create(app, body).json()
        assert created["assigneeEmail"] is None
        assert created["assignedBy"] is None
        assert created["taskKey"] == "review"
        assert created["candidateGroups"] == ["g-reviewers"]

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"status": "completed"}, "status"),
            ({"_etag": "x"}, "_etag"),
            ({"attempts": []}, "attempts"),
            ({"unknownField": 1}, "unknownField"),
            ({"targetType": "video"}, "targetType"),
            ({"completionCriteria": "whenever"}, "completionCriteria"),
            ({"dueAt": "2030-01-02T03:04:05"}, "dueAt"),
            ({"dueAt": "tomorrow"}, "dueAt"),
            ({"maxAttempts": 0}, "maxAttempts"),
            ({"passScore": 101, "completionCriteria": "flow_passed"}, "passScore"),
            ({"assigneeEmail": "not-an-email"}, "assigneeEmail"),
            ({"targetId": ""}, "targetId"),
            ({"originatorMessage": "x" * 2001}, "originatorMessage"),
            ({"target_type": "chat"}, "target_type"),
            ({"allowRejection": "yes"}, "allowRejection"),
            ({"allowDelegation": 1}, "allowDelegation"),
            ({"maxAttempts": 2.0}, "maxAttempts"),
            ({"maxAttempts": "3"}, "maxAttempts"),
            ({"dueAt": 1893456000}, "dueAt"),
            ({"passScore": "80", "completionCriteria": "flow_passed"}, "passScore"),
            ({"dueAt": "0001-01-01T00:00:00+01:00"}, "dueAt"),
            ({"dueAt": "1893456000"}, "dueAt"),
            ({"dueAt": "2030-01-31"}, "dueAt"),
            ({"expiresAt": "9999-12-31T23:59:59-01:00"}, "expiresAt"),
        ],
    )
    def test_refuses_invalid_fields(self, app: FunctionCaller, overrides: dict[str, Any], field: str) -> None:
        problem = assert_problem(create(app, new_body(**overrides)), 422, "validationFailed")
        assert field in [error["field"] for error in problem["errors"]]

    @pytest.mark.parametrize(
        "overrides",
        [
            {"completionCriteria": "flow_passed"},
            {"assigneeEmail": None},
            {"candidateGroups": ["g"]},
            {"dueAt": "2030-02-01T00:00:00Z", "expiresAt": "2030-01-01T00:00:00Z"},
            {"expiresAt": "2001-01-01T00:00:00Z"},
        ],
    )
    def test_refuses_inconsistent_bodies(self, app: FunctionCaller, overrides: dict[str, Any]) -> None:
        assert_problem(create(app, new_body(**overrides)), 422, "validationFailed")

    @pytest.mark.parametrize(
        ("body", "headers"),
        [
            (b"{not json", {"content-type": "application/json"}),
            (b"[1, 2]", {"content-type": "application/json"}),
            (b'{"a": 1}', {"content-type": "text/plain"}),
            (b'{"a": 1}', {}),
            (b'{"maxAttempts": NaN}', {"content-type": "application/json"}),
            (b'{"passScore": Infinity}', {"content-type": "application/json"}),
            (b"[" * 5000 + b"]" * 5000, {"content-type": "application/json"}),
        ],
    )
    def test_refuses_a_body_that_is_not_a_json_object(
        self, app: FunctionCaller, body: bytes, headers: dict[str, str]
    ) -> None:
        response = app.call(
            "create_assignment",
            method="POST",
            url="/assignments",
            token=app.tokens.user(ORIGINATOR),
            body=body,
            headers=headers,
        )
        assert_problem(response, 400, "invalidRequest")

    def test_refuses_a_body_over_64_kib(self, app: FunctionCaller) -> None:
        response = create(app, new_body(originatorName="x" * (65 * 1024)))
        assert_problem(response, 413, "payloadTooLarge")

    def test_an_app_must_name_the_originator(self, app: FunctionCaller) -> None:
        assert_problem(create(app, new_body(), token=app.tokens.admin_app()), 422, "validationFailed")
        created = create(app, new_body(originatorEmail=ORIGINATOR), token=app.tokens.admin_app("a1"))
        assert created.status == 201
        assert created.json()["createdBy"] == "app:a1"
        assert created.json()["originatorEmail"] == ORIGINATOR

    def test_a_user_cannot_create_for_another_originator(self, app: FunctionCaller) -> None:
        assert_problem(create(app, new_body(originatorEmail="someone@contoso.com")), 403, "forbidden")


class TestIdempotencyKey:
    def test_same_key_same_body_replays_exactly(self, app: FunctionCaller) -> None:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        first = create(app, new_body(), headers=key)
        second = create(app, new_body(), headers=key)
        assert first.status == second.status == 201
        assert first.json() == second.json()
        assert second.headers["location"] == first.headers["location"]

    def test_same_key_other_body_is_refused(self, app: FunctionCaller) -> None:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        assert create(app, new_body(), headers=key).status == 201
        assert_problem(create(app, new_body(targetId="other"), headers=key), 422, "idempotencyKeyReused")

    def test_keys_are_scoped_to_the_caller(self, app: FunctionCaller) -> None:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        first = create(app, new_body(), headers=key)
        other = create(app, new_body(), headers=key, token=app.tokens.user("bob@contoso.com"))
        assert other.status == 201
        assert other.json()["id"] != first.json()["id"]

    def test_same_key_with_another_explicit_id_is_refused(self, app: FunctionCaller) -> None:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        first_id, second_id = f"k-{uuid.uuid4().hex[:8]}", f"k-{uuid.uuid4().hex[:8]}"
        assert create(app, new_body(id=first_id), headers=key).status == 201
        assert_problem(create(app, new_body(id=second_id), headers=key), 422, "idempotencyKeyReused")
        assert get(app, second_id, app.tokens.user(ORIGINATOR)).status == 404

    def test_same_key_first_without_then_with_an_id_is_refused(self, app: FunctionCaller) -> None:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        assert create(app, new_body(), headers=key).status == 201
        assert_problem(create(app, new_body(id=f"k-{uuid.uuid4().hex[:8]}"), headers=key), 422, "idempotencyKeyReused")

    def test_a_reused_key_with_an_invalid_body_is_reported_as_reused(self, app: FunctionCaller) -> None:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        assert create(app, new_body(), headers=key).status == 201
        assert_problem(create(app, new_body(targetType="video"), headers=key), 422, "idempotencyKeyReused")

    def test_replay_comes_before_time_dependent_validation(self, app: FunctionCaller, settings: Settings) -> None:
        now = [datetime.now(UTC)]
        clocked = Runtime(settings, clock=lambda: now[0])
        set_runtime(clocked)
        try:
            key = {"Idempotency-Key": uuid.uuid4().hex}
            body = new_body(expiresAt=format_timestamp(now[0] + timedelta(minutes=1)))
            first = create(app, body, headers=key)
            now[0] += timedelta(hours=1)
            again = create(app, body, headers=key)
        finally:
            set_runtime(app.runtime)
        assert first.status == again.status == 201
        assert again.json() == first.json()

    def test_a_key_never_replays_an_assignment_it_did_not_create(self, app: FunctionCaller) -> None:
        taken = f"taken-{uuid.uuid4().hex[:8]}"
        assert create(app, new_body(id=taken)).status == 201
        key = {"Idempotency-Key": uuid.uuid4().hex}
        assert_problem(create(app, new_body(id=taken), headers=key), 409, "duplicateId")
        assert_problem(create(app, new_body(id=taken), headers=key), 409, "duplicateId")

    def test_costs_two_round_trips_with_a_key(self, app: FunctionCaller) -> None:
        assert create(app, new_body()).status == 201  # the assignee is in the directory and its cache
        key = {"Idempotency-Key": uuid.uuid4().hex}
        response, trips = app.round_trips_of(lambda: create(app, new_body(), headers=key))
        assert response.status == 201
        assert trips == 2

    def test_identical_concurrent_requests_create_one_assignment(self, app: FunctionCaller) -> None:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(pool.map(lambda _: create(app, new_body(), headers=key), range(8)))
        assert {r.status for r in responses} == {201}
        assert len({r.json()["id"] for r in responses}) == 1


class TestRead:
    def test_the_assignee_and_originator_read_with_one_round_trip(self, app: FunctionCaller) -> None:
        created = create(app, new_body()).json()
        for token in (app.tokens.user(ASSIGNEE), app.tokens.user(ORIGINATOR)):
            response, trips = app.round_trips_of(lambda t=token: get(app, created["id"], t))
            assert response.status == 200
            assert trips == 1
            assert response.json() == created
            assert response.headers["etag"] == created["_etag"]

    def test_the_assignee_is_their_key_whatever_the_upns_case(self, app: FunctionCaller) -> None:
        created = create(app, new_body(assigneeEmail="Mixed.Case@Contoso.com")).json()
        assert created["assigneeEmail"] == "mixed.case@contoso.com"
        assert created["assigneeUserKey"] == key_of("mixed.case@contoso.com")
        token = app.tokens.user("MIXED.case@contoso.com", oid=key_of("mixed.case@contoso.com"))
        assert get(app, created["id"], token).status == 200

    def test_an_admin_reads_anything(self, app: FunctionCaller) -> None:
        created = create(app, new_body()).json()
        assert get(app, created["id"], app.tokens.admin_app()).status == 200

    def test_a_stranger_and_a_missing_id_get_404(self, app: FunctionCaller) -> None:
        created = create(app, new_body()).json()
        assert_problem(get(app, created["id"], app.tokens.user("eve@contoso.com")), 404, "notFound")
        assert_problem(get(app, "does-not-exist", app.tokens.user(ORIGINATOR)), 404, "notFound")
        assert_problem(get(app, "bad id!", app.tokens.user(ORIGINATOR)), 404, "notFound")

    def test_candidate_groups_see_an_unassigned_task_only(self, app: FunctionCaller) -> None:
        body = new_body(taskKey="triage", candidateGroups=["g-1"])
        del body["assigneeEmail"]
        task = create(app, body).json()
        member = app.tokens.user("mia@contoso.com", groups=["g-1"])
        outsider = app.tokens.user("otto@contoso.com", groups=["g-2"])
        assert get(app, task["id"], member).status == 200
        assert get(app, task["id"], outsider).status == 404
        assigned = create(app, new_body(taskKey="triage", candidateGroups=["g-1"])).json()
        assert get(app, assigned["id"], member).status == 404


class TestAuthOnRoutes:
    def test_no_token_is_401_with_bearer_challenge(self, app: FunctionCaller) -> None:
        response = app.call("get_assignment", url="/assignments/x", route_params={"id": "x"})
        assert_problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == "Bearer"

    def test_a_bad_token_is_401_with_invalid_token(self, app: FunctionCaller) -> None:
        response = app.call("get_assignment", url="/assignments/x", route_params={"id": "x"}, token="abc.def.ghi")
        assert_problem(response, 401, "unauthenticated")
        assert 'error="invalid_token"' in response.headers["www-authenticate"]

    def test_missing_scope_is_403(self, app: FunctionCaller) -> None:
        token = app.tokens.user(ORIGINATOR, scopes="User.Read")
        assert_problem(create(app, new_body(), token=token), 403, "forbidden")

    def test_an_app_without_a_role_is_403(self, app: FunctionCaller) -> None:
        token = app.tokens.factory.app_token(app_id="nobody", roles=())
        assert_problem(create(app, new_body(originatorEmail=ORIGINATOR), token=token), 403, "forbidden")

    @pytest.mark.parametrize("version", [1, 2])
    def test_v1_and_v2_tokens_are_accepted(self, app: FunctionCaller, version: int) -> None:
        token = app.tokens.user(ORIGINATOR, version=version)
        assert create(app, new_body(), token=token).status == 201


def test_ts_is_whole_seconds_as_cosmos_sends_it(app: FunctionCaller) -> None:
    created = create(app, new_body()).json()
    assert isinstance(created["_ts"], int)
    assert b'"_ts": ' + str(created["_ts"]).encode() + b"," in get(app, created["id"], app.tokens.user(ORIGINATOR)).body
