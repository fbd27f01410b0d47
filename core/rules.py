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
    DelegationTooDeep,
    Expired,
    InvalidTransition,
    NotAssigned,
    NotVisible,
    SelfDelegation,
)
from core.models import AssignmentDocument, AssignmentFields, Status

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

TRANSITIONS: dict[tuple[Status, Operation], Status] = {
    (Status.PENDING, Operation.START): Status.IN_PROGRESS,
    (Status.PENDING, Operation.REASSIGN): Status.PENDING,
    (Status.PENDING, Operation.ASSIGN): Status.PENDING,
    (Status.PENDING, Operation.UNASSIGN): Status.PENDING,
    (Status.PENDING, Operation.EDIT): Status.PENDING,
    (Status.PENDING, Operation.REMIND): Status.PENDING,
    (Status.IN_PROGRESS, Operation.PROGRESS): Status.IN_PROGRESS,
    (Status.IN_PROGRESS, Operation.REASSIGN): Status.IN_PROGRESS,
    (Status.IN_PROGRESS, Operation.EDIT): Status.IN_PROGRESS,
    (Status.IN_PROGRESS, Operation.REMIND): Status.IN_PROGRESS,
    # Unassigning a started task hands it back: the next assignee starts from `pending`.
    (Status.IN_PROGRESS, Operation.UNASSIGN): Status.PENDING,
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


def is_assignee(principal: Principal, assignment: AssignmentFields) -> bool:
    if principal.is_app_only:
        return False
    if assignment.assignee_user_key is not None:
        return principal.oid == assignment.assignee_user_key
    return principal.upn is not None and principal.upn == (assignment.assignee_email or "").lower()


def is_originator(principal: Principal, assignment: AssignmentFields) -> bool:
    return principal.actor == assignment.originator_email.lower()


def is_assigner(principal: Principal, assignment: AssignmentFields) -> bool:
    return assignment.assigned_by is not None and principal.actor == assignment.assigned_by.lower()


def is_candidate_member(principal: Principal, assignment: AssignmentFields) -> bool:
    return not principal.groups.isdisjoint(assignment.candidate_groups)


def is_candidate(principal: Principal, assignment: AssignmentFields) -> bool:
    """Members of a candidate group may see, and claim, a task only while nobody holds it."""
    return assignment.is_task and assignment.is_unassigned and is_candidate_member(principal, assignment)


def can_read(principal: Principal, assignment: AssignmentFields) -> bool:
    return (
        principal.is_admin
        or is_assignee(principal, assignment)
        or is_originator(principal, assignment)
        or is_assigner(principal, assignment)
        or principal.actor in assignment.delegation_chain
        or is_candidate(principal, assignment)
    )


def check_readable(principal: Principal, assignment: AssignmentFields) -> None:
    if not can_read(principal, assignment):
        raise NotVisible(f"Assignment {assignment.id} was not found")


# --- the txn routes (seed 003): who has access to a task -------------------------------------------


def may_txn_assign(principal: Principal, assignment: AssignmentFields) -> bool:
    """Admins, the originator, `assignedBy`, and candidate-group members.

    Members count whether or not someone holds the task: only unassigned tasks can be assigned, and the
    check after access (`txnAlreadyAssigned`) says so. That way the losers of a race to claim a task
    hear that it is taken rather than `accessDenied`.
    """
    return (
        principal.is_admin
        or is_originator(principal, assignment)
        or is_assigner(principal, assignment)
        or is_candidate_member(principal, assignment)
    )


def may_txn_unassign(principal: Principal, assignment: AssignmentFields) -> bool:
    """Admins, the originator, `assignedBy`, and the assignee."""
    return (
        principal.is_admin
        or is_originator(principal, assignment)
        or is_assigner(principal, assignment)
        or is_assignee(principal, assignment)
    )


# --- writes ------------------------------------------------------------------------------------------


def begin_write(document: AssignmentDocument, actor: str, now: datetime) -> None:
    """Every write to an existing document starts here: it stamps the etag of the version being
    replaced into the idempotency records that show it (they could not know it when written), then
    advances `version` and the update audit fields."""
    for record in document.idempotency:
        if record.version == document.version and record.etag is None:
            record.etag = document.etag
            record.ts = document.ts
    document.version += 1
    document.outbox = [event for event in document.outbox if event.version >= document.version - 50]
    document.updated_at = now
    document.updated_by = actor


# --- delegation --------------------------------------------------------------------------------------


def check_delegation(original: AssignmentFields, to_upn: str, now: datetime, *, max_depth: int) -> Status:
    """Every delegate state check that needs no directory, in the contract's order; returns the original's
    next status. `to_upn` is normalized (lower case)."""
    if original.status == Status.DELEGATED:
        raise AlreadyDelegated(f"Assignment {original.id} was already delegated to {original.delegated_to}")
    target = next_status(original, Operation.DELEGATE)
    check_not_expired(original, now)
    if original.is_unassigned:
        raise NotAssigned(f"Assignment {original.id} has no assignee to delegate from")
    if not original.allow_delegation:
        raise DelegationNotAllowed(f"Assignment {original.id} does not allow delegation")
    check_delegate(original, upn=to_upn)
    if len(original.delegation_chain) + 1 > max_depth:
        raise DelegationTooDeep(f"A delegation chain may hold at most {max_depth} earlier assignees")
    return target


def check_delegate(original: AssignmentFields, *, upn: str, user_key: str | None = None) -> None:
    """The delegate must be neither the current assignee nor anyone earlier in the chain. Checked on the
    requested UPN before the directory is asked, and again on the user the directory resolved."""
    assignee_email = (original.assignee_email or "").lower()
    if upn == assignee_email or (user_key is not None and user_key == original.assignee_user_key):
        raise SelfDelegation("An assignment cannot be delegated to its current assignee")
    if upn in (member.lower() for member in original.delegation_chain):
        raise DelegationCycle(f"{upn} already held this assignment earlier in its delegation chain")
