"""GET /assignments through the registered function, against the emulator: each role sees exactly its own
assignments, newest first, filtered and paged by continuation token."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.aggregate import Decision
from core.models import AssignmentDocument
from tests.support.api import (
    PUBLIC_FIELDS,
    act,
    add_user,
    assert_problem,
    catch_up,
    change_stored,
    create,
    new_body,
    stored,
)
from tests.support.app import FunctionCaller, Response

T0 = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


def upn(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}@contoso.com"


def list_as(app: FunctionCaller, token: str, *, catch: bool = True, **params: Any) -> Response:
    if catch:
        catch_up(app)  # lists are views: the change feed has caught up before a list is read
    return app.call("list_assignments", url="/assignments", token=token, params={k: str(v) for k, v in params.items()})


def listed(app: FunctionCaller, token: str, **params: Any) -> list[dict[str, Any]]:
    response = list_as(app, token, **params)
    assert response.status == 200, response.body
    body = response.json()
    assert set(body) == {"items", "continuationToken"}
    assert body["continuationToken"] is None
    return body["items"]  # type: ignore[no-any-return]


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


def make(app: FunctionCaller, originator: str, *, minute: int = 0, **overrides: Any) -> str:
    """An assignment created `minute` minutes after T0, so the newest-first order is known."""
    response = create(app, new_body(**overrides), token=app.tokens.user(originator))
    assert response.status == 201, response.body
    assignment_id: str = response.json()["id"]
    change_stored(app, assignment_id, created_at=T0 + timedelta(minutes=minute))
    return assignment_id


class TestRoles:
    def test_the_assignee_sees_their_assignments_newest_first(self, app: FunctionCaller) -> None:
        originator, assignee = upn("o"), upn("a")
        made = [make(app, originator, minute=m, assigneeEmail=assignee) for m in (2, 0, 1)]
        make(app, originator, assigneeEmail=upn("other"))
        items = listed(app, app.tokens.user(assignee), role="assignee")
        assert ids(items) == [made[0], made[2], made[1]]
        assert all(set(item) == PUBLIC_FIELDS for item in items)
        assert ids(listed(app, app.tokens.user(assignee))) == ids(items), "assignee is the default role"

    def test_a_reassigned_assignment_follows_the_assignee_by_user_key(self, app: FunctionCaller) -> None:
        originator, first = upn("o"), upn("a")
        assignment_id = make(app, originator, assigneeEmail=first)
        user_key, second = add_user(app)
        reassigned = act(app, "reassign", assignment_id, {"toUpn": second}, token=app.tokens.user(originator))
        assert reassigned.status == 200, reassigned.body
        assert ids(listed(app, app.tokens.user(second, oid=user_key))) == [assignment_id]
        assert listed(app, app.tokens.user(first)) == []

    def test_the_originator_sees_what_they_created(self, app: FunctionCaller) -> None:
        originator = upn("o")
        made = [make(app, originator, minute=m) for m in (0, 1)]
        make(app, upn("someone-else"))
        assert ids(listed(app, app.tokens.user(originator), role="originator")) == made[::-1]

    def test_candidates_see_unassigned_tasks_of_their_groups(self, app: FunctionCaller) -> None:
        originator, group, other_group = upn("o"), f"g-{uuid.uuid4()}", f"g-{uuid.uuid4()}"
        task: dict[str, Any] = {"taskKey": "review", "assigneeEmail": None}
        open_task = make(app, originator, minute=1, candidateGroups=[group, "unrelated"], **task)
        make(app, originator, candidateGroups=[other_group], **task)
        make(app, originator, taskKey="review", candidateGroups=[group])  # held by an assignee
        member = app.tokens.user(upn("m"), groups=[group, f"g-{uuid.uuid4()}"])
        assert ids(listed(app, member, role="candidate")) == [open_task]
        assert listed(app, app.tokens.user(upn("no-groups")), role="candidate") == []

    def test_an_app_holds_nothing_as_an_assignee(self, app: FunctionCaller) -> None:
        assert listed(app, app.tokens.admin_app(), role="assignee") == []

    def test_only_assignment_documents_are_listed(self, app: FunctionCaller) -> None:
        originator = upn("o")
        assignment_id = make(app, originator)
        document = stored(app, assignment_id)
        assert document is not None
        other = AssignmentDocument.model_validate(
            {**document.model_dump(), "id": f"other-{uuid.uuid4().hex}", "pk": "other", "doc_type": "projection"}
        )
        app.runtime.store.create(Decision(shown=other, document=other))
        assert ids(listed(app, app.tokens.user(originator), role="originator")) == [assignment_id]


class TestFilters:
    def test_status_takes_one_or_several(self, app: FunctionCaller) -> None:
        originator = upn("o")
        pending = make(app, originator, minute=0)
        cancelled = make(app, originator, minute=1)
        assert act(app, "cancel", cancelled, token=app.tokens.user(originator)).status == 200
        token = app.tokens.user(originator)
        assert ids(listed(app, token, role="originator", status="pending")) == [pending]
        assert ids(listed(app, token, role="originator", status="cancelled")) == [cancelled]
        assert ids(listed(app, token, role="originator", status="pending,cancelled")) == [cancelled, pending]

    def test_due_before_excludes_later_and_undated_assignments(self, app: FunctionCaller) -> None:
        originator = upn("o")
        early = make(app, originator, dueAt="2031-01-01T00:00:00Z")
        make(app, originator, dueAt="2031-03-01T00:00:00Z")
        make(app, originator)
        token = app.tokens.user(originator)
        assert ids(listed(app, token, role="originator", dueBefore="2031-02-01T01:00:00+01:00")) == [early]

    @pytest.mark.parametrize(
        "params",
        [
            {"role": "boss"},
            {"status": "sleeping"},
            {"dueBefore": "2031-01-01T00:00:00"},
            {"dueBefore": "0001-01-01T00:00:00+01:00"},
            {"dueBefore": "1700000000"},
            {"page_size": "10"},
            {"pageSize": 0},
            {"pageSize": 101},
            {"pageSize": "many"},
            {"unknown": "1"},
            {"continuationToken": "not base64!"},
        ],
    )
    def test_invalid_parameters_are_422(self, app: FunctionCaller, params: dict[str, Any]) -> None:
        assert_problem(list_as(app, app.tokens.user(upn("u")), **params), 422, "validationFailed")

    def test_a_token_cosmos_refuses_is_422(self, app: FunctionCaller) -> None:
        forged = base64.urlsafe_b64encode(b'{"x": 1}').decode()
        response = list_as(app, app.tokens.user(upn("u")), continuationToken=forged)
        problem = assert_problem(response, 422, "validationFailed")
        assert problem["errors"][0]["field"] == "continuationToken"

    def test_no_token_is_401_and_a_missing_scope_403(self, app: FunctionCaller) -> None:
        assert_problem(app.call("list_assignments", url="/assignments"), 401, "unauthenticated")
        assert_problem(list_as(app, app.tokens.user(upn("u"), scopes="User.Read")), 403, "forbidden")


class TestPaging:
    def test_pages_follow_the_continuation_token_one_round_trip_each(self, app: FunctionCaller) -> None:
        originator = upn("o")
        made = [make(app, originator, minute=m) for m in range(5)]
        token = app.tokens.user(originator)
        pages: list[list[str]] = []
        continuation: str | None = None
        catch_up(app)
        while True:
            params: dict[str, Any] = {"role": "originator", "pageSize": 2}
            if continuation is not None:
                params["continuationToken"] = continuation
            response, trips = app.round_trips_of(lambda params=params: list_as(app, token, catch=False, **params))
            assert response.status == 200, response.body
            assert trips == 1
            body = response.json()
            pages.append(ids(body["items"]))
            continuation = body["continuationToken"]
            if continuation is None:
                break
        assert pages == [made[4:2:-1], made[2:0:-1], made[0:1]]

    def test_a_token_continues_only_its_own_query_and_caller(self, app: FunctionCaller) -> None:
        originator = upn("o")
        for minute in range(3):
            make(app, originator, minute=minute)
        first = list_as(app, app.tokens.user(originator), role="originator", pageSize=1).json()
        token = first["continuationToken"]
        assert token is not None
        other_filter = list_as(
            app, app.tokens.user(originator), role="originator", status="pending", continuationToken=token
        )
        assert_problem(other_filter, 422, "validationFailed")
        other_caller = list_as(app, app.tokens.user(upn("x")), role="originator", continuationToken=token)
        assert_problem(other_caller, 422, "validationFailed")
        same = list_as(app, app.tokens.user(originator), role="originator", pageSize=1, continuationToken=token)
        assert same.status == 200

    def test_an_overdue_list_pages_through_the_active_assignments_past_their_due_date(
        self, app: FunctionCaller
    ) -> None:
        # Each page judges "overdue" at its own request's time: the token continues the query as asked.
        originator = upn("o")
        past_due = [make(app, originator, minute=m, dueAt="2031-01-01T00:00:00Z") for m in range(3)]
        cancelled = make(app, originator, minute=3, dueAt="2031-01-01T00:00:00Z")
        assert act(app, "cancel", cancelled, token=app.tokens.user(originator)).status == 200
        make(app, originator, minute=4, dueAt="2031-01-01T00:00:00Z")  # not yet due
        yesterday = datetime.now(UTC) - timedelta(days=1)
        for assignment_id in (*past_due, cancelled):
            change_stored(app, assignment_id, due_at=yesterday)
        token = app.tokens.user(originator)
        first = list_as(app, token, role="originator", overdue="true", pageSize=2)
        assert first.status == 200, first.body
        continuation = first.json()["continuationToken"]
        assert continuation is not None
        second = list_as(
            app, token, catch=False, role="originator", overdue="true", pageSize=2, continuationToken=continuation
        )
        assert second.status == 200, second.body
        assert second.json()["continuationToken"] is None
        assert ids(first.json()["items"]) + ids(second.json()["items"]) == past_due[::-1]

    def test_the_default_page_holds_50(self, app: FunctionCaller) -> None:
        originator = upn("o")
        for _ in range(51):
            create(app, new_body(), token=app.tokens.user(originator))
        response = list_as(app, app.tokens.user(originator), role="originator")
        assert len(response.json()["items"]) == 50
        assert response.json()["continuationToken"] is not None
