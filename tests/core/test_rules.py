"""The pure rules: the transition table, who is who, the delegate state checks, the completion criteria,
and how events open and close attempts. The operations built on them are tested in test_aggregate.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from core import errors
from core.auth import Principal
from core.models import (
    AssignmentDocument,
    Attempt,
    CompletionCriteria,
    DelegateRequest,
    EventRequest,
    EventType,
    ListQuery,
    PatchRequest,
    Status,
)
from core.rules import (
    TERMINAL_STATUSES,
    TRANSITIONS,
    Operation,
    allowed_transition,
    can_read,
    check_delegate,
    check_delegation,
    check_readable,
    fewest_max_attempts,
    is_assignee,
    is_assigner,
    is_chain_member,
    is_originator,
    may_txn_assign,
    may_txn_unassign,
    meets_criterion,
    next_status,
    open_attempt,
    record_progress,
)
from core.services.pipeline import parse_model
from tests.support.documents import ADAM, CARL, DORA, NOW, OLIVIA, Person, admin_app, assignment, task

P, IP = Status.PENDING, Status.IN_PROGRESS

# The whole table, written out: the spec the code's TRANSITIONS must equal, row for row. Each operation's
# target from pending and from in_progress; None where it is refused.
EXPECTED_TARGETS: dict[Operation, tuple[Status | None, Status | None]] = {
    Operation.START: (IP, None),
    Operation.PROGRESS: (None, IP),
    Operation.COMPLETE: (Status.COMPLETED, Status.COMPLETED),
    Operation.FAIL: (Status.FAILED, Status.FAILED),
    Operation.EXPIRE: (Status.EXPIRED, Status.EXPIRED),
    Operation.CANCEL: (Status.CANCELLED, Status.CANCELLED),
    Operation.REJECT: (Status.REJECTED, Status.REJECTED),
    Operation.DELEGATE: (Status.DELEGATED, Status.DELEGATED),
    Operation.REASSIGN: (P, IP),
    Operation.ASSIGN: (P, IP),
    Operation.UNASSIGN: (P, P),
    Operation.EDIT: (P, IP),
    Operation.REMIND: (P, IP),
}
EXPECTED_TRANSITIONS: dict[tuple[Status, Operation], Status] = {
    (status, operation): target
    for operation, targets in EXPECTED_TARGETS.items()
    for status, target in zip((P, IP), targets, strict=True)
    if target is not None
}


def event(kind: EventType, *, at: datetime = NOW, **fields: Any) -> EventRequest:
    """An already-validated event: request parsing is tested through the functions."""
    return EventRequest.model_construct(event_id=f"e-{kind}-{at.timestamp()}", type=kind, occurred_at=at, **fields)


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


class TestWhoIsWho:
    """Every role is held by a user key; a UPN never grants anything (docs/api-rules.md, "Identity and tenancy")."""

    @staticmethod
    def subject() -> AssignmentDocument:
        # Adam holds it, Olivia originated it, Dora assigned it, Carl held it before Adam.
        return assignment(
            assigned_by=DORA.upn,
            assigned_by_user_key=DORA.key,
            delegation_chain=[CARL.upn],
            delegation_chain_user_keys=[CARL.key],
        )

    @pytest.mark.parametrize(
        ("holds", "person"),
        [(is_assignee, ADAM), (is_originator, OLIVIA), (is_assigner, DORA), (is_chain_member, CARL)],
    )
    def test_a_role_follows_the_key_whatever_the_upn(
        self, holds: Callable[[Principal, AssignmentDocument], bool], person: Person
    ) -> None:
        subject = self.subject()
        assert holds(person.principal(), subject)
        assert holds(person.renamed("new-name@contoso.com").principal(), subject)
        assert not holds(person.impostor().principal(), subject)

    @pytest.mark.parametrize("person", [ADAM, OLIVIA, DORA, CARL])
    def test_only_the_holder_of_a_key_may_read(self, person: Person) -> None:
        subject = self.subject()
        assert can_read(person.renamed("new-name@contoso.com").principal(), subject)
        with pytest.raises(errors.NotVisible):
            check_readable(person.impostor().principal(), subject)

    def test_an_unassigned_task_has_no_assignee_and_is_offered_to_its_candidates(self) -> None:
        candidate = CARL.principal(groups=frozenset({"g"}))
        assert can_read(candidate, task())
        assert may_txn_assign(candidate, task())
        assigned = task(assignee_email=ADAM.upn, assignee_user_key=ADAM.key)
        assert not can_read(candidate, assigned)
        assert not may_txn_assign(candidate, assigned)
        assert not can_read(CARL.principal(groups=frozenset({"other"})), task())

    def test_txn_access_follows_keys(self) -> None:
        subject = self.subject()
        people = (OLIVIA, DORA, ADAM, CARL)
        assert [may_txn_assign(person.principal(), subject) for person in people] == [True, True, False, False]
        assert [may_txn_unassign(person.principal(), subject) for person in people] == [True, True, True, False]
        for person in (OLIVIA, DORA, ADAM):
            assert not may_txn_assign(person.impostor().principal(), subject)
            assert not may_txn_unassign(person.impostor().principal(), subject)

    def test_admins_may_do_everything(self) -> None:
        admin = admin_app()
        assert can_read(admin, self.subject())
        assert may_txn_assign(admin, self.subject())
        assert may_txn_unassign(admin, self.subject())


def delegation_checks(original: AssignmentDocument, upn: str = DORA.upn, user_key: str = DORA.key) -> Status:
    """The delegate checks the rules make, in the contract's order: 1 to 5 need no directory
    (`check_delegation`), 6 and 7 take the user key the directory resolved for that UPN (`check_delegate`).
    Depth (8) and `userNotFound` (9) are the operation's: test_aggregate.py."""
    target = check_delegation(original, NOW)
    check_delegate(original, upn=upn, user_key=user_key)
    return target


