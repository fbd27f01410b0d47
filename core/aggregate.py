"""The assignment aggregate: every operation on an assignment, each one pure function.

An operation takes the stored document, a `Context` (who acts, when, with which `If-Match`, and what the
use case looked up for it beforehand: a directory user, whether an event was applied, the successor of a
delegated assignment) and the parsed request. In one place it runs the checks in the documented order
(docs/api-rules.md, "Order of checks"): visibility (404), permission (403), `If-Match` (412), then the
state checks; then it makes the transition, stamps the fields, emits its events and bumps the
version. It returns a `Decision` and never touches the document it was given, so a use case that loses a
race can decide again from a fresh read. No I/O happens here: `core.services.pipeline` reads, calls the
operation, and writes the decision conditionally on the ETag it read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from core.errors import (
    AlreadyAssigned,
    CriteriaNotManual,
    DelegationTooDeep,
    FieldError,
    Forbidden,
    InvalidTransition,
    NotAssigned,
    NotATask,
    NotVisible,
    PreconditionFailed,
    PreconditionRequired,
    RejectionNotAllowed,
    UserNotFound,
    ValidationFailed,
)
from core.events import EventDocument, EventType, new_event
from core.models import (
    AssignmentDocument,
    AssignmentFields,
    CompletionCriteria,
    PatchRequest,
    Status,
    check_schedule_and_score,
    deep_copy,
    partition_key_of,
)
from core.rules import (
    Operation,
    allowed_transition,
    check_delegate,
    check_delegation,
    check_not_expired,
    check_readable,
    closed_attempts,
    fewest_max_attempts,
    is_active,
    is_assignee,
    is_originator,
    may_txn_assign,
    may_txn_unassign,
    next_status,
    record_progress,
)
from core.timer_rules import Action, ReminderPolicy, due_action

if TYPE_CHECKING:
    from core.auth import Principal
    from core.directory import DirectoryUser
    from core.models import (
        CancelRequest,
        CompleteRequest,
        CreateRequest,
        DelegateRequest,
        EventRequest,
        ReassignRequest,
        RejectRequest,
    )

# The actor the timer writes as (docs/api-rules.md, "Timer: expiry and reminders").
SYSTEM_ACTOR = "system:timer"

# Reporters' clocks drift; an event further ahead than this is a bug in the reporter, not drift.
MAX_EVENT_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Context:
    """Everything an operation depends on besides the document and the request."""

    principal: Principal
    now: datetime
    if_match: str | None = None
    # The directory user the request names, once looked up (`user_resolved`); None when the directory has
    # no enabled user. An operation that reaches the step needing it unresolved asks for it
    # (`Decision.lookup`), so the directory is asked only when every earlier check has passed.
    user: DirectoryUser | None = None
    user_resolved: bool = False
    # Whether this event's marker exists, i.e. the event was applied before.
    event_applied: bool = False
    # The successor of a delegated assignment, read for delegate's natural idempotency.
    successor: AssignmentDocument | None = None
    delegation_max_depth: int = 10
    attempts_limit: int | None = None


@dataclass(frozen=True)
class Decision:
    """What an operation decided: the assignment's next state (None: write nothing), a successor to create
    in the same batch, a marker to create with it, and the document the response shows."""

    shown: AssignmentDocument
    document: AssignmentDocument | None = None
    successor: AssignmentDocument | None = None
    marker_id: str | None = None
    created: bool = False
    # The events the change emits, written as documents in the same batch (the transactional outbox).
    events: tuple[EventDocument, ...] = ()
    # The decision cannot be made before the directory user is looked up: ask, then decide again.
    needs_user: bool = False

    @classmethod
    def unchanged(cls, document: AssignmentDocument) -> Decision:
        return cls(shown=document)

    @classmethod
    def lookup(cls, document: AssignmentDocument) -> Decision:
        return cls(shown=document, needs_user=True)

    @property
    def writes(self) -> bool:
        return self.document is not None


# --- the steps every operation shares -------------------------------------------------------------------


def check_if_match(if_match: str | None, document: AssignmentDocument) -> None:
    """RFC 9110 If-Match: `*`, or any listed entity tag strongly equal to the current one (a weak tag never
    is). Cosmos's ETags are quoted entity tags already; a bare value is accepted too, for clients that strip
    the quotes."""
    if if_match is None or if_match.strip() == "*":
        return
    current = (document.etag or "").strip('"')
    tags = (tag.strip() for tag in if_match.split(","))
    listed = {tag.strip('"') for tag in tags if not tag.startswith("W/")}
    if current not in listed:
        raise PreconditionFailed("The assignment has changed since it was read (If-Match)")


def _guard(document: AssignmentDocument, ctx: Context, *, may: bool, who: str) -> None:
    """404 for a caller who may not read it, 403 for one who may read it but not do this, then 412."""
    check_readable(ctx.principal, document)
    if not (ctx.principal.is_admin or may):
        raise Forbidden(f"Only {who} or an admin may do this")
    check_if_match(ctx.if_match, document)


def _next_version(
    document: AssignmentDocument, ctx: Context, status: Status | None = None, *, actor: str | None = None
) -> AssignmentDocument:
    """A copy of the document as the next version, in `status` if given, stamped with who changed it and when."""
    new: AssignmentDocument = deep_copy(document)
    new.version += 1
    if status is not None:
        new.status = status
    new.updated_at = ctx.now
    new.updated_by = actor or ctx.principal.actor
    return new


def _event(
    document: AssignmentDocument, event_type: EventType, ctx: Context, *, actor: str | None = None, **details: Any
) -> EventDocument:
    return new_event(document, event_type, at=ctx.now, actor=actor or ctx.principal.actor, **details)


def _changed(document: AssignmentDocument, *events: EventDocument, **extra: Any) -> Decision:
    return Decision(shown=document, document=document, events=events, **extra)


# --- create ---------------------------------------------------------------------------------------------


def create(
    request: CreateRequest,
    ctx: Context,
    *,
    assignment_id: str,
    originator_email: str,
    originator_user_key: str,
    created_with_key: str | None = None,
) -> Decision:
    """A new assignment; `ctx.user` is the assignee the directory resolved (None for an unassigned task)."""
    check_future_expiry(request.expires_at, ctx.now)
    if request.assignee_email is not None and ctx.user is None:
        raise UserNotFound(f"No enabled user {request.assignee_email} is in the directory")
    principal = ctx.principal
    assignee = ctx.user if request.assignee_email is not None else None
    fields = request.model_dump(exclude={"id", "originator_email", "assignee_email"})
    document = AssignmentDocument(
        **fields,
        id=assignment_id,
        pk=partition_key_of(principal.tid, assignment_id),
        tenant_id=principal.tid,
        assignee_email=assignee.upn if assignee else None,
        assignee_user_key=assignee.user_key if assignee else None,
        originator_email=originator_email,
        originator_user_key=originator_user_key,
        assigned_by=principal.actor if assignee else None,
        assigned_by_user_key=principal.oid if assignee else None,
        status=Status.PENDING,
        created_at=ctx.now,
        updated_at=ctx.now,
        created_by=principal.actor,
        updated_by=principal.actor,
        created_with_key=created_with_key,
    )
    # `created`, and `assigned` when it has an assignee (an unassigned task notifies no one yet).
    events = [_event(document, EventType.CREATED, ctx)]
    if document.assignee_user_key is not None:
        events.append(_event(document, EventType.ASSIGNED, ctx, to=document.assignee_email))
    return Decision(shown=document, document=document, events=tuple(events), created=True)


# --- complete, reject, cancel ---------------------------------------------------------------------------


def complete(document: AssignmentDocument, ctx: Context, _request: CompleteRequest) -> Decision:
    """The assignee attests a `manual` assignment is done, or its originator declares it so."""
    may = is_assignee(ctx.principal, document) or is_originator(ctx.principal, document)
    _guard(document, ctx, may=may, who="the assignee or the originator")
    target = allowed_transition(document, Operation.COMPLETE, ctx.now)
    if document.completion_criteria != CompletionCriteria.MANUAL:
        raise CriteriaNotManual(
            f"Only manual assignments are completed by request; this one completes on {document.completion_criteria}"
        )
    new = _next_version(document, ctx, status=target)
    return _changed(new, _event(new, EventType.COMPLETED, ctx))


def reject(document: AssignmentDocument, ctx: Context, request: RejectRequest) -> Decision:
    _guard(document, ctx, may=is_assignee(ctx.principal, document), who="the assignee")
    target = allowed_transition(document, Operation.REJECT, ctx.now)
    if not document.allow_rejection:
        raise RejectionNotAllowed(f"Assignment {document.id} does not allow rejection")
    new = _next_version(document, ctx, status=target)
    new.rejected_at = ctx.now
    new.rejected_by = ctx.principal.actor
    new.rejection_reason = request.reason
    return _changed(new, _event(new, EventType.REJECTED, ctx, reason=request.reason))


def cancel(document: AssignmentDocument, ctx: Context, request: CancelRequest) -> Decision:
    _guard(document, ctx, may=is_originator(ctx.principal, document), who="the originator")
    target = allowed_transition(document, Operation.CANCEL, ctx.now)
    new = _next_version(document, ctx, status=target)
    new.cancelled_at = ctx.now
    new.cancelled_by = ctx.principal.actor
    new.cancellation_reason = request.reason
    return _changed(new, _event(new, EventType.CANCELLED, ctx, reason=request.reason))


# --- reassign, assign, unassign -------------------------------------------------------------------------


def _hand_to(new: AssignmentDocument, user: DirectoryUser, ctx: Context) -> None:
    new.assignee_email = user.upn.lower()
    new.assignee_user_key = user.user_key
    new.assigned_by = ctx.principal.actor
    new.assigned_by_user_key = ctx.principal.oid
    # Reminders count per assignee: the new one has had none.
    new.reminders_sent = 0
    new.last_reminder_at = None


def reassign(document: AssignmentDocument, ctx: Context, request: ReassignRequest) -> Decision:
    """The originator hands the assignment to another user in place, keeping its attempts."""
    _guard(document, ctx, may=is_originator(ctx.principal, document), who="the originator")
    target = allowed_transition(document, Operation.REASSIGN, ctx.now)
    if not ctx.user_resolved:
        return Decision.lookup(document)
    # By key: a UPN proves nothing (it may be another user's now).
    if ctx.user is not None and ctx.user.user_key == document.assignee_user_key:
        message = "is already the assignee"
        raise ValidationFailed(f"toUpn {message}", [FieldError("toUpn", message)])
    if ctx.user is None:
        raise UserNotFound(f"No enabled user {request.to_upn} is in the directory")
    new = _next_version(document, ctx, status=target)
    new.reassigned_from = document.assignee_email
    _hand_to(new, ctx.user, ctx)
    event = _event(
        new,
        EventType.REASSIGNED,
        ctx,
        previous=document,
        from_=document.assignee_email,
        to=new.assignee_email,
        reason=request.reason,
    )
    return _changed(new, event)


def _check_task_state(task: AssignmentDocument, operation: Operation, now: datetime) -> Status:
    """The txn routes' state checks, in the seed's order: finished, not a task, (un)assigned."""
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


def _txn_guard(task: AssignmentDocument, ctx: Context, *, may: bool) -> None:
    """The txn routes have one access rule, the seed's `accessDenied`, then If-Match."""
    if not may:
        raise NotVisible(f"The caller has no access to assignment {task.id}")
    check_if_match(ctx.if_match, task)


