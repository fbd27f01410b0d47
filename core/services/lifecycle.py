"""Use cases for an assignment's life after create: progress events, complete, reject, cancel, reassign,
edit, delegate. Each parses its body, names what its decision needs, and hands the aggregate's operation
to the one loop (`pipeline.run_write`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial
from typing import Any

from core import aggregate
from core.aggregate import Context, Decision
from core.models import (
    AssignmentDocument,
    CancelRequest,
    CompleteRequest,
    DelegateRequest,
    EventRequest,
    PatchRequest,
    ReassignRequest,
    RejectRequest,
)
from core.services.pipeline import Command, Deps, Needs, Outcome, parse_model, parse_write, run_write


def _optional(body: object) -> object:
    """An empty body counts as `{}` for the operations whose fields are all optional."""
    return {} if body is None else body


def record_event(command: Command, deps: Deps) -> Outcome:
    """`POST /assignments/{id}/events`. Every applied event leaves a permanent marker, written in the
    same batch as the change, so a redelivered `eventId` changes nothing however much later it comes."""
    route = "postProgressEvent"
    event = parse_write(command, deps, route, partial(parse_model, EventRequest))
    aggregate.check_event_time(event, deps.clock())
    marker_id = aggregate.event_marker_id(command.assignment_id, hashlib.sha256(event.event_id.encode()).hexdigest())
    operation = partial(aggregate.record_event, event=event, marker_id=marker_id)
    return run_write(deps, command, route=route, operation=operation, needs=Needs(marker_id=marker_id))


def _with_optional_body(
    command: Command,
    deps: Deps,
    route: str,
    model: type[CompleteRequest] | type[RejectRequest] | type[CancelRequest],
    operation: Callable[[AssignmentDocument, Context, Any], Decision],
) -> Outcome:
    """The writes whose body is optional and whose decision needs nothing looked up."""
    request = parse_write(command, deps, route, lambda body: parse_model(model, _optional(body)))
    return run_write(deps, command, route=route, operation=lambda document, ctx: operation(document, ctx, request))


def complete_assignment(command: Command, deps: Deps) -> Outcome:
    return _with_optional_body(command, deps, "completeAssignment", CompleteRequest, aggregate.complete)


def reject_assignment(command: Command, deps: Deps) -> Outcome:
    return _with_optional_body(command, deps, "rejectAssignment", RejectRequest, aggregate.reject)


def cancel_assignment(command: Command, deps: Deps) -> Outcome:
    return _with_optional_body(command, deps, "cancelAssignment", CancelRequest, aggregate.cancel)


def reassign_assignment(command: Command, deps: Deps) -> Outcome:
    route = "reassignAssignment"
    request = parse_write(command, deps, route, partial(parse_model, ReassignRequest))
    operation = partial(aggregate.reassign, request=request)
    return run_write(deps, command, route=route, operation=operation, needs=Needs(user_by_upn=request.to_upn))


def edit_assignment(command: Command, deps: Deps) -> Outcome:
    """`PATCH /assignments/{id}` (merge patch), by the originator, with `If-Match`."""
    route = "editAssignment"
    patch = parse_write(command, deps, route, partial(parse_model, PatchRequest))
    aggregate.check_future_expiry(patch.expires_at, deps.clock())
    return run_write(deps, command, route=route, operation=partial(aggregate.edit, patch=patch))


def delegate_assignment(command: Command, deps: Deps) -> Outcome:
    """`POST /assignments/{id}/delegate`: read + directory + one batch (the original, conditional on its
    ETag, and the successor), or read + batch on a directory-cache hit."""
    route = "delegateAssignment"
    request = parse_write(command, deps, route, partial(parse_model, DelegateRequest))
    operation = partial(aggregate.delegate, request=request)
    needs = Needs(user_by_upn=request.to_upn, successor=True)
    return run_write(deps, command, route=route, operation=operation, needs=needs)
