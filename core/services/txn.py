"""Use cases of the txn routes (seed 003): assign a task to a directory user, and unassign it.

The seed fixes the body, `{"params": {...}}`, and the order in which its errors are reported
(CONTRACTS "Errors of the txn routes"). The body's own checks are pure (`parse_assign_request`,
`parse_unassign_request`); the rest of the order runs inside `update_assignment`, which reads the task
once, checks access, If-Match and state, and writes conditionally on the ETag it read:

    invalidRequest, invalidRequestAttribute, invalidAssignAttribute, submitKeyNotSpecified,
    userKeyNotSpecified                                     parse_*_request
    txnNotFound                                             load (one point read)
    accessDenied                                            rules.may_txn_assign / may_txn_unassign
    preconditionFailed (412, our addition)                  If-Match
    txnAlreadyFinished, txnNotTask,
    txnAlreadyAssigned / txnNotAssigned                     _check_state
    userNotFound                                            the directory (one lookup, kept across races)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from core.directory import DirectoryUser, enabled_user_by_key
from core.errors import (
    AlreadyAssigned,
    InvalidAssignAttribute,
    InvalidRequest,
    InvalidRequestAttribute,
    InvalidTransition,
    NotAssigned,
    NotATask,
    NotVisible,
    SubmitKeyNotSpecified,
    UserKeyNotSpecified,
)
from core.idempotency import IdempotentRequest, idempotent_request
from core.models import AssignmentDocument, AssignmentFields, Status
from core.rules import Operation, check_not_expired, is_active, may_txn_assign, may_txn_unassign, next_status
from core.services.common import Authorize, Change, Deps, Outcome, emit, update_assignment

if TYPE_CHECKING:
    from core.auth import Principal

ROUTE_ASSIGN = "txnAssign"
ROUTE_UNASSIGN = "txnUnassign"
PARAMS = "params"
SUBMIT_KEY = "submitKey"
USER_KEY = "userKey"


@dataclass(frozen=True)
class AssignRequest:
    submit_key: str
    user_key: str


def _params(body: object, attributes: tuple[str, ...]) -> dict[str, str | None]:
    """The route's attributes from a txn body, checked in the seed's order; None when not specified.

    Every `invalidRequest` comes first (the order puts it first): a body or `params` that is not an
    object, or one of the route's keys that is neither a string nor null.
    """
    params = body.get(PARAMS) if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(params, dict):
        raise InvalidRequest("The request body must be a JSON object with a params map")
    for name in attributes:
        if params.get(name) is not None and not isinstance(params[name], str):
            raise InvalidRequest(f"{name} must be a string")
    for name in body:
        if name != PARAMS:
            raise InvalidRequestAttribute(name)
    for name in params:
        if name not in attributes:
            raise InvalidAssignAttribute(name)
    # Missing, null and "" all mean "not specified".
    return {name: params.get(name) or None for name in attributes}


def parse_assign_request(body: object) -> AssignRequest:
    values = _params(body, (SUBMIT_KEY, USER_KEY))
    submit_key, user_key = values[SUBMIT_KEY], values[USER_KEY]
    if submit_key is None:
        raise SubmitKeyNotSpecified()
    if user_key is None:
        raise UserKeyNotSpecified()
    return AssignRequest(submit_key=submit_key, user_key=user_key)


def parse_unassign_request(body: object) -> str:
    """The submit key of an unassign body."""
    submit_key = _params(body, (SUBMIT_KEY,))[SUBMIT_KEY]
    if submit_key is None:
        raise SubmitKeyNotSpecified()
    return submit_key


def _access(may: Callable[[Principal, AssignmentFields], bool]) -> Authorize:
    def check(principal: Principal, task: AssignmentDocument) -> None:
        if not may(principal, task):
            raise NotVisible(f"The caller has no access to assignment {task.id}")

    return check


def _access_is_the_permission(principal: Principal, task: AssignmentDocument) -> None:
    """The txn routes have one rule, the seed's `accessDenied`, and `_access` has checked it already."""


def _check_state(task: AssignmentDocument, operation: Operation, now: datetime) -> Status:
    """The state checks in the seed's order; the new status comes from the one transition table."""
    if not is_active(task):
        raise InvalidTransition(
            f"The task has already finished: its status is {task.status}", current_status=str(task.status)
        )
    check_not_expired(task, now)
    if not task.is_task:
        raise NotATask(f"Assignment {task.id} is not a task: it has no taskKey")
    if operation is Operation.ASSIGN and not task.is_unassigned:
        raise AlreadyAssigned("The task is currently assigned to a user")
    if operation is Operation.UNASSIGN and task.is_unassigned:
        raise NotAssigned("The task is not currently assigned to a user")
    return next_status(task, operation)


def assign_task(
    body: object,
    principal: Principal,
    deps: Deps,
    *,
    idempotency_key: str | None = None,
    if_match: str | None = None,
) -> Outcome:
    idempotency = idempotent_request(principal.actor, ROUTE_ASSIGN, idempotency_key, body)
    request = parse_assign_request(body)

    # Looked up once, after the state checks, and kept if the write loses a race and is re-decided.
    @functools.cache
    def assignee() -> DirectoryUser:
        if deps.directory is None:
            raise RuntimeError("assign_task needs a directory in Deps")
        return enabled_user_by_key(deps.directory, request.user_key)

    def change(task: AssignmentDocument, now: datetime) -> None:
        task.status = _check_state(task, Operation.ASSIGN, now)
        user = assignee()
        task.assignee_email = user.upn.lower()
        task.assignee_user_key = user.user_key
        task.assigned_by = principal.actor
        emit(task, "assignment.assigned", now)

    return _update_task(deps, request.submit_key, principal, idempotency, if_match, may_txn_assign, change)


def unassign_task(
    body: object,
    principal: Principal,
    deps: Deps,
    *,
    idempotency_key: str | None = None,
    if_match: str | None = None,
) -> Outcome:
    idempotency = idempotent_request(principal.actor, ROUTE_UNASSIGN, idempotency_key, body)
    submit_key = parse_unassign_request(body)

    def change(task: AssignmentDocument, now: datetime) -> None:
        task.status = _check_state(task, Operation.UNASSIGN, now)
        task.assignee_email = None
        task.assignee_user_key = None
        emit(task, "assignment.unassigned", now)

    return _update_task(deps, submit_key, principal, idempotency, if_match, may_txn_unassign, change)


def _update_task(
    deps: Deps,
    submit_key: str,
    principal: Principal,
    idempotency: IdempotentRequest | None,
    if_match: str | None,
    may: Callable[[Principal, AssignmentFields], bool],
    change: Change,
) -> Outcome:
    return update_assignment(
        deps,
        assignment_id=submit_key,
        principal=principal,
        idempotency=idempotency,
        if_match=if_match,
        check_visible=_access(may),
        authorize=_access_is_the_permission,
        change=change,
    )