def assign(task: AssignmentDocument, ctx: Context, user_key: str) -> Decision:
    """txn assign: an unassigned task goes to the directory user `ctx.user`."""
    _txn_guard(task, ctx, may=may_txn_assign(ctx.principal, task))
    target = _check_task_state(task, Operation.ASSIGN, ctx.now)
    if not ctx.user_resolved:
        return Decision.lookup(task)
    if ctx.user is None:
        raise UserNotFound(f"No enabled user with key {user_key} is in the directory")
    new = _next_version(task, ctx, status=target)
    _hand_to(new, ctx.user, ctx)
    return _changed(new, _event(new, EventType.ASSIGNED, ctx, to=new.assignee_email))


def unassign(task: AssignmentDocument, ctx: Context) -> Decision:
    _txn_guard(task, ctx, may=may_txn_unassign(ctx.principal, task))
    target = _check_task_state(task, Operation.UNASSIGN, ctx.now)
    new = _next_version(task, ctx, status=target)
    new.assignee_email = None
    new.assignee_user_key = None
    return _changed(new, _event(new, EventType.UNASSIGNED, ctx, previous=task, from_=task.assignee_email))


# --- edit -----------------------------------------------------------------------------------------------


def _check_edited(document: AssignmentDocument, changes: dict[str, Any]) -> None:
    """The edited assignment must pass create's rules, and still allow the attempts already made."""
    edited = {name: getattr(document, name) for name in PatchRequest.model_fields} | changes
    try:
        check_schedule_and_score(
            edited["due_at"], edited["expires_at"], document.completion_criteria, edited["pass_score"]
        )
    except ValueError as error:
        raise ValidationFailed(f"The edit is not valid: {error}", [FieldError("body", str(error))]) from None
    fewest = fewest_max_attempts(document)
    if edited["max_attempts"] is not None and edited["max_attempts"] < fewest:
        message = f"must be at least {fewest}, given the attempts already made"
        raise ValidationFailed(f"maxAttempts {message}", [FieldError("maxAttempts", message)])


