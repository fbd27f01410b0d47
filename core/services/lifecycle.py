"""Use cases for the rest of an assignment's life: progress events, complete, reject, cancel, reassign
and edit.

Each one is a `change` run by `update_assignment`, so all of them share the same read, checks (in the
contract's order: replay, body, visibility 404, permission 403, If-Match 412, state), conditional write
and race retries. The state checks start with `rules.allowed_transition`, i.e. the one transition table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from core.directory import enabled_user_by_upn
from core.errors import (
    CriteriaNotManual,
    FieldError,
    Forbidden,
    PreconditionRequired,
    RejectionNotAllowed,
    ValidationFailed,
)
from core.idempotency import IdempotentRequest, find_replay, idempotent_request
from core.models import (
    AssignmentDocument,
    AssignmentPatch,
    CancelRequest,
    CompleteRequest,
    CompletionCriteria,
    ProgressEvent,
    ReassignRequest,
    RejectRequest,
    Status,
    check_schedule_and_score,
)
from core.rules import (
    Operation,
    allowed_transition,
    check_readable,
    fewest_max_attempts,
    is_assignee,
    is_originator,
    next_status,
    record_progress,
    remember_event,
    was_processed,
)
from core.services.common import ASSIGNMENT_ID_PATTERN, Deps, Outcome, emit, parse_model, update_assignment
from core.store import Marker

if TYPE_CHECKING:
    from core.auth import Principal

T = TypeVar("T")

ROUTE_EVENTS = "postProgressEvent"
ROUTE_COMPLETE = "completeAssignment"
ROUTE_REJECT = "rejectAssignment"
ROUTE_CANCEL = "cancelAssignment"
ROUTE_REASSIGN = "reassignAssignment"
ROUTE_EDIT = "editAssignment"

# Reporters' clocks drift; an event further ahead than this is a bug in the reporter, not drift.
MAX_EVENT_CLOCK_SKEW = timedelta(minutes=5)

# The outbox event each operation emits.
EVENT_TYPES: dict[Operation, str] = {
    Operation.START: "assignment.started",
    Operation.PROGRESS: "assignment.progressed",
    Operation.COMPLETE: "assignment.completed",
    Operation.FAIL: "assignment.failed",
    Operation.CANCEL: "assignment.cancelled",
    Operation.REJECT: "assignment.rejected",
    Operation.REASSIGN: "assignment.reassigned",
    Operation.EDIT: "assignment.updated",
}


def _validated(parse: Callable[[], T], *, idempotency: IdempotentRequest | None, deps: Deps, assignment_id: str) -> T:
    """Parse a body. When it is invalid but its Idempotency-Key was used before, the reuse is what the
    caller hears (422 `idempotencyKeyReused`): replay comes before body validation in the contract."""
    try:
        return parse()
    except ValidationFailed:
        if idempotency is not None and ASSIGNMENT_ID_PATTERN.match(assignment_id):
            find_replay(idempotency, deps.store.read(assignment_id))
        raise


def _body(data: object) -> object:
    """An empty body counts as `{}` for the operations whose fields are all optional."""
    return {} if data is None else data


def _require_originator_or_admin(principal: Principal, document: AssignmentDocument) -> None:
    if not (principal.is_admin or is_originator(principal, document)):
        raise Forbidden("Only the originator or an admin may do this")


def _require_assignee_or_admin(principal: Principal, document: AssignmentDocument) -> None:
    if not (principal.is_admin or is_assignee(principal, document)):
        raise Forbidden("Only the assignee or an admin may do this")


# --- progress events ---------------------------------------------------------------------------------


class _AlreadyProcessed(Exception):
    """The event was applied before: answer with the assignment as it is, and write nothing."""

    def __init__(self, document: AssignmentDocument) -> None:
        super().__init__(document.id)
        self.document = document


def _visible_to_event_poster(principal: Principal, document: AssignmentDocument) -> None:
    # A reporter app reports for every assignment without being one of its readers.
    if not principal.is_reporter:
        check_readable(principal, document)


def _parse_event(body: object, now: datetime) -> ProgressEvent:
    event = parse_model(ProgressEvent, body)
    if event.occurred_at > now + MAX_EVENT_CLOCK_SKEW:
        message = "must not be more than 5 minutes in the future"
        raise ValidationFailed(f"occurredAt {message}", [FieldError("occurredAt", message)])
    return event


def record_event(
    assignment_id: str,
    body: object,
    principal: Principal,
    deps: Deps,
    *,
    idempotency_key: str | None = None,
    if_match: str | None = None,
) -> Outcome:
    """`POST /assignments/{id}/events`: by the assignee, a reporter app, or an admin. A repeated `eventId`
    answers 200 with the assignment as it is, whatever its status or `If-Match`, and writes nothing."""
    idempotency = idempotent_request(principal.actor, ROUTE_EVENTS, idempotency_key, body)
    event = _validated(
        lambda: _parse_event(body, deps.clock()), idempotency=idempotency, deps=deps, assignment_id=assignment_id
    )

    # Every applied event leaves a permanent marker; the document's short list of recent ids only saves
    # the marker's read for the redeliveries that come soon after.
    marker = Marker(assignment_id, "event", hashlib.sha256(event.event_id.encode()).hexdigest())

    def authorize(principal: Principal, document: AssignmentDocument) -> None:
        if not (principal.is_admin or principal.is_reporter or is_assignee(principal, document)):
            raise Forbidden("Only the assignee, a reporter app or an admin may report progress")
        if was_processed(document, event.event_id) or deps.store.has_marker(marker):
            raise _AlreadyProcessed(document)

    def change(document: AssignmentDocument, now: datetime) -> None:
        starting = document.status == Status.PENDING
        allowed_transition(document, Operation.START if starting else Operation.PROGRESS, now)
        operation = record_progress(document, event)
        document.status = next_status(document, operation)
        remember_event(document, event.event_id)
        emit(document, EVENT_TYPES[operation], now)

    try:
        return update_assignment(
            deps,
            assignment_id=assignment_id,
            principal=principal,
            idempotency=idempotency,
            if_match=if_match,
            authorize=authorize,
            change=change,
            check_visible=_visible_to_event_poster,
            marker=marker,
        )
    except _AlreadyProcessed as repeat:
        return Outcome(repeat.document.to_public().to_json())


# --- complete, reject, cancel --------------------------------------------------------------------------


def complete_assignment(
    assignment_id: str,
    body: object,
    principal: Principal,
    deps: Deps,
    *,
    idempotency_key: str | None = None,
    if_match: str | None = None,
) -> Outcome:
    """`POST /assignments/{id}/complete`: by the originator or an admin, for `manual` assignments only."""
    idempotency = idempotent_request(principal.actor, ROUTE_COMPLETE, idempotency_key, body)
    _validated(
        lambda: parse_model(CompleteRequest, _body(body)),
        idempotency=idempotency,
        deps=deps,
        assignment_id=assignment_id,
    )

    def change(document: AssignmentDocument, now: datetime) -> None:
        target = allowed_transition(document, Operation.COMPLETE, now)
        if document.completion_criteria != CompletionCriteria.MANUAL:
            raise CriteriaNotManual(
                f"Only manual assignments are completed by request; this one completes on"
                f" {document.completion_criteria}"
            )
        document.status = target
        emit(document, EVENT_TYPES[Operation.COMPLETE], now)

    return update_assignment(
        deps,
        assignment_id=assignment_id,
        principal=principal,
        idempotency=idempotency,
        if_match=if_match,
        authorize=_require_originator_or_admin,
        change=change,
    )


def reject_assignment(
    assignment_id: str,
    body: object,
    principal: Principal,
    deps: Deps,
    *,
    idempotency_key: str | None = None,
    if_match: str | None = None,
) -> Outcome:
    """`POST /assignments/{id}/reject`: by the assignee (or an admin), when `allowRejection` is true."""
    idempotency = idempotent_request(principal.actor, ROUTE_REJECT, idempotency_key, body)
    request = _validated(
        lambda: parse_model(RejectRequest, _body(body)), idempotency=idempotency, deps=deps, assignment_id=assignment_id
    )

    def change(document: AssignmentDocument, now: datetime) -> None:
        target = allowed_transition(document, Operation.REJECT, now)
        if not document.allow_rejection:
            raise RejectionNotAllowed(f"Assignment {document.id} does not allow rejection")
        document.status = target
        document.rejected_at = now
        document.rejected_by = principal.actor
        document.rejection_reason = request.reason
        emit(document, EVENT_TYPES[Operation.REJECT], now)

    return update_assignment(
        deps,
        assignment_id=assignment_id,
        principal=principal,
        idempotency=idempotency,
        if_match=if_match,
        authorize=_require_assignee_or_admin,
        change=change,
    )


def cancel_assignment(
    assignment_id: str,
    body: object,
    principal: Principal,
    deps: Deps,
    *,
    idempotency_key: str | None = None,
    if_match: str | None = None,
) -> Outcome:
    """`POST /assignments/{id}/cancel`: by the originator or an admin."""
    idempotency = idempotent_request(principal.actor, ROUTE_CANCEL, idempotency_key, body)
    request = _validated(
        lambda: parse_model(CancelRequest, _body(body)), idempotency=idempotency, deps=deps, assignment_id=assignment_id
    )

    def change(document: AssignmentDocument, now: datetime) -> None:
        document.status = allowed_transition(document, Operation.CANCEL, now)
        document.cancelled_at = now
        document.cancelled_by = principal.actor
        document.cancellation_reason = request.reason
        emit(document, EVENT_TYPES[Operation.CANCEL], now)

    return update_assignment(
        deps,
        assignment_id=assignment_id,
        principal=principal,
        idempotency=idempotency,
        if_match=if_match,
        authorize=_require_originator_or_admin,
        change=change,
    )


# --- reassign ------------------------------------------------------------------------------------------


def _check_new_assignee(document: AssignmentDocument, *, upn: str, user_key: str | None = None) -> None:
    """Checked on the requested UPN before the directory is asked, and again on the user it resolved."""
    same_key = user_key is not None and user_key == document.assignee_user_key
    if same_key or upn == (document.assignee_email or "").lower():
        message = "is already the assignee"
        raise ValidationFailed(f"toUpn {message}", [FieldError("toUpn", message)])


def reassign_assignment(
    assignment_id: str,
    body: object,
    principal: Principal,
    deps: Deps,
    *,
    idempotency_key: str | None = None,
    if_match: str | None = None,
) -> Outcome:
    """`POST /assignments/{id}/reassign`: by the originator or an admin; the assignment changes hands in
    place, keeping its attempts. The reason is validated but not stored: the model has no field for it."""
    idempotency = idempotent_request(principal.actor, ROUTE_REASSIGN, idempotency_key, body)
    request = _validated(
        lambda: parse_model(ReassignRequest, body), idempotency=idempotency, deps=deps, assignment_id=assignment_id
    )
    directory = deps.directory
    if directory is None:
        raise RuntimeError("Reassign needs a directory, and none is configured")

    def change(document: AssignmentDocument, now: datetime) -> None:
        target = allowed_transition(document, Operation.REASSIGN, now)
        _check_new_assignee(document, upn=request.to_upn)
        user = enabled_user_by_upn(directory, request.to_upn)
        _check_new_assignee(document, upn=user.upn.lower(), user_key=user.user_key)
        document.status = target
        document.reassigned_from = document.assignee_email
        document.assignee_email = user.upn.lower()
        document.assignee_user_key = user.user_key
        document.assigned_by = principal.actor
        # Reminders count per assignee: the new one has had none.
        document.reminders_sent = 0
        document.last_reminder_at = None
        emit(document, EVENT_TYPES[Operation.REASSIGN], now)

    return update_assignment(
        deps,
        assignment_id=assignment_id,
        principal=principal,
        idempotency=idempotency,
        if_match=if_match,
        authorize=_require_originator_or_admin,
        change=change,
    )


# --- edit ----------------------------------------------------------------------------------------------


def _parse_patch(body: object, now: datetime) -> AssignmentPatch:
    patch = parse_model(AssignmentPatch, body)
    if patch.expires_at is not None and patch.expires_at <= now:
        message = "must be in the future"
        raise ValidationFailed(f"expiresAt {message}", [FieldError("expiresAt", message)])
    return patch


def _check_edited(document: AssignmentDocument, changes: dict[str, Any]) -> None:
    """The edited assignment must pass create's rules, and still allow the attempts already made."""
    edited = {name: getattr(document, name) for name in AssignmentPatch.model_fields} | changes
    try:
        check_schedule_and_score(
            edited["due_at"],
            edited["expires_at"],
            document.completion_criteria,
            edited["pass_score"],
        )
    except ValueError as error:
        raise ValidationFailed(f"The edit is not valid: {error}", [FieldError("body", str(error))]) from None
    fewest = fewest_max_attempts(document)
    if edited["max_attempts"] is not None and edited["max_attempts"] < fewest:
        message = f"must be at least {fewest}, given the attempts already made"
        raise ValidationFailed(f"maxAttempts {message}", [FieldError("maxAttempts", message)])


