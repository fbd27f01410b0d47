"""Use cases: create an assignment, read one."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from core.errors import DuplicateId, Forbidden, ValidationFailed
from core.idempotency import derived_id, find_replay, idempotent_request
from core.models import AssignmentCreate, AssignmentDocument, Status, partition_key_of
from core.rules import check_readable
from core.services.common import ASSIGNMENT_ID_PATTERN, Deps, Outcome, emit, load, parse_model

if TYPE_CHECKING:
    from core.auth import Principal

ROUTE_CREATE = "createAssignment"


def _is_valid_id(value: object) -> bool:
    return isinstance(value, str) and ASSIGNMENT_ID_PATTERN.match(value) is not None


def _originator(command: AssignmentCreate, principal: Principal) -> str:
    """Users create as themselves; only admins may name another originator, and app-only admins must."""
    if principal.is_app_only:
        if command.originator_email is None:
            raise ValidationFailed("originatorEmail is required when an application creates an assignment")
        return command.originator_email
    if command.originator_email is not None and command.originator_email != principal.upn:
        if not principal.is_admin:
            raise Forbidden("Only an admin may create an assignment on behalf of another originator")
        return command.originator_email
    if principal.upn is None:
        raise Forbidden("The token carries no user principal name")
    return principal.upn


def create_assignment(body: object, principal: Principal, deps: Deps, *, idempotency_key: str | None = None) -> Outcome:
    idempotency = idempotent_request(principal.actor, ROUTE_CREATE, idempotency_key, body)
    explicit_id = body.get("id") if isinstance(body, dict) else None
    try:
        command = parse_model(AssignmentCreate, body)
    except ValidationFailed:
        # A reused key with a different (here: invalid) body is reported as such, as the contract orders.
        if idempotency is not None and (explicit_id is None or _is_valid_id(explicit_id)):
            find_replay(idempotency, deps.store.read(explicit_id or derived_id(idempotency)))
        raise
    originator = _originator(command, principal)
    now = deps.clock()
    if command.expires_at is not None and command.expires_at <= now:
        raise ValidationFailed("expiresAt must be in the future")

    assignment_id = command.id or (derived_id(idempotency) if idempotency else uuid.uuid4().hex)
    fields = command.model_dump(exclude={"id", "originator_email"})
    document = AssignmentDocument(
        **fields,
        id=assignment_id,
        pk=partition_key_of(assignment_id),
        originator_email=originator,
        assigned_by=principal.actor if command.assignee_email else None,
        status=Status.PENDING,
        created_at=now,
        updated_at=now,
        created_by=principal.actor,
        updated_by=principal.actor,
    )
    emit(document, "assignment.created", now)
    if idempotency is not None:
        document.remember(idempotency.record(created=True, holder=document))
    try:
        stored = deps.store.create(document)
    except DuplicateId:
        replay = find_replay(idempotency, deps.store.read(assignment_id)) if idempotency else None
        if replay is None:
            raise
        return Outcome(replay.body, created=replay.created)
    return Outcome(stored.to_public().to_json(), created=True)


def get_assignment(assignment_id: str, principal: Principal, deps: Deps) -> Outcome:
    document = load(deps, assignment_id)
    check_readable(principal, document)
    return Outcome(document.to_public().to_json())