def edit(document: AssignmentDocument, ctx: Context, patch: PatchRequest) -> Decision:
    """A merge patch by the originator, only with `If-Match` (428), so an edit never overwrites a change
    its author has not seen. A patch that changes nothing writes nothing and keeps the ETag."""
    check_future_expiry(patch.expires_at, ctx.now)
    _guard(document, ctx, may=is_originator(ctx.principal, document), who="the originator")
    if ctx.if_match is None:
        raise PreconditionRequired("PATCH requires If-Match with the assignment's current ETag")
    target = allowed_transition(document, Operation.EDIT, ctx.now)
    changes = patch.changes()
    _check_edited(document, changes)
    if all(getattr(document, name) == value for name, value in changes.items()):
        return Decision.unchanged(document)
    new = _next_version(document, ctx, status=target)
    for name, value in changes.items():
        setattr(new, name, value)
    if new.expires_at != document.expires_at:
        # A new expiry deserves its own warning.
        new.expiry_warned_at = None
    return _changed(new, _event(new, EventType.EDITED, ctx))


# --- progress events ------------------------------------------------------------------------------------


def event_marker_id(assignment_id: str, event_id_digest: str) -> str:
    """The permanent marker an applied event leaves; `:` cannot occur in an assignment id."""
    return f"{assignment_id}:event:{event_id_digest}"


