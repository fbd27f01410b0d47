"""The state machine and the other pure rules. No I/O: every input is an argument.

One explicit table, `TRANSITIONS`, says which operation may run from which status and where it leads.
Every use case goes through `next_status`, so a transition missing from the table is refused the same
way everywhere (409 `invalidTransition`, naming the current status). Terminal statuses have no rows:
they absorb every later write.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from core.errors import (
    AlreadyDelegated,
    DelegationCycle,
    DelegationNotAllowed,
    Expired,
    InvalidTransition,
    LimitExceeded,
    NotAssigned,
    NotVisible,
    SelfDelegation,
)
from core.models import (
    AssignmentDocument,
    AssignmentFields,
    Attempt,
    CompletionCriteria,
    EventRequest,
    EventType,
    Status,
)

if TYPE_CHECKING:
    from core.auth import Principal


class Operation(StrEnum):
    START = "start"  # the first progress event
    PROGRESS = "progress"  # a progress event that changes no status
    COMPLETE = "complete"
    FAIL = "fail"
    EXPIRE = "expire"
    CANCEL = "cancel"
    REJECT = "reject"
    DELEGATE = "delegate"
    REASSIGN = "reassign"
    ASSIGN = "assign"
    UNASSIGN = "unassign"
    EDIT = "edit"
    REMIND = "remind"


_ACTIVE_OPERATIONS: dict[Operation, Status] = {
    Operation.COMPLETE: Status.COMPLETED,
    Operation.FAIL: Status.FAILED,
    Operation.EXPIRE: Status.EXPIRED,
    Operation.CANCEL: Status.CANCELLED,
    Operation.REJECT: Status.REJECTED,
    Operation.DELEGATE: Status.DELEGATED,
}

# A reporter may start a task nobody holds yet; assigning it later keeps its progress.
_STATUS_KEEPING_OPERATIONS = (Operation.REASSIGN, Operation.ASSIGN, Operation.EDIT, Operation.REMIND)

TRANSITIONS: dict[tuple[Status, Operation], Status] = {
    (Status.PENDING, Operation.START): Status.IN_PROGRESS,
    (Status.IN_PROGRESS, Operation.PROGRESS): Status.IN_PROGRESS,
    # Unassigning a started task hands it back: the next assignee starts from `pending`.
    (Status.PENDING, Operation.UNASSIGN): Status.PENDING,
    (Status.IN_PROGRESS, Operation.UNASSIGN): Status.PENDING,
    **{
        (status, operation): status
        for status in (Status.PENDING, Status.IN_PROGRESS)
        for operation in _STATUS_KEEPING_OPERATIONS
    },
    **{
        (status, operation): target
        for status in (Status.PENDING, Status.IN_PROGRESS)
        for operation, target in _ACTIVE_OPERATIONS.items()
    },
}

ACTIVE_STATUSES = frozenset({Status.PENDING, Status.IN_PROGRESS})
TERMINAL_STATUSES = frozenset(Status) - ACTIVE_STATUSES


def next_status(assignment: AssignmentFields, operation: Operation) -> Status:
    current = Status(assignment.status)
    target = TRANSITIONS.get((current, operation))
    if target is None:
        raise InvalidTransition(
            f"Cannot {operation.value} an assignment whose status is {current.value}",
            current_status=current.value,
            delegated_to=assignment.delegated_to,
        )
    return target


def is_active(assignment: AssignmentFields) -> bool:
    return Status(assignment.status) in ACTIVE_STATUSES


def check_not_expired(assignment: AssignmentFields, now: datetime) -> None:
    """Once `now >= expiresAt` every write to an active assignment is refused, even before the timer
    has persisted `expired`."""
    if is_active(assignment) and assignment.expires_at is not None and now >= assignment.expires_at:
        raise Expired(f"The assignment expired at {assignment.model_dump(by_alias=True, mode='json')['expiresAt']}")


# --- who is who -------------------------------------------------------------------------------------
# Every role is decided by the caller's user key (`oid`); UPNs are display values and never grant a right.
# Tenants never meet here: a document is only ever read from the caller's own tenant's partition.


def is_assignee(principal: Principal, assignment: AssignmentDocument) -> bool:
    return (
        not principal.is_app_only
        and assignment.assignee_user_key is not None
        and (principal.oid == assignment.assignee_user_key)
    )


def is_originator(principal: Principal, assignment: AssignmentDocument) -> bool:
    return principal.oid == assignment.originator_user_key


def is_assigner(principal: Principal, assignment: AssignmentDocument) -> bool:
    return assignment.assigned_by_user_key is not None and principal.oid == assignment.assigned_by_user_key


def is_chain_member(principal: Principal, assignment: AssignmentDocument) -> bool:
    return principal.oid in assignment.delegation_chain_user_keys


def is_candidate_member(principal: Principal, assignment: AssignmentFields) -> bool:
    return not principal.groups.isdisjoint(assignment.candidate_groups)


def is_candidate(principal: Principal, assignment: AssignmentFields) -> bool:
    """Members of a candidate group may see, and claim, a task only while nobody holds it."""
    return assignment.is_task and assignment.is_unassigned and is_candidate_member(principal, assignment)


def _manages(principal: Principal, assignment: AssignmentDocument) -> bool:
    """Admins, the originator and `assignedBy`: they may read a task and hand it on, whoever holds it."""
    return principal.is_admin or is_originator(principal, assignment) or is_assigner(principal, assignment)


def can_read(principal: Principal, assignment: AssignmentDocument) -> bool:
    return (
        _manages(principal, assignment)
        or is_assignee(principal, assignment)
        or is_chain_member(principal, assignment)
        or is_candidate(principal, assignment)
    )


def check_readable(principal: Principal, assignment: AssignmentDocument) -> None:
    if not can_read(principal, assignment):
        raise NotVisible(f"Assignment {assignment.id} was not found")


# --- the txn routes (docs/api-rules.md, "The txn routes"): who has access to a task ----------------------


def may_txn_assign(principal: Principal, assignment: AssignmentDocument) -> bool:
    """Admins, the originator, `assignedBy`, and, while the task is unassigned, candidate-group members
    (docs/api-rules.md, "Who may do what"). A member who tries to claim a task someone else just took is
    told `accessDenied`, as for anyone the task is no longer offered to."""
    return _manages(principal, assignment) or is_candidate(principal, assignment)


def may_txn_unassign(principal: Principal, assignment: AssignmentDocument) -> bool:
    """Admins, the originator, `assignedBy`, and the assignee."""
    return _manages(principal, assignment) or is_assignee(principal, assignment)


# --- delegation --------------------------------------------------------------------------------------


def check_delegation(original: AssignmentDocument, now: datetime) -> Status:
    """The delegate state checks that need no directory, in the contract's order; returns the original's
    next status."""
    if original.status == Status.DELEGATED:
        raise AlreadyDelegated(f"Assignment {original.id} was already delegated to {original.delegated_to}")
    target = allowed_transition(original, Operation.DELEGATE, now)
    if original.is_unassigned:
        raise NotAssigned(f"Assignment {original.id} has no assignee to delegate from")
    if not original.allow_delegation:
        raise DelegationNotAllowed(f"Assignment {original.id} does not allow delegation")
    return target


def check_delegate(original: AssignmentDocument, *, upn: str, user_key: str) -> None:
    """The delegate, by the key the directory resolved for `upn`, must be neither the current assignee nor
    anyone earlier in the chain (a UPN proves nothing: it may be another user's now)."""
    if user_key == original.assignee_user_key:
        raise SelfDelegation("An assignment cannot be delegated to its current assignee")
    if user_key in original.delegation_chain_user_keys:
        raise DelegationCycle(f"{upn} already held this assignment earlier in its delegation chain")


# --- progress and attempts ---------------------------------------------------------------------------

_COMPLETING_EVENT: dict[CompletionCriteria, EventType] = {
    CompletionCriteria.CHAT_VISITED: EventType.VISITED,
    CompletionCriteria.CHAT_ENGAGED: EventType.ENGAGED,
    CompletionCriteria.FLOW_STARTED: EventType.FLOW_STARTED,
    CompletionCriteria.FLOW_COMPLETED: EventType.FLOW_COMPLETED,
    CompletionCriteria.FLOW_PASSED: EventType.FLOW_COMPLETED,
    # `manual` has no completing event: only `POST /complete` completes it.
}


def allowed_transition(assignment: AssignmentFields, operation: Operation, now: datetime) -> Status:
    """The state checks every lifecycle write starts with, in the contract's order: the transition table
    (409 `invalidTransition`, naming the status), then expiry (409 `expired`). Returns the target status."""
    target = next_status(assignment, operation)
    check_not_expired(assignment, now)
    return target


def meets_criterion(assignment: AssignmentFields, event: EventRequest) -> bool:
    criterion = CompletionCriteria(assignment.completion_criteria)
    if _COMPLETING_EVENT.get(criterion) != event.type:
        return False
    if criterion == CompletionCriteria.FLOW_PASSED:
        return event.score is not None and assignment.pass_score is not None and event.score >= assignment.pass_score
    return True


def open_attempt(assignment: AssignmentFields) -> Attempt | None:
    """Attempts close in order, so only the last one can be open."""
    if assignment.attempts and assignment.attempts[-1].completed_at is None:
        return assignment.attempts[-1]
    return None


def _opens_attempt(assignment: AssignmentFields, event: EventRequest, current: Attempt | None) -> bool:
    if event.chat_log_id is not None and all(a.chat_log_id != event.chat_log_id for a in assignment.attempts):
        return True
    if event.type == EventType.FLOW_STARTED:
        # A flow started in the chat session of the open attempt belongs to that attempt.
        return current is None or current.chat_log_id is None or current.chat_log_id != event.chat_log_id
    # `flow_completed` with nothing open opens an attempt, and closes it at once below.
    return event.type == EventType.FLOW_COMPLETED and current is None


def record_progress(
    assignment: AssignmentFields, event: EventRequest, *, attempts_limit: int | None = None
) -> Operation:
    """Apply a progress event to the attempts, and say which operation it amounts to.

    - `flow_started`, or an unseen `chatLogId`, opens an attempt (`startedAt`, `chatLogId`); an attempt
      still open is first closed with `score` null.
    - `flow_completed` closes the open attempt with its outcome, opening one first if none is open.
    - Opening more than `maxAttempts` attempts is refused (409 `invalidTransition`), before any change;
      with `maxAttempts` null, opening more than `attempts_limit` is refused (409 `limitExceeded`), so
      no sequence of events grows the document without bound.

    The operation is `COMPLETE` when the event meets the criterion, `FAIL` when a `flow_passed` attempt
    closes below `passScore` on the last allowed attempt, otherwise `START` (from `pending`) or `PROGRESS`.
    """
    current = open_attempt(assignment)
    if _opens_attempt(assignment, event, current):
        if assignment.max_attempts is not None and len(assignment.attempts) >= assignment.max_attempts:
            raise InvalidTransition(
                f"All {assignment.max_attempts} attempts allowed have been made; no attempt can be opened"
                f" (the status is {Status(assignment.status).value})",
                current_status=Status(assignment.status).value,
                delegated_to=assignment.delegated_to,
            )
        if (
            assignment.max_attempts is None
            and attempts_limit is not None
            and len(assignment.attempts) >= attempts_limit
        ):
            raise LimitExceeded(f"An assignment keeps at most {attempts_limit} attempts; no attempt can be opened")
        if current is not None:
            current.completed_at = event.occurred_at
        current = Attempt(started_at=event.occurred_at, chat_log_id=event.chat_log_id)
        assignment.attempts.append(current)
    if event.type == EventType.FLOW_COMPLETED and current is not None:
        current.completed_at = event.occurred_at
        current.score = event.score
        current.outcome_data = event.outcome_data
        current.note = event.note

    if meets_criterion(assignment, event):
        return Operation.COMPLETE
    if is_failed_attempt(assignment, event):
        return Operation.FAIL
    return Operation.START if assignment.status == Status.PENDING else Operation.PROGRESS


def is_failed_attempt(assignment: AssignmentFields, event: EventRequest) -> bool:
    """A `flow_passed` attempt that closes without passing, as the last one allowed, fails the assignment."""
    return (
        assignment.completion_criteria == CompletionCriteria.FLOW_PASSED
        and event.type == EventType.FLOW_COMPLETED
        and not meets_criterion(assignment, event)
        and assignment.max_attempts is not None
        and len(assignment.attempts) >= assignment.max_attempts
    )


def closed_attempts(assignment: AssignmentFields) -> int:
    return sum(1 for attempt in assignment.attempts if attempt.completed_at is not None)


def fewest_max_attempts(assignment: AssignmentFields) -> int:
    """The smallest `maxAttempts` an edit may set: the attempts already made and, for `flow_passed`, one
    more than those closed, or the assignment could neither pass nor fail any more."""
    fewest = len(assignment.attempts)
    if assignment.completion_criteria == CompletionCriteria.FLOW_PASSED:
        fewest = max(fewest, closed_attempts(assignment) + 1)
    return fewest
