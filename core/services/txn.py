"""Use cases of the txn routes (docs/api-rules.md, "The txn routes"): assign a task to a directory user,
and unassign it.

The seed fixes the body, `{"params": {...}}`, and the order in which its errors are reported
(docs/api-rules.md, "The txn routes"). The body's own checks are pure (`parse_assign_request`,
`parse_unassign_request`); the rest of the order runs in the aggregate's `assign`/`unassign`, run by the
one loop, which reads the task once and writes conditionally on the ETag it read:

    invalidRequest, invalidRequestAttribute, invalidAssignAttribute, submitKeyNotSpecified,
    userKeyNotSpecified                                     parse_*_request
    txnNotFound                                             pipeline.load (one point read)
    accessDenied                                            rules.may_txn_assign / may_txn_unassign
    preconditionFailed (412, our addition)                  If-Match
    txnAlreadyFinished, txnNotTask,
    txnAlreadyAssigned / txnNotAssigned, userNotFound       aggregate.assign / aggregate.unassign
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

from core import aggregate
from core.aggregate import Context, Decision
from core.errors import (
    InvalidAssignAttribute,
    InvalidRequest,
    InvalidRequestAttribute,
    SubmitKeyNotSpecified,
    UserKeyNotSpecified,
)
from core.models import AssignmentDocument, TxnAssignRequest, TxnUnassignRequest
from core.services.pipeline import Command, Deps, Needs, Outcome, idempotent_request, run_write

ROUTE_ASSIGN = "txnAssign"
ROUTE_UNASSIGN = "txnUnassign"
PARAMS = "params"
SUBMIT_KEY = "submitKey"
USER_KEY = "userKey"


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


def parse_assign_request(body: object) -> TxnAssignRequest:
    values = _params(body, (SUBMIT_KEY, USER_KEY))
    submit_key, user_key = values[SUBMIT_KEY], values[USER_KEY]
    if submit_key is None:
        raise SubmitKeyNotSpecified()
    if user_key is None:
        raise UserKeyNotSpecified()
    return TxnAssignRequest(submit_key=submit_key, user_key=user_key)


def parse_unassign_request(body: object) -> TxnUnassignRequest:
    submit_key = _params(body, (SUBMIT_KEY,))[SUBMIT_KEY]
    if submit_key is None:
        raise SubmitKeyNotSpecified()
    return TxnUnassignRequest(submit_key=submit_key)


def _run_on_task(
    command: Command,
    deps: Deps,
    route: str,
    submit_key: str,
    operation: Callable[[AssignmentDocument, Context], Decision],
    needs: Needs | None = None,
) -> Outcome:
    # The route's path names no task: a key is the caller's on the route, whatever submitKey it carries.
    task = replace(command, assignment_id=submit_key)
    return run_write(deps, task, route=route, operation=operation, key_scope="", needs=needs or Needs())


def assign_task(command: Command, deps: Deps) -> Outcome:
    """The assignment id is the body's `submitKey`; the header's key is validated before the body."""
    idempotent_request(command, ROUTE_ASSIGN)
    request = parse_assign_request(command.body)
    operation = partial(aggregate.assign, user_key=request.user_key)
    return _run_on_task(command, deps, ROUTE_ASSIGN, request.submit_key, operation, Needs(user_by_key=request.user_key))


def unassign_task(command: Command, deps: Deps) -> Outcome:
    idempotent_request(command, ROUTE_UNASSIGN)
    request = parse_unassign_request(command.body)
    return _run_on_task(command, deps, ROUTE_UNASSIGN, request.submit_key, aggregate.unassign)