def check_event_time(event: EventRequest, now: datetime) -> None:
    """Part of validating the body (422, before anything is read): reporters' clocks drift, but not by more."""
    if event.occurred_at > now + MAX_EVENT_CLOCK_SKEW:
        message = "must not be more than 5 minutes in the future"
        raise ValidationFailed(f"occurredAt {message}", [FieldError("occurredAt", message)])


def check_future_expiry(expires_at: datetime | None, now: datetime) -> None:
    """Part of validating a create or an edit (422, before anything is read or looked up)."""
    if expires_at is not None and expires_at <= now:
        message = "must be in the future"
        raise ValidationFailed(f"expiresAt {message}", [FieldError("expiresAt", message)])


def record_event(document: AssignmentDocument, ctx: Context, event: EventRequest, *, marker_id: str) -> Decision:
    """A progress event from the assignee or a reporter app. One already applied (`ctx.event_applied`)
    answers with the assignment as it is, whatever its status or `If-Match`, and writes nothing."""
    check_event_time(event, ctx.now)
    principal = ctx.principal
    # A reporter app reports for every assignment of its tenant without being one of its readers.
    if not principal.is_reporter:
        check_readable(principal, document)
    if not (principal.is_admin or principal.is_reporter or is_assignee(principal, document)):
        raise Forbidden("Only the assignee, a reporter app or an admin may report progress")
    if ctx.event_applied:
        return Decision.unchanged(document)
    check_if_match(ctx.if_match, document)
    starting = document.status == Status.PENDING
    allowed_transition(document, Operation.START if starting else Operation.PROGRESS, ctx.now)
    new = _next_version(document, ctx)
    operation = record_progress(new, event, attempts_limit=ctx.attempts_limit)
    new.status = next_status(new, operation)
    events = []
    if starting:
        events.append(_event(new, EventType.STARTED, ctx))
    for _ in range(closed_attempts(new) - closed_attempts(document)):
        events.append(_event(new, EventType.ATTEMPT_CLOSED, ctx))
    if operation in (Operation.COMPLETE, Operation.FAIL):
        events.append(_event(new, EventType.COMPLETED if operation is Operation.COMPLETE else EventType.FAILED, ctx))
    return _changed(new, *events, marker_id=marker_id)


# --- delegate -------------------------------------------------------------------------------------------


def successor_id(original: AssignmentFields) -> str:
    """`{rootId}.{n}`, n being the successor's depth: the length of its delegation chain."""
    return f"{original.id.split('.', 1)[0]}.{len(original.delegation_chain) + 1}"


# What happened to the original so far: a successor starts these at their defaults (none, zero, empty).
_STARTED_AFRESH = frozenset(
    {
        "attempts",
        "reminders_sent",
        "last_reminder_at",
        "delegated_to",
        "cancelled_at",
        "cancelled_by",
        "cancellation_reason",
        "rejected_at",
        "rejected_by",
        "rejection_reason",
    }
)