class TestDelegationChecks:
    @pytest.mark.parametrize("status", [Status.PENDING, Status.IN_PROGRESS])
    def test_an_active_assignment_becomes_delegated(self, status: Status) -> None:
        assert delegation_checks(assignment(status=status)) == Status.DELEGATED

    def test_delegated_is_already_delegated(self) -> None:
        with pytest.raises(errors.AlreadyDelegated):
            delegation_checks(assignment(status=Status.DELEGATED, delegated_to="a1.1"))

    @pytest.mark.parametrize(
        "status", [Status.COMPLETED, Status.FAILED, Status.EXPIRED, Status.CANCELLED, Status.REJECTED]
    )
    def test_another_inactive_status_is_an_invalid_transition(self, status: Status) -> None:
        with pytest.raises(errors.InvalidTransition) as caught:
            delegation_checks(assignment(status=status))
        assert caught.value.current_status == status.value

    def test_past_expires_at_is_expired(self) -> None:
        with pytest.raises(errors.Expired):
            delegation_checks(assignment(expires_at=NOW))
        assert delegation_checks(assignment(expires_at=NOW + timedelta(milliseconds=1))) == Status.DELEGATED

    def test_an_unassigned_task_is_not_assigned(self) -> None:
        with pytest.raises(errors.NotAssigned):
            delegation_checks(task())

    def test_allow_delegation_false_is_refused(self) -> None:
        with pytest.raises(errors.DelegationNotAllowed):
            delegation_checks(assignment(allow_delegation=False))

    def test_the_same_user_key_is_self_delegation(self) -> None:
        with pytest.raises(errors.SelfDelegation):
            delegation_checks(assignment(), "adam.alias@contoso.com", ADAM.key)

    def test_the_assignees_upn_held_by_another_key_is_another_user(self) -> None:
        assert delegation_checks(assignment(), ADAM.upn, ADAM.impostor().key) == Status.DELEGATED

    def test_anyone_in_the_chain_is_a_cycle(self) -> None:
        chain = {"delegation_chain": ["Carl@contoso.com", DORA.upn], "delegation_chain_user_keys": [CARL.key, DORA.key]}
        with pytest.raises(errors.DelegationCycle):
            delegation_checks(assignment(**chain), "carl.alias@contoso.com", CARL.key)

    def test_a_chain_members_upn_held_by_another_key_is_another_user(self) -> None:
        subject = assignment(delegation_chain=[CARL.upn], delegation_chain_user_keys=[CARL.key])
        assert delegation_checks(subject, CARL.upn, CARL.impostor().key) == Status.DELEGATED

    @pytest.mark.parametrize(
        ("overrides", "to", "expected"),
        [
            # Each row breaks every later rule too, so only the order decides which error wins.
            (
                {"status": Status.DELEGATED, "delegated_to": "a1.1", "expires_at": NOW, "allow_delegation": False},
                ADAM,
                errors.AlreadyDelegated,
            ),
            (
                {"status": Status.CANCELLED, "expires_at": NOW, "allow_delegation": False},
                ADAM,
                errors.InvalidTransition,
            ),
            (
                {"expires_at": NOW, "assignee_email": None, "assignee_user_key": None, "task_key": "t"},
                ADAM,
                errors.Expired,
            ),
            (
                {"assignee_email": None, "assignee_user_key": None, "task_key": "t", "allow_delegation": False},
                ADAM,
                errors.NotAssigned,
            ),
            (
                {"allow_delegation": False, "delegation_chain": [ADAM.upn], "delegation_chain_user_keys": [ADAM.key]},
                ADAM,
                errors.DelegationNotAllowed,
            ),
            (
                {"delegation_chain": [ADAM.upn] * 10, "delegation_chain_user_keys": [ADAM.key] * 10},
                ADAM,
                errors.SelfDelegation,
            ),
            (
                {"delegation_chain": [DORA.upn] * 10, "delegation_chain_user_keys": [DORA.key] * 10},
                DORA,
                errors.DelegationCycle,
            ),
        ],
    )
    def test_the_contracts_order(self, overrides: dict[str, Any], to: Person, expected: type[Exception]) -> None:
        with pytest.raises(expected):
            delegation_checks(assignment(**overrides), to.upn, to.key)


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
    def test_opening_beyond_max_attempts_is_refused_and_changes_nothing(self, opening: EventRequest) -> None:
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

    def test_without_max_attempts_the_attempts_limit_bounds_them(self) -> None:
        closed = [Attempt(started_at=NOW, chat_log_id=f"c{i}", completed_at=NOW) for i in range(3)]
        subject = assignment(status=IP, attempts=closed)
        before = subject.model_copy(deep=True)
        with pytest.raises(errors.LimitExceeded):
            record_progress(subject, event(EventType.FLOW_STARTED), attempts_limit=3)
        assert subject == before
        # An event that opens nothing is still recorded.
        assert (
            record_progress(subject, event(EventType.ENGAGED, chat_log_id="c1"), attempts_limit=3) == Operation.PROGRESS
        )
        # With maxAttempts set, maxAttempts alone decides.
        bounded = assignment(status=IP, attempts=closed, max_attempts=4)
        assert record_progress(bounded, event(EventType.FLOW_STARTED), attempts_limit=3) == Operation.PROGRESS
        assert len(bounded.attempts) == 4


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


