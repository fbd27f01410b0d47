"""Use cases: create an assignment, read one."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from core import aggregate
from core.aggregate import Context
from core.directory import Directory, enabled_user_by_upn
from core.errors import DuplicateId, FieldError, Forbidden, IdempotencyKeyReused, UserNotFound, ValidationFailed
from core.models import CreateRequest
from core.rules import check_readable
from core.services.pipeline import (
    Command,
    Deps,
    IdempotentRequest,
    Outcome,
    check_key_reuse,
    idempotent_request,
    load,
    parse_model,
)
from core.store import KeyClaim

ROUTE_CREATE = "createAssignment"


@dataclass(frozen=True)
class _Originator:
    email: str
    user_key: str


def _directory(deps: Deps) -> Directory:
    if deps.directory is None:
        raise RuntimeError("Create needs a directory, and none is configured")
    return deps.directory


def _originator(request: CreateRequest, command: Command, deps: Deps) -> _Originator:
    """Users create as themselves; an app-only admin must name the originator, an enabled directory user of
    its tenant, whose key is stored (docs/api-rules.md, "Identity and tenancy")."""
    principal = command.principal
    named = request.originator_email
    if not principal.is_app_only:
        if named is not None and named != principal.upn:
            raise Forbidden("Only an application with the admin role may create on behalf of another originator")
        if principal.upn is None:
            raise Forbidden("The token carries no user principal name")
        return _Originator(principal.upn, principal.oid)
    if named is None:
        message = "is required when an application creates an assignment"
        raise ValidationFailed(f"originatorEmail {message}", [FieldError("originatorEmail", message)])
    if not principal.is_admin:
        raise Forbidden("Only an admin may create an assignment on behalf of another originator")
    user = enabled_user_by_upn(_directory(deps), principal.tid, named)
    if user is None:
        raise UserNotFound(f"No enabled user {named} is in the directory")
    return _Originator(user.upn.lower(), user.user_key)


def _replay(deps: Deps, command: Command, idempotency: IdempotentRequest, assignment_id: str) -> Outcome | None:
    """The assignment this key created, as it is now; None when the key created nothing yet."""
    document = deps.store.read(command.principal.tid, assignment_id)
    if document is None or document.created_with_key != idempotency.key:
        return None
    return Outcome(document.public_json(), created=True)


def create_assignment(command: Command, deps: Deps) -> Outcome:
    """`POST /assignments`. Round trips: 1 (the create) on a directory-cache hit or for an unassigned task,
    2 on a miss; an Idempotency-Key adds its claim. With a key, a retry (same body) gets the first answer,
    and another body gets 422, whatever id either names."""
    idempotency = idempotent_request(command, ROUTE_CREATE)
    try:
        request = parse_model(CreateRequest, command.body)
    except ValidationFailed:
        if idempotency is not None:
            probe = KeyClaim(key=idempotency.key, body_hash=idempotency.body_hash, assignment_id="")
            check_key_reuse(deps.store.read_key_claim(probe) is not None, idempotency)
        raise
    # Minted at random, never derived from the key: nobody else can predict, and so pre-create, it.
    assignment_id = request.id or uuid.uuid4().hex
    if idempotency is not None:
        claim = KeyClaim(key=idempotency.key, body_hash=idempotency.body_hash, assignment_id=assignment_id)
        earlier = deps.store.claim_key(claim, ttl_seconds=deps.idempotency_ttl_seconds)
        if earlier is not None:
            if earlier.body_hash != idempotency.body_hash:
                raise IdempotencyKeyReused("This Idempotency-Key was already used with a different request body")
            assignment_id = earlier.assignment_id
            replay = _replay(deps, command, idempotency, assignment_id)
            if replay is not None:
                return replay

    # Validation before who creates for whom (docs/api-rules.md, "Order of checks").
    aggregate.check_future_expiry(request.expires_at, deps.clock())
    originator = _originator(request, command, deps)
    principal = command.principal
    assignee = None
    if request.assignee_email is not None:
        assignee = enabled_user_by_upn(_directory(deps), principal.tid, request.assignee_email)
    ctx = Context(principal=principal, now=deps.clock(), user=assignee)
    decision = aggregate.create(
        request,
        ctx,
        assignment_id=assignment_id,
        originator_email=originator.email,
        originator_user_key=originator.user_key,
        created_with_key=idempotency.key if idempotency else None,
    )
    try:
        stored = deps.store.create(decision)
    except DuplicateId:
        # A concurrent twin of this request (same key, same body) created it first.
        replay = _replay(deps, command, idempotency, assignment_id) if idempotency else None
        if replay is None:
            raise
        return replay
    return Outcome(stored.public_json(), created=True)


def get_assignment(command: Command, deps: Deps) -> Outcome:
    document = load(deps, command.principal, command.assignment_id)
    check_readable(command.principal, document)
    return Outcome(document.public_json())
