"""Use case: delegate an assignment, creating its successor atomically and exactly once.

The original and its successor share a partition (the root id), so one transactional batch replaces the
original, conditional on the ETag it had when read, and creates the successor. Of concurrent
delegations exactly one batch commits; every loser re-reads and is answered from the winner's state:
`alreadyDelegated`, or the winner's successor when the loser asked for the same thing.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from core.directory import DirectoryUser, enabled_user_by_upn
from core.errors import ConcurrencyConflict, Forbidden, ServiceUnavailable, ValidationFailed
from core.idempotency import IdempotentRequest, find_replay, idempotent_request
from core.models import AssignmentDocument, AssignmentFields, LongText, RequestModel, Status, Upn, partition_key_of
from core.rules import begin_write, check_delegate, check_delegation, check_readable, is_assignee
from core.services.common import (
    ASSIGNMENT_ID_PATTERN,
    MAX_RACE_RETRIES,
    Deps,
    Outcome,
    check_if_match,
    emit,
    load,
    parse_model,
)

if TYPE_CHECKING:
    from core.auth import Principal

ROUTE_DELEGATE = "delegateAssignment"


class DelegateCommand(RequestModel):
    """The body of `POST /assignments/{id}/delegate`."""

    to_upn: Upn
    reason: LongText | None = None


def successor_id(original: AssignmentFields) -> str:
    """`{rootId}.{n}`, n being the successor's depth: the length of its delegation chain."""
    return f"{partition_key_of(original.id)}.{len(original.delegation_chain) + 1}"


def build_successor(
    original: AssignmentDocument, delegate: DirectoryUser, *, actor: str, reason: str | None, now: datetime
) -> AssignmentDocument:
    """The original's copy for the delegate: every field, except those that describe who holds it and
    what happened to it so far."""
    previous_assignee = original.assignee_email or original.assignee_user_key
    assert previous_assignee is not None, "check_delegation refuses an unassigned original"
    fields = original.model_dump(include=set(AssignmentFields.model_fields))
    fields.update(
        id=successor_id(original),
        assignee_email=delegate.upn,
        assignee_user_key=delegate.user_key,
        assigned_by=actor,
        status=Status.PENDING,
        attempts=[],
        reminders_sent=0,
        last_reminder_at=None,
        delegated_from=original.id,
        delegated_to=None,
        delegation_chain=[*original.delegation_chain, previous_assignee],
        delegation_reason=reason,
        cancelled_at=None,
        cancelled_by=None,
        cancellation_reason=None,
        rejected_at=None,
        rejected_by=None,
        rejection_reason=None,
        created_at=now,
        created_by=actor,
        updated_at=now,
        updated_by=actor,
    )
    return AssignmentDocument(**fields, pk=original.pk)


def _successor_of(deps: Deps, original: AssignmentDocument) -> AssignmentDocument | None:
    return deps.store.read(original.delegated_to) if original.delegated_to else None


def _is_same_delegation(successor: AssignmentDocument, principal: Principal, to_upn: str) -> bool:
    """Natural idempotency: this caller already delegated the original to this user."""
    return successor.assigned_by == principal.actor and (successor.assignee_email or "").lower() == to_upn


def _check_key_reuse(deps: Deps, assignment_id: str, idempotency: IdempotentRequest) -> None:
    """A body that fails validation under a key seen before is reported as the key's reuse."""
    if ASSIGNMENT_ID_PATTERN.match(assignment_id):
        original = deps.store.read(assignment_id)
        if original is not None:
            find_replay(idempotency, _successor_of(deps, original))


def _check_may_delegate(principal: Principal, original: AssignmentDocument) -> None:
    check_readable(principal, original)
    if not (principal.is_admin or is_assignee(principal, original)):
        raise Forbidden("Only the assignee or an admin may delegate this assignment")


def delegate_assignment(
    assignment_id: str,
    body: object,
    principal: Principal,
    deps: Deps,
    *,
    if_match: str | None = None,
    idempotency_key: str | None = None,
) -> Outcome:
    """Costs read + directory + batch (3 round trips), or read + batch on a directory-cache hit."""
    idempotency = idempotent_request(principal.actor, ROUTE_DELEGATE, idempotency_key, body)
    try:
        command = parse_model(DelegateCommand, body)
    except ValidationFailed:
        if idempotency is not None:
            _check_key_reuse(deps, assignment_id, idempotency)
        raise
    for _ in range(MAX_RACE_RETRIES):
        original = load(deps, assignment_id)
        existing = _successor_of(deps, original)
        replay = find_replay(idempotency, existing)
        if replay is not None:
            return Outcome(replay.body, created=replay.created)
        if existing is not None and _is_same_delegation(existing, principal, command.to_upn):
            return Outcome(existing.to_public().to_json())
        _check_may_delegate(principal, original)
        check_if_match(if_match, original)
        now = deps.clock()
        target = check_delegation(original, command.to_upn, now, max_depth=deps.delegation_max_depth)
        if deps.directory is None:
            raise RuntimeError("Delegation needs a directory")
        delegate = enabled_user_by_upn(deps.directory, command.to_upn)
        check_delegate(original, upn=delegate.upn, user_key=delegate.user_key)

        read_etag = original.etag or ""
        successor = build_successor(original, delegate, actor=principal.actor, reason=command.reason, now=now)
        emit(successor, "assignment.created", now)
        if idempotency is not None:
            successor.remember(idempotency.record(created=True, holder=successor))
        begin_write(original, principal.actor, now)
        original.status = target
        original.delegated_to = successor.id
        original.delegation_reason = command.reason
        emit(original, "assignment.delegated", now)
        try:
            _, stored = deps.store.replace_and_create(original, etag=read_etag, successor=successor)
        except ConcurrencyConflict:
            continue
        return Outcome(stored.to_public().to_json(), created=True)
    raise ServiceUnavailable("The assignment is being changed by many requests at once; retry", retry_after=1)
