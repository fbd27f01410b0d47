"""The pure rules: the transition table, the completion criteria, and how events open and close attempts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core import errors
from core.models import (
    AssignmentDocument,
    AssignmentPatch,
    Attempt,
    CompletionCriteria,
    EventType,
    ListQuery,
    ProgressEvent,
    Status,
)
from core.rules import (
    PROCESSED_EVENT_IDS_KEPT,
    TERMINAL_STATUSES,
    TRANSITIONS,
    Operation,
    allowed_transition,
    fewest_max_attempts,
    meets_criterion,
    next_status,
    open_attempt,
    record_progress,
    remember_event,
    was_processed,
)
from core.services.common import parse_model

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
P, IP = Status.PENDING, Status.IN_PROGRESS

# The whole table, written out: the spec the code's TRANSITIONS must equal, row for row.
EXPECTED_TRANSITIONS: dict[tuple[Status, Operation], Status] = {
    (P, Operation.START): IP,
    (P, Operation.COMPLETE): Status.COMPLETED,
    (P, Operation.FAIL): Status.FAILED,
    (P, Operation.EXPIRE): Status.EXPIRED,
    (P, Operation.CANCEL): Status.CANCELLED,
    (P, Operation.REJECT): Status.REJECTED,
    (P, Operation.DELEGATE): Status.DELEGATED,
    (P, Operation.REASSIGN): P,
    (P, Operation.ASSIGN): P,
    (P, Operation.UNASSIGN): P,
    (P, Operation.EDIT): P,
    (P, Operation.REMIND): P,
    (IP, Operation.PROGRESS): IP,
    (IP, Operation.COMPLETE): Status.COMPLETED,
    (IP, Operation.FAIL): Status.FAILED,
    (IP, Operation.EXPIRE): Status.EXPIRED,
    (IP, Operation.CANCEL): Status.CANCELLED,
    (IP, Operation.REJECT): Status.REJECTED,
    (IP, Operation.DELEGATE): Status.DELEGATED,
    (IP, Operation.REASSIGN): IP,
    (IP, Operation.ASSIGN): IP,
    (IP, Operation.UNASSIGN): P,
    (IP, Operation.EDIT): IP,
    (IP, Operation.REMIND): IP,
}


def assignment(**overrides: Any) -> AssignmentDocument:
    fields: dict[str, Any] = {
        "id": "a1",
        "pk": "a1",
        "target_type": "chat",
        "target_id": "chat-1",
        "assignee_email": "adam@contoso.com",
        "originator_email": "olivia@contoso.com",
        "completion_criteria": CompletionCriteria.FLOW_COMPLETED,
        "created_at": NOW,
        "updated_at": NOW,
        "created_by": "olivia@contoso.com",
        "updated_by": "olivia@contoso.com",
    }
    fields.update(overrides)
    return AssignmentDocument(**fields)


def event(kind: EventType, *, at: datetime = NOW, **fields: Any) -> ProgressEvent:
    """An already-validated event: request parsing is tested through the functions."""
    return ProgressEvent.model_construct(event_id=f"e-{kind}-{at.timestamp()}", type=kind, occurred_at=at, **fields)


def later(minutes: int) -> datetime:
    return NOW + timedelta(minutes=minutes)


class TestTransitionTable:
    def test_the_table_is_exactly_the_specified_one(self) -> None:
        assert dict(TRANSITIONS) == EXPECTED_TRANSITIONS

    @pytest.mark.parametrize("status", sorted(Status))
    @pytest.mark.parametrize("operation", sorted(Operation))
    def test_every_pair_is_allowed_or_refused_naming_the_status(self, status: Status, operation: Operation) -> None:
        subject = assignment(status=status, delegated_to="a1.1" if status == Status.DELEGATED else None)
        expected = EXPECTED_TRANSITIONS.get((status, operation))
        if expected is not None:
            assert next_status(subject, operation) == expected
            return
        with pytest.raises(errors.InvalidTransition) as refused:
            next_status(subject, operation)
        assert refused.value.current_status == status.value
        assert status.value in refused.value.detail

    def test_terminal_statuses_have_no_rows(self) -> None:
        assert {s for s in Status if s not in (P, IP)} == TERMINAL_STATUSES
        assert not [key for key in TRANSITIONS if key[0] in TERMINAL_STATUSES]

    def test_a_refusal_on_a_delegated_assignment_names_the_successor(self) -> None:
        with pytest.raises(errors.InvalidTransition) as refused:
            next_status(assignment(status=Status.DELEGATED, delegated_to="a1.1"), Operation.PROGRESS)
        assert refused.value.delegated_to == "a1.1"


class TestAllowedTransition:
    def test_a_terminal_status_is_reported_before_expiry(self) -> None:
        with pytest.raises(errors.InvalidTransition):
            allowed_transition(assignment(status=Status.COMPLETED, expires_at=NOW), Operation.CANCEL, later(1))

    @pytest.mark.parametrize("now", [NOW, later(1)])
    def test_an_active_assignment_is_expired_from_expires_at_on(self, now: datetime) -> None:
        with pytest.raises(errors.Expired):
            allowed_transition(assignment(expires_at=NOW), Operation.CANCEL, now)

    def test_before_expires_at_the_target_is_returned(self) -> None:
        assert allowed_transition(assignment(expires_at=NOW), Operation.CANCEL, later(-1)) == Status.CANCELLED


class TestCompletionCriteria:
    @pytest.mark.parametrize(
        ("criterion", "completing"),
        [
            (CompletionCriteria.CHAT_VISITED, EventType.VISITED),
            (CompletionCriteria.CHAT_ENGAGED, EventType.ENGAGED),
            (CompletionCriteria.FLOW_STARTED, EventType.FLOW_STARTED),
            (CompletionCriteria.FLOW_COMPLETED, EventType.FLOW_COMPLETED),
            (CompletionCriteria.FLOW_PASSED, EventType.FLOW_COMPLETED),
            (CompletionCriteria.MANUAL, None),
        ],
    )
    def test_each_criterion_completes_on_its_event_only(
        self, criterion: CompletionCriteria, completing: EventType | None
    ) -> None:
        subject = assignment(completion_criteria=criterion, pass_score=50)
        for kind in EventType:
            score: dict[str, Any] = {"score": 90} if kind == EventType.FLOW_COMPLETED else {}
            assert meets_criterion(subject, event(kind, **score)) == (kind == completing), kind

    @pytest.mark.parametrize(("score", "passes"), [(None, False), (0, False), (69.9, False), (70, True), (100, True)])
    def test_flow_passed_needs_a_score_of_at_least_pass_score(self, score: float | None, passes: bool) -> None:
        subject = assignment(completion_criteria=CompletionCriteria.FLOW_PASSED, pass_score=70)
        assert meets_criterion(subject, event(EventType.FLOW_COMPLETED, score=score)) is passes


class TestAttempts:
    def test_the_first_event_without_a_chat_log_starts_without_an_attempt(self) -> None:
        subject = assignment()
        assert record_progress(subject, event(EventType.VISITED)) == Operation.START
        assert subject.attempts == []

    def test_a_later_event_that_completes_nothing_is_progress(self) -> None:
        assert record_progress(assignment(status=IP), event(EventType.ENGAGED)) == Operation.PROGRESS

    def test_an_unseen_chat_log_opens_an_attempt_and_a_seen_one_does_not(self) -> None:
        subject = assignment()
        record_progress(subject, event(EventType.VISITED, chat_log_id="c1"))
        record_progress(subject, event(EventType.ENGAGED, at=later(1), chat_log_id="c1"))
        assert subject.attempts == [Attempt(started_at=NOW, chat_log_id="c1")]

    def test_a_new_chat_log_closes_the_open_attempt_with_score_null(self) -> None:
        subject = assignment(status=IP)
        record_progress(subject, event(EventType.VISITED, chat_log_id="c1"))
        record_progress(subject, event(EventType.VISITED, at=later(5), chat_log_id="c2"))
        assert subject.attempts == [
            Attempt(started_at=NOW, chat_log_id="c1", completed_at=later(5), score=None),
            Attempt(started_at=later(5), chat_log_id="c2"),
        ]

    def test_flow_started_in_the_open_attempts_chat_continues_it(self) -> None:
        subject = assignment(status=IP)
        record_progress(subject, event(EventType.VISITED, chat_log_id="c1"))
        record_progress(subject, event(EventType.FLOW_STARTED, at=later(1), chat_log_id="c1"))
        assert len(subject.attempts) == 1

    def test_flow_started_without_a_chat_log_opens_a_new_attempt(self) -> None:
        subject = assignment(status=IP)
        record_progress(subject, event(EventType.FLOW_STARTED))
        record_progress(subject, event(EventType.FLOW_STARTED, at=later(2)))
        assert [a.completed_at for a in subject.attempts] == [later(2), None]

    def test_flow_completed_closes_the_open_attempt_with_its_outcome(self) -> None:
        subject = assignment(status=IP, completion_criteria=CompletionCriteria.CHAT_VISITED)
        record_progress(subject, event(EventType.FLOW_STARTED, chat_log_id="c1"))
        closing = event(EventType.FLOW_COMPLETED, at=later(3), score=80, outcome_data={"q": 1}, note="ok")
        assert record_progress(subject, closing) == Operation.PROGRESS
        assert subject.attempts == [
            Attempt(started_at=NOW, chat_log_id="c1", completed_at=later(3), score=80, outcome_data={"q": 1}, note="ok")
        ]
        assert open_attempt(subject) is None

    def test_flow_completed_with_nothing_open_opens_and_closes_one_attempt(self) -> None:
        subject = assignment()
        assert record_progress(subject, event(EventType.FLOW_COMPLETED, score=10)) == Operation.COMPLETE
        assert subject.attempts == [Attempt(started_at=NOW, completed_at=NOW, score=10)]

    @pytest.mark.parametrize(
        "opening",
        [
            event(EventType.FLOW_STARTED),
            event(EventType.VISITED, chat_log_id="c-new"),
            event(EventType.FLOW_COMPLETED, score=100),
        ],
    )
    def test_opening_beyond_max_attempts_is_refused_and_changes_nothing(self, opening: ProgressEvent) -> None:
        closed = Attempt(started_at=NOW, chat_log_id="c1", completed_at=NOW)
        subject = assignment(status=IP, max_attempts=1, attempts=[closed])
        before = subject.model_copy(deep=True)
        with pytest.raises(errors.InvalidTransition) as refused:
            record_progress(subject, opening)
        assert refused.value.current_status == "in_progress"
        assert subject == before

    def test_within_max_attempts_the_open_attempt_is_still_closed(self) -> None:
        open_one = Attempt(started_at=NOW, chat_log_id="c1")
        subject = assignment(status=IP, max_attempts=1, attempts=[open_one])
        assert record_progress(subject, event(EventType.FLOW_COMPLETED, score=5)) == Operation.COMPLETE
        assert len(subject.attempts) == 1


class TestFailure:
    def passing(self, **overrides: Any) -> AssignmentDocument:
        return assignment(status=IP, completion_criteria=CompletionCriteria.FLOW_PASSED, pass_score=70, **overrides)

    def test_below_pass_score_before_the_last_attempt_is_progress(self) -> None:
        subject = self.passing(max_attempts=2)
        assert record_progress(subject, event(EventType.FLOW_COMPLETED, score=50)) == Operation.PROGRESS

    @pytest.mark.parametrize("score", [None, 69])
    def test_below_pass_score_on_the_last_attempt_fails(self, score: float | None) -> None:
        subject = self.passing(max_attempts=2, attempts=[Attempt(started_at=NOW, completed_at=NOW, score=10)])
        assert record_progress(subject, event(EventType.FLOW_COMPLETED, score=score)) == Operation.FAIL

    def test_passing_on_the_last_attempt_completes(self) -> None:
        subject = self.passing(max_attempts=1)
        assert record_progress(subject, event(EventType.FLOW_COMPLETED, score=70)) == Operation.COMPLETE

    def test_without_max_attempts_nothing_fails(self) -> None:
        subject = self.passing()
        for minute in range(5):
            closing = event(EventType.FLOW_COMPLETED, at=later(minute), score=1)
            assert record_progress(subject, closing) == Operation.PROGRESS

    def test_other_criteria_never_fail(self) -> None:
        subject = assignment(status=IP, completion_criteria=CompletionCriteria.MANUAL, max_attempts=1)
        assert record_progress(subject, event(EventType.FLOW_COMPLETED, score=0)) == Operation.PROGRESS


class TestFewestMaxAttempts:
    @pytest.mark.parametrize(
        ("criterion", "attempts", "fewest"),
        [
            (CompletionCriteria.MANUAL, [], 0),
            (CompletionCriteria.MANUAL, [Attempt(started_at=NOW, completed_at=NOW)], 1),
            (CompletionCriteria.FLOW_PASSED, [], 1),
            (CompletionCriteria.FLOW_PASSED, [Attempt(started_at=NOW)], 1),
            (CompletionCriteria.FLOW_PASSED, [Attempt(started_at=NOW, completed_at=NOW)], 2),
        ],
    )
    def test_an_edit_keeps_the_attempts_made_and_a_chance_to_pass(
        self, criterion: CompletionCriteria, attempts: list[Attempt], fewest: int
    ) -> None:
        assert fewest_max_attempts(assignment(completion_criteria=criterion, attempts=attempts)) == fewest


class TestProcessedEvents:
    def test_event_ids_are_remembered_up_to_a_bound(self) -> None:
        subject = assignment()
        for number in range(PROCESSED_EVENT_IDS_KEPT + 5):
            remember_event(subject, f"e{number}")
        assert len(subject.processed_event_ids) == PROCESSED_EVENT_IDS_KEPT
        assert was_processed(subject, f"e{PROCESSED_EVENT_IDS_KEPT + 4}")
        assert not was_processed(subject, "e0")

    def test_they_never_reach_the_public_model(self) -> None:
        subject = assignment(processed_event_ids=["e1"])
        assert "processedEventIds" not in subject.to_public().to_json()
        assert subject.to_cosmos()["processedEventIds"] == ["e1"]


class TestRequestModels:
    @pytest.mark.parametrize("field", [{"score": 5}, {"outcomeData": {}}, {"note": "n"}])
    def test_outcome_fields_belong_to_flow_completed(self, field: dict[str, Any]) -> None:
        body = {"eventId": "e", "type": "engaged", "occurredAt": "2030-01-01T00:00:00Z", **field}
        with pytest.raises(errors.ValidationFailed):
            parse_model(ProgressEvent, body)
        parse_model(ProgressEvent, {**body, "type": "flow_completed"})

    def test_a_patch_knows_which_fields_it_names(self) -> None:
        patch = parse_model(AssignmentPatch, {"dueAt": None, "targetTitle": "T"})
        assert patch.changes() == {"due_at": None, "target_title": "T"}

    def test_a_list_query_takes_a_comma_separated_status(self) -> None:
        query = parse_model(ListQuery, {"status": "pending, in_progress", "pageSize": "10"})
        assert query.status == ["pending", "in_progress"]
        assert query.page_size == 10
        assert query.role == "assignee"
