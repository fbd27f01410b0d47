"""Progress events, complete, reject, cancel, reassign and PATCH, through the registered functions, against
the emulator: every endpoint, every criterion, every error code, and one winner under concurrency."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from core.aggregate import Decision
from core.auth import Principal
from core.errors import InvalidTransition
from core.models import AssignmentDocument, IdempotencyRecord
from core.services import Command, Deps, cancel_assignment, reject_assignment
from core.store import AssignmentStore
from tests.support.api import (
    ASSIGNEE,
    ORIGINATOR,
    act,
    add_user,
    assert_problem,
    change_stored,
    create,
    delegate,
    event_types,
    get,
    key_of,
    new_assignment,
    new_body,
    now_iso,
    ok,
    patch,
    post_event,
    stored,
    version_of,
)
from tests.support.app import TEST_TENANT, FunctionCaller, Response

# --- progress events -------------------------------------------------------------------------------------


class TestEvents:
    def test_a_user_holding_the_report_role_is_not_a_reporter(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="chat_visited")
        mallory = app.tokens.user("mallory@contoso.com", roles=["Assignments.Report"])
        assert_problem(post_event(app, created["id"], "visited", token=mallory), 404, "notFound")
        assert version_of(app, created["id"]) == 1

    def test_a_repeated_event_id_changes_nothing_even_after_many_later_events(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="manual")
        first = ok(post_event(app, created["id"], "flow_started", event_id="first", chatLogId="c0"))
        for index in range(1, 111):
            ok(post_event(app, created["id"], "engaged", chatLogId="c0", event_id=f"later-{index}"))
        before = stored(app, created["id"])
        assert before is not None
        again = ok(post_event(app, created["id"], "flow_started", event_id="first", chatLogId="c0"))
        assert again["_etag"] == before.etag
        assert len(again["attempts"]) == len(first["attempts"]) == 1

    def test_an_outcome_nested_too_deeply_is_refused(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="flow_completed")
        nested: dict[str, Any] = {}
        for _ in range(40):
            nested = {"n": nested}
        response = post_event(app, created["id"], "flow_completed", outcomeData=nested)
        assert_problem(response, 422, "validationFailed")
        assert version_of(app, created["id"]) == 1

    def test_an_outcome_over_8_kib_is_refused_and_changes_nothing(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="flow_completed")
        response = post_event(app, created["id"], "flow_completed", outcomeData={"blob": "x" * 9000})
        assert response.status == 422
        assert response.json()["errors"][0]["field"] == "outcomeData"
        assert version_of(app, created["id"]) == 1

    def test_the_first_event_starts_the_assignment(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="chat_engaged")
        started = ok(post_event(app, created["id"], "visited"))
        assert started["status"] == "in_progress"
        assert started["attempts"] == []
        assert started["updatedBy"] == ASSIGNEE
        assert version_of(app, created["id"]) == 2
        assert event_types(app, created["id"])[-1] == "started"
        assert get(app, created["id"], app.tokens.user(ORIGINATOR)).json() == started

    @pytest.mark.parametrize(
        ("criterion", "completing", "not_completing"),
        [
            ("chat_visited", {"type": "visited"}, {"type": "engaged"}),
            ("chat_engaged", {"type": "engaged"}, {"type": "visited"}),
            ("flow_started", {"type": "flow_started"}, {"type": "engaged"}),
            ("flow_completed", {"type": "flow_completed"}, {"type": "flow_started"}),
            ("flow_passed", {"type": "flow_completed", "score": 80}, {"type": "flow_completed", "score": 79.5}),
        ],
    )
    def test_each_criterion_completes_on_its_event(
        self, app: FunctionCaller, criterion: str, completing: dict[str, Any], not_completing: dict[str, Any]
    ) -> None:
        created = new_assignment(app, completionCriteria=criterion, passScore=80)
        assert ok(post_event(app, created["id"], not_completing.pop("type"), **not_completing))["status"] == (
            "in_progress"
        )
        completed = ok(post_event(app, created["id"], completing.pop("type"), **completing))
        assert completed["status"] == "completed"
        assert event_types(app, created["id"])[-1] == "completed"

    def test_a_completing_first_event_goes_straight_from_pending_to_completed(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="chat_visited")
        assert ok(post_event(app, created["id"], "visited"))["status"] == "completed"

    def test_manual_is_never_completed_by_events(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="manual")
        for kind in ("visited", "engaged", "flow_started", "flow_completed"):
            assert ok(post_event(app, created["id"], kind))["status"] == "in_progress"

    def test_attempts_open_and_close_with_the_events_times_and_outcome(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="manual")
        t0, t1, t2 = now_iso(timedelta(minutes=-3)), now_iso(timedelta(minutes=-2)), now_iso(timedelta(minutes=-1))
        post_event(app, created["id"], "flow_started", chatLogId="c1", occurredAt=t0)
        post_event(app, created["id"], "engaged", chatLogId="c2", occurredAt=t1)
        closed = ok(
            post_event(
                app, created["id"], "flow_completed", occurredAt=t2, score=42, outcomeData={"q1": "a"}, note="done"
            )
        )
        replaced = {"startedAt": t0, "chatLogId": "c1", "completedAt": t1, "score": None, "outcomeData": None}
        finished = {"startedAt": t1, "chatLogId": "c2", "completedAt": t2, "score": 42, "outcomeData": {"q1": "a"}}
        assert closed["attempts"] == [{**replaced, "note": None}, {**finished, "note": "done"}]

    def test_flow_completed_with_no_open_attempt_opens_and_closes_one(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="flow_completed")
        at = now_iso()
        completed = ok(post_event(app, created["id"], "flow_completed", occurredAt=at, score=5))
        assert completed["attempts"] == [
            {"startedAt": at, "chatLogId": None, "completedAt": at, "score": 5, "outcomeData": None, "note": None}
        ]

    def test_opening_beyond_max_attempts_is_an_invalid_transition(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="chat_engaged", maxAttempts=1)
        first = ok(post_event(app, created["id"], "visited", chatLogId="c1"))
        problem = assert_problem(post_event(app, created["id"], "visited", chatLogId="c2"), 409, "invalidTransition")
        assert "in_progress" in problem["detail"]
        assert get(app, created["id"], app.tokens.user(ORIGINATOR)).json() == first

    def test_flow_passed_below_pass_score_on_the_last_attempt_fails(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="flow_passed", passScore=70, maxAttempts=2)
        assert ok(post_event(app, created["id"], "flow_completed", score=10))["status"] == "in_progress"
        failed = ok(post_event(app, created["id"], "flow_completed", score=69))
        assert failed["status"] == "failed"
        assert [attempt["score"] for attempt in failed["attempts"]] == [10, 69]
        assert event_types(app, created["id"])[-1] == "failed"
        assert_problem(post_event(app, created["id"], "visited"), 409, "invalidTransition")

    def test_a_repeated_event_id_answers_200_and_changes_nothing(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="chat_visited")
        first = ok(post_event(app, created["id"], "visited", event_id="e-1"))
        assert first["status"] == "completed"
        again = post_event(app, created["id"], "visited", event_id="e-1", chatLogId="different")
        assert ok(again) == first
        assert version_of(app, created["id"]) == 2

    def test_a_repeated_event_id_ignores_a_stale_if_match(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="manual")
        body = {"eventId": "e-2", "type": "visited", "occurredAt": now_iso()}
        first = ok(act(app, "events", created["id"], body, token=app.tokens.user(ASSIGNEE)))
        stale = {"if-match": created["_etag"]}
        assert ok(act(app, "events", created["id"], body, token=app.tokens.user(ASSIGNEE), headers=stale)) == first

    def test_a_reporter_app_and_an_admin_may_post_events(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="manual")
        reported = ok(post_event(app, created["id"], "visited", token=app.tokens.reporter_app("reporter-1")))
        assert reported["updatedBy"] == "app:reporter-1"
        assert ok(post_event(app, created["id"], "engaged", token=app.tokens.admin_app()))["status"] == "in_progress"

    def test_the_originator_may_read_but_not_post_events(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        assert_problem(post_event(app, created["id"], "visited", token=app.tokens.user(ORIGINATOR)), 403, "forbidden")

    def test_a_stranger_and_a_missing_assignment_get_404(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        stranger = app.tokens.user("eve@contoso.com")
        assert_problem(post_event(app, created["id"], "visited", token=stranger), 404, "notFound")
        assert_problem(post_event(app, "missing-id", "visited"), 404, "notFound")

    def test_a_reporter_role_does_not_open_the_other_routes(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        assert_problem(act(app, "cancel", created["id"], token=app.tokens.reporter_app()), 403, "forbidden")

    def test_an_event_for_a_delegated_assignment_names_the_successor(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        _, delegate_upn = add_user(app)
        successor = delegate(app, created["id"], {"toUpn": delegate_upn}, token=app.tokens.user(ASSIGNEE)).json()
        problem = assert_problem(
            post_event(app, created["id"], "visited", token=app.tokens.reporter_app()), 409, "invalidTransition"
        )
        assert problem["delegatedTo"] == successor["id"]

    def test_an_event_after_expires_at_is_expired(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        change_stored(app, created["id"], expires_at=datetime.now(UTC) - timedelta(seconds=1))
        assert_problem(post_event(app, created["id"], "visited"), 409, "expired")

    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"occurredAt": "2030-01-01T00:00:00"}, "occurredAt"),
            ({"occurredAt": "six minutes ahead"}, "occurredAt"),
            ({"occurredAt": "0001-01-01T00:00:00+01:00"}, "occurredAt"),
            ({"type": "clicked"}, "type"),
            ({"type": "flow_completed", "score": 100.5}, "score"),
            ({"type": "flow_completed", "score": -1}, "score"),
            ({"score": 50}, "body"),
            ({"eventId": ""}, "eventId"),
            ({"unknown": 1}, "unknown"),
            ({"note": "x" * 2001, "type": "flow_completed"}, "note"),
        ],
    )
    def test_invalid_events_are_422(self, app: FunctionCaller, fields: dict[str, Any], field: str) -> None:
        created = new_assignment(app)
        if fields.get("occurredAt") == "six minutes ahead":
            # Computed here, not at collection time, so a slow suite cannot bring it inside the window.
            fields = {"occurredAt": now_iso(timedelta(minutes=6))}
        body = {"eventId": uuid.uuid4().hex, "type": "visited", "occurredAt": now_iso(), **fields}
        problem = assert_problem(
            act(app, "events", created["id"], body, token=app.tokens.user(ASSIGNEE)), 422, "validationFailed"
        )
        assert field in [error["field"] for error in problem["errors"]]

    def test_an_event_up_to_5_minutes_ahead_is_accepted(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        assert post_event(app, created["id"], "visited", occurredAt=now_iso(timedelta(minutes=4))).status == 200

    def test_a_missing_event_id_is_422(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        body = {"type": "visited", "occurredAt": now_iso()}
        response = act(app, "events", created["id"], body, token=app.tokens.user(ASSIGNEE))
        assert_problem(response, 422, "validationFailed")

    def test_a_new_event_with_a_stale_if_match_is_412(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="manual")
        ok(post_event(app, created["id"], "visited"))
        body = {"eventId": uuid.uuid4().hex, "type": "engaged", "occurredAt": now_iso()}
        stale = {"if-match": created["_etag"]}
        response = act(app, "events", created["id"], body, token=app.tokens.user(ASSIGNEE), headers=stale)
        assert_problem(response, 412, "preconditionFailed")

    def test_an_event_over_64_kib_is_413(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        body = {"eventId": "e", "type": "flow_completed", "occurredAt": now_iso(), "outcomeData": {"x": "y" * 66000}}
        response = act(app, "events", created["id"], body, token=app.tokens.user(ASSIGNEE))
        assert_problem(response, 413, "payloadTooLarge")

    def test_an_event_body_must_be_a_json_object(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        for raw, headers in ((b"", {"content-type": "application/json"}), (b"[]", {"content-type": "application/json"}),
                             (b"{}", {"content-type": "text/plain"})):  # fmt: skip
            response = act(app, "events", created["id"], raw=raw, headers=headers, token=app.tokens.user(ASSIGNEE))
            assert_problem(response, 400, "invalidRequest")


# --- complete, reject, cancel --------------------------------------------------------------------------------


class TestComplete:
    @pytest.mark.parametrize("body", [None, {}])
    def test_the_originator_completes_a_manual_assignment(self, app: FunctionCaller, body: Any) -> None:
        created = new_assignment(app, completionCriteria="manual")
        completed = ok(act(app, "complete", created["id"], body))
        assert completed["status"] == "completed"
        assert completed["updatedBy"] == ORIGINATOR
        assert event_types(app, created["id"])[-1] == "completed"

    def test_an_admin_completes_an_in_progress_one(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="manual")
        post_event(app, created["id"], "visited")
        assert ok(act(app, "complete", created["id"], token=app.tokens.admin_app()))["status"] == "completed"

    @pytest.mark.parametrize("criterion", ["chat_visited", "chat_engaged", "flow_started", "flow_completed"])
    def test_any_other_criterion_is_criteria_not_manual(self, app: FunctionCaller, criterion: str) -> None:
        created = new_assignment(app, completionCriteria=criterion)
        assert_problem(act(app, "complete", created["id"]), 409, "criteriaNotManual")

    def test_twice_is_an_invalid_transition(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="manual")
        ok(act(app, "complete", created["id"]))
        problem = assert_problem(act(app, "complete", created["id"]), 409, "invalidTransition")
        assert "completed" in problem["detail"]

    def test_a_body_with_fields_is_422(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="manual")
        assert_problem(act(app, "complete", created["id"], {"reason": "x"}), 422, "validationFailed")

    def test_the_assignee_attests_it_is_done_and_a_stranger_gets_404(self, app: FunctionCaller) -> None:
        # The contract lets the assignee of a manual assignment complete it (they were refused with 403).
        created = new_assignment(app, completionCriteria="manual")
        assert_problem(act(app, "complete", created["id"], token=app.tokens.user("eve@contoso.com")), 404, "notFound")
        assert ok(act(app, "complete", created["id"], token=app.tokens.user(ASSIGNEE)))["status"] == "completed"


class TestReject:
    def test_the_assignee_rejects_with_a_reason(self, app: FunctionCaller) -> None:
        created = new_assignment(app, allowRejection=True)
        rejected = ok(act(app, "reject", created["id"], {"reason": "Not my area"}, token=app.tokens.user(ASSIGNEE)))
        assert rejected["status"] == "rejected"
        assert rejected["rejectedBy"] == ASSIGNEE
        assert rejected["rejectionReason"] == "Not my area"
        assert rejected["rejectedAt"] == rejected["updatedAt"]
        assert event_types(app, created["id"])[-1] == "rejected"

    def test_without_a_body_the_reason_is_null(self, app: FunctionCaller) -> None:
        created = new_assignment(app, allowRejection=True)
        rejected = ok(act(app, "reject", created["id"], token=app.tokens.user(ASSIGNEE)))
        assert rejected["rejectionReason"] is None

    def test_when_not_allowed_it_is_rejection_not_allowed(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        response = act(app, "reject", created["id"], {}, token=app.tokens.user(ASSIGNEE))
        assert_problem(response, 409, "rejectionNotAllowed")

    def test_the_originator_gets_403(self, app: FunctionCaller) -> None:
        created = new_assignment(app, allowRejection=True)
        assert_problem(act(app, "reject", created["id"]), 403, "forbidden")

    def test_a_reason_over_2000_characters_is_422(self, app: FunctionCaller) -> None:
        created = new_assignment(app, allowRejection=True)
        response = act(app, "reject", created["id"], {"reason": "x" * 2001}, token=app.tokens.user(ASSIGNEE))
        assert_problem(response, 422, "validationFailed")


class TestCancel:
    def test_the_originator_cancels_with_a_reason(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        cancelled = ok(act(app, "cancel", created["id"], {"reason": "Obsolete"}))
        assert cancelled["status"] == "cancelled"
        assert cancelled["cancelledBy"] == ORIGINATOR
        assert cancelled["cancellationReason"] == "Obsolete"
        assert cancelled["cancelledAt"] == cancelled["updatedAt"]
        assert version_of(app, created["id"]) == 2
        assert event_types(app, created["id"])[-1] == "cancelled"

    def test_an_admin_app_cancels_as_itself(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        assert ok(act(app, "cancel", created["id"], token=app.tokens.admin_app("ops")))["cancelledBy"] == "app:ops"

    def test_a_terminal_assignment_absorbs_the_cancel(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        cancelled = ok(act(app, "cancel", created["id"]))
        problem = assert_problem(act(app, "cancel", created["id"]), 409, "invalidTransition")
        assert "cancelled" in problem["detail"]
        assert get(app, created["id"], app.tokens.user(ORIGINATOR)).json() == cancelled

    def test_after_expires_at_it_is_expired(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        change_stored(app, created["id"], expires_at=datetime.now(UTC) - timedelta(seconds=1))
        assert_problem(act(app, "cancel", created["id"]), 409, "expired")

    def test_the_assignee_gets_403(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        assert_problem(act(app, "cancel", created["id"], token=app.tokens.user(ASSIGNEE)), 403, "forbidden")

    def test_a_stale_if_match_is_412_and_the_current_one_passes(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="manual")
        started = ok(post_event(app, created["id"], "visited"))
        assert_problem(
            act(app, "cancel", created["id"], headers={"if-match": created["_etag"]}), 412, "preconditionFailed"
        )
        assert ok(act(app, "cancel", created["id"], headers={"if-match": started["_etag"]}))["status"] == "cancelled"

    def test_no_token_is_401_and_a_missing_scope_403(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        response = app.call("cancel_assignment", method="POST", url="/x", route_params={"id": created["id"]}, body=b"")
        assert_problem(response, 401, "unauthenticated")
        no_scope = app.tokens.user(ORIGINATOR, scopes="User.Read")
        assert_problem(act(app, "cancel", created["id"], token=no_scope), 403, "forbidden")


class TestIdempotencyKey:
    def test_a_cancel_replays_exactly_and_refuses_another_body(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        key = {"Idempotency-Key": uuid.uuid4().hex}
        first = act(app, "cancel", created["id"], {"reason": "r"}, headers=key)
        again = act(app, "cancel", created["id"], {"reason": "r"}, headers=key)
        assert ok(again) == ok(first)
        assert_problem(act(app, "cancel", created["id"], {"reason": "other"}, headers=key), 422, "idempotencyKeyReused")
        invalid = {"reason": "x" * 2001}
        assert_problem(act(app, "cancel", created["id"], invalid, headers=key), 422, "idempotencyKeyReused")

    def test_a_replayed_create_answers_201_with_the_current_assignment_after_later_writes(
        self, app: FunctionCaller
    ) -> None:
        # docs/api-rules.md: the first status, with the assignment's current representation once it has changed
        # (the first body used to be kept inside the document, which grew it without bound).
        key = {"Idempotency-Key": uuid.uuid4().hex}
        first = create(app, new_body(), headers=key)
        assert first.status == 201
        created = first.json()
        ok(patch(app, created["id"], {"targetTitle": "Edited"}, if_match=created["_etag"]))
        cancelled = ok(act(app, "cancel", created["id"], {"reason": "done"}))
        replay = create(app, new_body(), headers=key)
        assert replay.status == 201
        assert replay.json() == cancelled
        assert replay.json()["id"] == created["id"]


# --- reassign ------------------------------------------------------------------------------------------------


class TestReassign:
    def test_moves_the_assignment_in_place_and_keeps_the_attempts(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="manual")
        post_event(app, created["id"], "flow_started", chatLogId="c1")
        change_stored(app, created["id"], reminders_sent=2, last_reminder_at=datetime.now(UTC))
        user_key, upn = add_user(app)
        reassigned = ok(act(app, "reassign", created["id"], {"toUpn": upn.upper(), "reason": "Holiday"}))
        assert reassigned["id"] == created["id"]
        assert reassigned["status"] == "in_progress"
        assert reassigned["reassignedFrom"] == ASSIGNEE
        assert reassigned["assigneeEmail"] == upn
        assert reassigned["assigneeUserKey"] == user_key
        assert reassigned["assignedBy"] == ORIGINATOR
        assert reassigned["remindersSent"] == 0
        assert reassigned["lastReminderAt"] is None
        assert [attempt["chatLogId"] for attempt in reassigned["attempts"]] == ["c1"]
        assert event_types(app, created["id"])[-1] == "reassigned"

    def test_the_new_assignee_takes_over_and_the_old_one_loses_access(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="manual")
        user_key, upn = add_user(app)
        ok(act(app, "reassign", created["id"], {"toUpn": upn}))
        new_assignee = app.tokens.user(upn, oid=user_key)
        assert post_event(app, created["id"], "visited", token=new_assignee).status == 200
        assert_problem(post_event(app, created["id"], "visited"), 404, "notFound")

    def test_an_unknown_or_disabled_user_is_user_not_found(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        _, disabled = add_user(app, enabled=False)
        for upn in (f"nobody-{uuid.uuid4().hex[:8]}@contoso.com", disabled):
            assert_problem(act(app, "reassign", created["id"], {"toUpn": upn}), 422, "userNotFound")
        assert version_of(app, created["id"]) == 1

    def test_the_current_assignee_is_422(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        problem = assert_problem(act(app, "reassign", created["id"], {"toUpn": ASSIGNEE}), 422, "validationFailed")
        assert problem["errors"][0]["field"] == "toUpn"

    @pytest.mark.parametrize("body", [{}, {"toUpn": "not-an-upn"}, {"toUpn": "a@contoso.com", "extra": 1}])
    def test_invalid_bodies_are_422(self, app: FunctionCaller, body: dict[str, Any]) -> None:
        created = new_assignment(app)
        assert_problem(act(app, "reassign", created["id"], body), 422, "validationFailed")

    def test_the_assignee_gets_403_and_a_terminal_one_409(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        _, upn = add_user(app)
        assert_problem(
            act(app, "reassign", created["id"], {"toUpn": upn}, token=app.tokens.user(ASSIGNEE)), 403, "forbidden"
        )
        ok(act(app, "cancel", created["id"]))
        assert_problem(act(app, "reassign", created["id"], {"toUpn": upn}), 409, "invalidTransition")


# --- PATCH ---------------------------------------------------------------------------------------------------


class TestPatch:
    def test_edits_the_named_fields_and_null_clears_one(self, app: FunctionCaller) -> None:
        created = new_assignment(app, targetTitle="Old", originatorMessage="Hi", dueAt="2031-01-01T00:00:00Z")
        edited = ok(
            patch(
                app,
                created["id"],
                {
                    "targetTitle": "New",
                    "originatorMessage": None,
                    "dueAt": "2031-02-01T01:00:00+01:00",
                    "maxAttempts": 3,
                },
                if_match=created["_etag"],
            )
        )
        assert edited["targetTitle"] == "New"
        assert edited["originatorMessage"] is None
        assert edited["dueAt"] == "2031-02-01T00:00:00.000Z"
        assert edited["maxAttempts"] == 3
        assert edited["updatedBy"] == ORIGINATOR
        assert version_of(app, created["id"]) == 2
        assert event_types(app, created["id"])[-1] == "edited"

    def test_without_if_match_it_is_428(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        assert_problem(patch(app, created["id"], {"targetTitle": "X"}, if_match=None), 428, "preconditionRequired")

    def test_a_stale_if_match_is_412(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        ok(patch(app, created["id"], {"targetTitle": "X"}, if_match=created["_etag"]))
        response = patch(app, created["id"], {"targetTitle": "Y"}, if_match=created["_etag"])
        assert_problem(response, 412, "preconditionFailed")

    def test_who_comes_before_if_match(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        stranger, assignee = app.tokens.user("eve@contoso.com"), app.tokens.user(ASSIGNEE)
        assert_problem(patch(app, created["id"], {}, if_match=None, token=stranger), 404, "notFound")
        assert_problem(patch(app, created["id"], {}, if_match=None, token=assignee), 403, "forbidden")
        assert ok(patch(app, created["id"], {}, if_match=created["_etag"], token=app.tokens.admin_app()))

    @pytest.mark.parametrize(
        "body",
        [
            {"status": "completed"},
            {"assigneeEmail": "x@contoso.com"},
            {"_etag": "x"},
            {"unknown": 1},
            {"dueAt": "2031-01-01T00:00:00"},
            {"maxAttempts": 0},
            {"passScore": 101},
            {"targetTitle": ""},
            {"expiresAt": "2001-01-01T00:00:00Z"},
            {"dueAt": "2032-01-01T00:00:00Z", "expiresAt": "2031-01-01T00:00:00Z"},
            {"dueAt": "2032-01-01T00:00:00Z"},
        ],
    )
    def test_invalid_patches_are_422(self, app: FunctionCaller, body: dict[str, Any]) -> None:
        created = new_assignment(app, expiresAt="2031-06-01T00:00:00Z")
        assert_problem(patch(app, created["id"], body, if_match=created["_etag"]), 422, "validationFailed")
        assert version_of(app, created["id"]) == 1

    def test_pass_score_cannot_be_cleared_for_flow_passed(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="flow_passed", passScore=50)
        assert_problem(
            patch(app, created["id"], {"passScore": None}, if_match=created["_etag"]), 422, "validationFailed"
        )
        assert ok(patch(app, created["id"], {"passScore": 60}, if_match=created["_etag"]))["passScore"] == 60

    def test_max_attempts_cannot_drop_below_the_attempts_made(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="manual")
        post_event(app, created["id"], "flow_started")
        started = ok(post_event(app, created["id"], "flow_started"))
        assert_problem(
            patch(app, created["id"], {"maxAttempts": 1}, if_match=started["_etag"]), 422, "validationFailed"
        )
        assert ok(patch(app, created["id"], {"maxAttempts": 2}, if_match=started["_etag"]))["maxAttempts"] == 2

    def test_a_flow_passed_assignment_keeps_an_attempt_to_pass_with(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="flow_passed", passScore=50, maxAttempts=3)
        below = ok(post_event(app, created["id"], "flow_completed", score=10))
        problem = assert_problem(
            patch(app, created["id"], {"maxAttempts": 1}, if_match=below["_etag"]), 422, "validationFailed"
        )
        assert problem["errors"][0]["field"] == "maxAttempts"
        assert ok(patch(app, created["id"], {"maxAttempts": 2}, if_match=below["_etag"]))["maxAttempts"] == 2

    def test_merge_patch_or_plain_json_and_nothing_else(self, app: FunctionCaller) -> None:
        # Plain JSON is read as a merge patch (it was refused with 400); other media types still are.
        created = new_assignment(app)
        response = patch(app, created["id"], {}, if_match=created["_etag"], content_type="text/plain")
        assert_problem(response, 400, "invalidRequest")
        edited = ok(
            patch(app, created["id"], {"targetTitle": "T"}, if_match=created["_etag"], content_type="application/json")
        )
        assert edited["targetTitle"] == "T"

    def test_a_patch_that_changes_nothing_writes_nothing(self, app: FunctionCaller) -> None:
        created = new_assignment(app, targetTitle="Same")
        for body in ({}, {"targetTitle": "Same"}):
            unchanged = ok(patch(app, created["id"], body, if_match=created["_etag"]))
            assert unchanged["_etag"] == created["_etag"]
        assert version_of(app, created["id"]) == 1

    def test_a_terminal_assignment_cannot_be_edited(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        cancelled = ok(act(app, "cancel", created["id"]))
        response = patch(app, created["id"], {"targetTitle": "X"}, if_match=cancelled["_etag"])
        assert_problem(response, 409, "invalidTransition")

    def test_an_expired_one_neither(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        change_stored(app, created["id"], expires_at=datetime.now(UTC) - timedelta(seconds=1))
        current = stored(app, created["id"])
        assert current is not None
        future = {"expiresAt": "2040-01-01T00:00:00Z"}
        assert_problem(patch(app, created["id"], future, if_match=current.etag), 409, "expired")


# --- concurrency -----------------------------------------------------------------------------------------


class TestConcurrentRejectAndCancel:
    def test_exactly_one_wins_over_http(self, app: FunctionCaller) -> None:
        for _ in range(10):
            created = new_assignment(app, allowRejection=True)
            start = threading.Barrier(2)

            def reject(assignment_id: str = created["id"], start: threading.Barrier = start) -> Response:
                start.wait()
                return act(app, "reject", assignment_id, {"reason": "no"}, token=app.tokens.user(ASSIGNEE))

            def cancel(assignment_id: str = created["id"], start: threading.Barrier = start) -> Response:
                start.wait()
                return act(app, "cancel", assignment_id, {"reason": "stop"})

            with ThreadPoolExecutor(max_workers=2) as pool:
                rejecting, cancelling = pool.submit(reject), pool.submit(cancel)
                rejected, cancelled = rejecting.result(), cancelling.result()
            self.assert_one_winner(app, created["id"], rejected, cancelled)

    def test_exactly_one_wins_when_both_read_the_same_version(self, app: FunctionCaller) -> None:
        """Both requests read before either writes, every time: one write must lose its ETag race, re-read,
        and be refused by the winner's terminal status."""
        created = new_assignment(app, allowRejection=True)
        store = BothReadFirst(app.runtime.store)
        deps = Deps(store=cast(AssignmentStore, store), clock=app.runtime.clock)
        scopes = frozenset({"Assignments.ReadWrite"})
        assignee = Principal(oid=key_of(ASSIGNEE), tid=TEST_TENANT, upn=ASSIGNEE, scopes=scopes)
        originator = Principal(oid=key_of(ORIGINATOR), tid=TEST_TENANT, upn=ORIGINATOR, scopes=scopes)
        reject = Command(principal=assignee, body={}, assignment_id=created["id"])
        cancel = Command(principal=originator, body={}, assignment_id=created["id"])

        def attempt(run: Any) -> str:
            try:
                return str(run()["status"])
            except InvalidTransition as refused:
                return f"refused:{refused.current_status}"

        with ThreadPoolExecutor(max_workers=2) as pool:
            outcomes = [
                pool.submit(attempt, lambda: reject_assignment(reject, deps).assignment),
                pool.submit(attempt, lambda: cancel_assignment(cancel, deps).assignment),
            ]
            results = sorted(outcome.result() for outcome in outcomes)
        final = stored(app, created["id"])
        assert final is not None
        assert results in (["cancelled", "refused:cancelled"], ["refused:rejected", "rejected"])
        assert final.status == next(result for result in results if not result.startswith("refused"))
        assert final.version == 2
        assert store.replaces == 2, "both wrote once: the loser's write was refused on its ETag, then re-decided"

    @staticmethod
    def assert_one_winner(app: FunctionCaller, assignment_id: str, rejected: Response, cancelled: Response) -> None:
        statuses = sorted((rejected.status, cancelled.status))
        assert statuses == [200, 409], (rejected.body, cancelled.body)
        loser = rejected if rejected.status == 409 else cancelled
        assert loser.json()["code"] == "invalidTransition"
        final = get(app, assignment_id, app.tokens.user(ORIGINATOR)).json()
        winner = "rejected" if rejected.status == 200 else "cancelled"
        assert final["status"] == winner
        assert (final["rejectedAt"] is None) == (winner == "cancelled")
        assert (final["cancelledAt"] is None) == (winner == "rejected")
        assert version_of(app, assignment_id) == 2


class BothReadFirst:
    """A store whose first read in each of two threads waits for the other's, so both requests decide on
    the same version and then race to write it."""

    def __init__(self, inner: AssignmentStore) -> None:
        self._inner = inner
        self._both_read = threading.Barrier(2, timeout=10)
        self._waited = threading.local()
        self._lock = threading.Lock()
        self.replaces = 0

    def read(self, tenant_id: str, assignment_id: str) -> AssignmentDocument | None:
        document = self._inner.read(tenant_id, assignment_id)
        if not getattr(self._waited, "done", False):
            self._waited.done = True
            self._both_read.wait()
        return document

    def write(self, decision: Decision, *, etag: str, record: IdempotencyRecord | None = None) -> AssignmentDocument:
        with self._lock:
            self.replaces += 1
        return self._inner.write(decision, etag=etag, record=record)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