def build_successor(
    original: AssignmentDocument, delegate_user: DirectoryUser, ctx: Context, *, reason: str | None
) -> AssignmentDocument:
    """The original's copy for the delegate: every field, except those that describe who holds it and
    what happened to it so far."""
    previous_assignee = original.assignee_email or original.assignee_user_key
    assert previous_assignee is not None, "check_delegation refuses an unassigned original"
    now, principal = ctx.now, ctx.principal
    fields = original.model_dump(include=AssignmentFields.model_fields.keys() - _STARTED_AFRESH)
    fields.update(
        id=successor_id(original),
        assignee_email=delegate_user.upn.lower(),
        assignee_user_key=delegate_user.user_key,
        assigned_by=principal.actor,
        status=Status.PENDING,
        delegated_from=original.id,
        delegation_chain=[*original.delegation_chain, previous_assignee],
        delegation_reason=reason,
        created_at=now,
        created_by=principal.actor,
        updated_at=now,
        updated_by=principal.actor,
    )
    return AssignmentDocument(
        **fields,
        pk=original.pk,
        tenant_id=original.tenant_id,
        originator_user_key=original.originator_user_key,
        assigned_by_user_key=principal.oid,
        delegation_chain_user_keys=[
            *original.delegation_chain_user_keys,
            *([original.assignee_user_key] if original.assignee_user_key else []),
        ],
    )


def is_same_delegation(successor: AssignmentDocument, principal: Principal, to_upn: str) -> bool:
    """Natural idempotency: this caller (by key) already delegated the original to this user."""
    return successor.assigned_by_user_key == principal.oid and (successor.assignee_email or "").lower() == to_upn


def delegate(original: AssignmentDocument, ctx: Context, request: DelegateRequest) -> Decision:
    """The assignee hands the assignment on: the original becomes `delegated` and a successor is created,
    both in one batch. The same caller asking again for the same user is answered with the successor."""
    if ctx.successor is not None and is_same_delegation(ctx.successor, ctx.principal, request.to_upn):
        return Decision.unchanged(ctx.successor)
    _guard(original, ctx, may=is_assignee(ctx.principal, original), who="the assignee")
    target = check_delegation(original, ctx.now)
    # Self-delegation and cycles are judged by key, so the directory is asked first (a UPN proves nothing).
    if not ctx.user_resolved:
        return Decision.lookup(original)
    if ctx.user is not None:
        check_delegate(original, upn=request.to_upn, user_key=ctx.user.user_key)
    if len(original.delegation_chain) + 1 > ctx.delegation_max_depth:
        raise DelegationTooDeep(f"A delegation chain may hold at most {ctx.delegation_max_depth} earlier assignees")
    if ctx.user is None:
        raise UserNotFound(f"No enabled user {request.to_upn} is in the directory")
    successor = build_successor(original, ctx.user, ctx, reason=request.reason)
    new = _next_version(original, ctx, status=target)
    new.delegated_to = successor.id
    new.delegation_reason = request.reason
    delegated = _event(
        new,
        EventType.DELEGATED,
        ctx,
        previous=original,
        successor=successor,
        from_=original.assignee_email,
        to=successor.assignee_email,
        reason=request.reason,
    )
    events = (delegated, _event(successor, EventType.CREATED, ctx))
    return Decision(shown=successor, document=new, successor=successor, created=True, events=events)


# --- the timer ----------------------------------------------------------------------------------------


def timer(document: AssignmentDocument, ctx: Context, policy: ReminderPolicy) -> Decision:
    """What the timer does to an assignment at `ctx.now`: expire it, warn of its expiry, or remind its
    assignee, as `core.timer_rules` decides from the document just read; otherwise nothing. Run as a
    conditional write, so overlapping sweeps and a sweep racing a user's write act once."""
    action = due_action(document, policy, ctx.now)
    if action is None:
        return Decision.unchanged(document)
    operation = Operation.EXPIRE if action is Action.EXPIRE else Operation.REMIND
    new = _next_version(document, ctx, status=next_status(document, operation), actor=SYSTEM_ACTOR)
    if action is Action.EXPIRE:
        return _changed(new, _event(new, EventType.EXPIRED, ctx, actor=SYSTEM_ACTOR))
    if action is Action.WARN:
        # An internal marker: the one warning does not count as a reminder.
        new.expiry_warned_at = ctx.now
        return _changed(new, _event(new, EventType.EXPIRING, ctx, actor=SYSTEM_ACTOR))
    new.reminders_sent += 1
    new.last_reminder_at = ctx.now
    return _changed(new, _event(new, EventType.REMINDER, ctx, actor=SYSTEM_ACTOR))