class TestRequestModels:
    @pytest.mark.parametrize("field", [{"score": 5}, {"outcomeData": {}}, {"note": "n"}])
    def test_outcome_fields_belong_to_flow_completed(self, field: dict[str, Any]) -> None:
        body = {"eventId": "e", "type": "engaged", "occurredAt": "2030-01-01T00:00:00Z", **field}
        with pytest.raises(errors.ValidationFailed):
            parse_model(EventRequest, body)
        parse_model(EventRequest, {**body, "type": "flow_completed"})

    def test_a_patch_knows_which_fields_it_names(self) -> None:
        patch = parse_model(PatchRequest, {"dueAt": None, "targetTitle": "T"})
        assert patch.changes() == {"due_at": None, "target_title": "T"}

    def test_a_list_query_takes_a_comma_separated_status(self) -> None:
        query = parse_model(ListQuery, {"status": "pending, in_progress", "pageSize": "10"})
        assert query.status == ["pending", "in_progress"]
        assert query.page_size == 10
        assert query.role == "assignee"

    def test_a_delegates_upn_is_normalized(self) -> None:
        assert parse_model(DelegateRequest, {"toUpn": " Dora@Contoso.COM "}).to_upn == "dora@contoso.com"

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"toUpn": "not a upn"},
            {"toUpn": 5},
            {"toUpn": DORA.upn, "reason": "x" * 2001},
            {"toUpn": DORA.upn, "extra": True},
        ],
    )
    def test_invalid_delegate_bodies(self, body: dict[str, Any]) -> None:
        with pytest.raises(errors.ValidationFailed):
            parse_model(DelegateRequest, body)