def edit_assignment(
    assignment_id: str,
    body: object,
    principal: Principal,
    deps: Deps,
    *,
    if_match: str | None,
    idempotency_key: str | None = None,
) -> Outcome:
    """`PATCH /assignments/{id}` (merge patch): by the originator or an admin, and only with `If-Match`
    (428 without), so an edit never overwrites a change its author has not seen."""
    idempotency = idempotent_request(principal.actor, ROUTE_EDIT, idempotency_key, body)
    patch = _validated(
        lambda: _parse_patch(body, deps.clock()), idempotency=idempotency, deps=deps, assignment_id=assignment_id
    )
    changes = patch.changes()

    def authorize(principal: Principal, document: AssignmentDocument) -> None:
        _require_originator_or_admin(principal, document)
        # Here, not up front: a caller who may not read or edit the assignment hears 404 or 403 first.
        if if_match is None:
            raise PreconditionRequired("PATCH requires If-Match with the assignment's current ETag")

    def change(document: AssignmentDocument, now: datetime) -> None:
        target = allowed_transition(document, Operation.EDIT, now)
        _check_edited(document, changes)
        for name, value in changes.items():
            setattr(document, name, value)
        document.status = target
        emit(document, EVENT_TYPES[Operation.EDIT], now)

    return update_assignment(
        deps,
        assignment_id=assignment_id,
        principal=principal,
        idempotency=idempotency,
        if_match=if_match,
        authorize=authorize,
        change=change,
    )
