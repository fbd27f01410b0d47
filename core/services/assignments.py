"""Use cases: create an assignment, read one."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from core.errors import DuplicateId, Forbidden, IdempotencyKeyReused, ValidationFailed
from core.idempotency import IdempotentRequest, derived_id, find_replay, idempotent_request
from core.models import AssignmentCreate, AssignmentDocument, Status, partition_key_of
from core.rules import check_readable
from core.services.common import Deps, Outcome, emit, load, parse_model
from core.store import KeyClaim

if TYPE_CHECKING:
    from core.auth import Principal

ROUTE_CREATE = "createAssignment"


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
    try:
        command = parse_model(AssignmentCreate, body)
    except ValidationFailed:
        # A reused key with a different (here: invalid) body is reported as such, as the contract orders.
        if idempotency is not None:
            _claim(deps, idempotency, assignment_id=derived_id(idempotency), probe_only=True)
        raise
    assignment_id = command.id or (derived_id(idempotency) if idempotency else uuid.uuid4().hex)
    if idempotency is not None:
        earlier = _claim(deps, idempotency, assignment_id=assignment_id)
        if earlier is not None:
            replay, assignment_id = earlier
            if replay is not None:
                return replay

    originator = _originator(command, principal)
    now = deps.clock()
    if command.expires_at is not None and command.expires_at <= now:
        raise ValidationFailed("expiresAt must be in the future")
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
        document.created_with_key = idempotency.key
        document.remember(idempotency.record(created=True, holder=document))
    try:
        stored = deps.store.create(document)
    except DuplicateId:
        # A concurrent twin of this request (same key, same body) created it first.
        replay = _replay_of(deps, idempotency, assignment_id) if idempotency else None
        if replay is None:
            raise
        return replay
    return Outcome(stored.to_public().to_json(), created=True)


def _claim(
    deps: Deps, idempotency: IdempotentRequest, *, assignment_id: str, probe_only: bool = False
) -> tuple[Outcome | None, str] | None:
    """Bind the key to this body and id. When it was bound before: another body is refused; the same
    body replays the first response, or (after a crash between claim and create) names the id to create."""
    claim = KeyClaim(key=idempotency.key, body_hash=idempotency.body_hash, assignment_id=assignment_id)
    earlier = deps.store.read_key_claim(claim) if probe_only else deps.store.claim_key(claim)
    if earlier is None:
        return None
    if earlier.body_hash != idempotency.body_hash:
        raise IdempotencyKeyReused("This Idempotency-Key was already used with a different request body")
    return _replay_of(deps, idempotency, earlier.assignment_id), earlier.assignment_id


def _replay_of(deps: Deps, idempotency: IdempotentRequest, assignment_id: str) -> Outcome | None:
    document = deps.store.read(assignment_id)
    if document is None:
        return None
    replay = find_replay(idempotency, document)
    if replay is not None:
        return Outcome(replay.body, created=replay.created)
    if document.created_with_key == idempotency.key:
        # Later writes evicted the replay record; the assignment this key created is still the answer.
        return Outcome(document.to_public().to_json(), created=True)
    return None


def get_assignment(assignment_id: str, principal: Principal, deps: Deps) -> Outcome:
    document = load(deps, assignment_id)
    check_readable(principal, document)
    return Outcome(document.to_public().to_json())
