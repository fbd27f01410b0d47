"""What every use case shares: the command it gets, its collaborators (`Deps`), its answer (`Outcome`),
request parsing, idempotency, and the one read → decide → conditional-write loop every write runs.

    read the assignment (404)          one point read
    replay an Idempotency-Key          one more point read, only with a key
    look up what the decision needs    an event's marker, a delegation's successor
    decide                             a pure operation of `core.aggregate`; when it asks for the
                                       directory user (every check before that step passed), look it
                                       up once and decide again
    write, conditional on the ETag     one replace, or one transactional batch with what goes with it

A lost race (the ETag moved) re-reads and re-decides, so the loser is judged on the winner's state.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from core.aggregate import Context, Decision
from core.clock import Clock, utc_now
from core.directory import Directory, DirectoryUser, enabled_user_by_key, enabled_user_by_upn
from core.errors import FieldError, IdempotencyKeyReused, NotFound, ValidationFailed
from core.models import ROOT_ID_PATTERN, AssignmentDocument, IdempotencyRecord, partition_key_of
from core.retry import retry_conflicts
from core.store import AssignmentStore, ViewStore

if TYPE_CHECKING:
    from core.auth import Principal

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")

MAX_IDEMPOTENCY_KEY_LENGTH = 255


# A root id, optionally followed by a successor's depth: `{rootId}.{n}`.
ASSIGNMENT_ID_PATTERN = re.compile(rf"^{ROOT_ID_PATTERN}(\.[0-9]{{1,4}})?$")


@dataclass(frozen=True)
class Command:
    """One request, as every trigger hands it to its use case."""

    principal: Principal
    body: object = None
    assignment_id: str = ""
    if_match: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Deps:
    store: AssignmentStore
    clock: Clock = utc_now
    directory: Directory | None = None
    delegation_max_depth: int = 10
    attempts_limit: int = 100
    idempotency_ttl_seconds: int = 24 * 3600
    # The change-feed views the lists read; None where a use case needs none.
    views: ViewStore | None = None


@dataclass(frozen=True)
class Outcome:
    """A use case's answer: the public assignment, and whether this request created it."""

    assignment: dict[str, Any]
    created: bool = False

    @property
    def etag(self) -> str | None:
        value = self.assignment.get("_etag")
        return str(value) if value is not None else None

    @property
    def id(self) -> str:
        return str(self.assignment["id"])


class UseCase(Protocol):
    def __call__(self, command: Command, deps: Deps) -> Outcome: ...


def parse_model(model: type[ModelT], data: object) -> ModelT:
    """Validate a request body; every failure becomes one `ValidationFailed` listing each field."""
    try:
        return model.model_validate(data)
    except PydanticValidationError as error:
        errors = []
        for item in error.errors(include_url=False):
            location = ".".join(str(part) for part in item["loc"]) or "body"
            message = "is not allowed" if item["type"] == "extra_forbidden" else item["msg"]
            if message.startswith("Value error, "):
                message = message.removeprefix("Value error, ")
            errors.append(FieldError(field=location, message=message))
        summary = "; ".join(f"{e.field}: {e.message}" for e in errors)
        raise ValidationFailed(f"The request is not valid: {summary}", errors) from None


# --- idempotency ----------------------------------------------------------------------------------------


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def body_hash(body: object) -> str:
    """Same JSON value, same hash, whatever the key order or whitespace of the request."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class IdempotentRequest:
    """An `Idempotency-Key`, scoped to the caller (tenant and user key), the route and its target."""

    key: str
    body_hash: str

    @property
    def record_id(self) -> str:
        return f"idem:{self.key}"


def idempotent_request(command: Command, route: str, *, scope: str | None = None) -> IdempotentRequest | None:
    """The request's key, scoped to the caller and the route: the route's path, which names the assignment
    (`scope` defaults to the command's assignment id; routes whose path names none pass "")."""
    key = command.idempotency_key
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise ValidationFailed(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters")
    principal = command.principal
    path = command.assignment_id if scope is None else scope
    digest = _digest(principal.tid, principal.oid, route, path, key)
    return IdempotentRequest(key=digest, body_hash=body_hash(command.body))


def check_key_reuse(record_found: bool, idempotency: IdempotentRequest | None) -> None:
    """A body that fails validation under a key used before is that key's reuse (422), as the contract
    puts replay before validation."""
    if idempotency is not None and record_found:
        raise IdempotencyKeyReused("This Idempotency-Key was already used with a different request body")


def parse_write(command: Command, deps: Deps, route: str, parse: Callable[[object], T]) -> T:
    """Parse the body of a write to one assignment; an invalid body under a used key is the key's reuse."""
    idempotency = idempotent_request(command, route)
    try:
        return parse(command.body)
    except ValidationFailed:
        if idempotency is not None and ASSIGNMENT_ID_PATTERN.match(command.assignment_id):
            pk = partition_key_of(command.principal.tid, command.assignment_id)
            check_key_reuse(deps.store.read_record(pk, idempotency.record_id) is not None, idempotency)
        raise


# --- the loop -------------------------------------------------------------------------------------------


def load(deps: Deps, principal: Principal, assignment_id: str) -> AssignmentDocument:
    """The assignment in the caller's tenant: another tenant's never exists for this caller."""
    if not ASSIGNMENT_ID_PATTERN.match(assignment_id):
        raise NotFound(f"Assignment {assignment_id} was not found")
    document = deps.store.read(principal.tid, assignment_id)
    if document is None:
        raise NotFound(f"Assignment {assignment_id} was not found")
    return document


@dataclass(frozen=True)
class Needs:
    """What a decision depends on besides the document, looked up before deciding."""

    user_by_upn: str | None = None
    user_by_key: str | None = None
    marker_id: str | None = None
    successor: bool = False


class _Lookup:
    """A directory lookup made at most once per request, even when the write is re-decided."""

    def __init__(self, deps: Deps, principal: Principal, needs: Needs) -> None:
        self._deps, self._principal, self._needs = deps, principal, needs
        self._done = False
        self._user: DirectoryUser | None = None

    def user(self) -> DirectoryUser | None:
        if not self._done:
            directory = self._deps.directory
            if directory is None:
                raise RuntimeError("This use case needs a directory, and none is configured")
            tenant = self._principal.tid
            if self._needs.user_by_upn is not None:
                self._user = enabled_user_by_upn(directory, tenant, self._needs.user_by_upn)
            else:
                assert self._needs.user_by_key is not None
                self._user = enabled_user_by_key(directory, tenant, self._needs.user_by_key)
            self._done = True
        return self._user


def _replay(deps: Deps, document: AssignmentDocument, record: IdempotencyRecord, request: IdempotentRequest) -> Outcome:
    if record.body_hash != request.body_hash:
        raise IdempotencyKeyReused("This Idempotency-Key was already used with a different request body")
    shown = document if record.shown_id == document.id else deps.store.read(document.tenant_id, record.shown_id)
    # The first status, with the current representation of what that response showed.
    return Outcome((shown or document).public_json(), created=record.created)


def run_write(
    deps: Deps,
    command: Command,
    *,
    route: str,
    operation: Callable[[AssignmentDocument, Context], Decision],
    needs: Needs = Needs(),
    key_scope: str | None = None,
) -> Outcome:
    """Read, replay, look up, decide, and write conditionally on the ETag read; re-decide on a lost race."""
    principal = command.principal
    idempotency = idempotent_request(command, route, scope=key_scope)
    lookup = _Lookup(deps, principal, needs)

    def attempt() -> Outcome:
        document = load(deps, principal, command.assignment_id)
        if idempotency is not None:
            record = deps.store.read_record(document.pk, idempotency.record_id)
            if record is not None:
                return _replay(deps, document, record, idempotency)
        successor = None
        if needs.successor and document.delegated_to:
            successor = deps.store.read(principal.tid, document.delegated_to)
        ctx = Context(
            principal=principal,
            now=deps.clock(),
            if_match=command.if_match,
            event_applied=needs.marker_id is not None and deps.store.has_marker(document, needs.marker_id),
            successor=successor,
            delegation_max_depth=deps.delegation_max_depth,
            attempts_limit=deps.attempts_limit,
        )
        decision = operation(document, ctx)
        if decision.needs_user:
            decision = operation(document, replace(ctx, user=lookup.user(), user_resolved=True))
        if not decision.writes:
            return Outcome(decision.shown.public_json(), created=False)
        record = None
        if idempotency is not None:
            record = IdempotencyRecord(
                id=idempotency.record_id,
                pk=document.pk,
                body_hash=idempotency.body_hash,
                created=decision.created,
                shown_id=decision.shown.id,
                ttl=deps.idempotency_ttl_seconds,
            )
        stored = deps.store.write(decision, etag=document.etag or "", record=record)
        return Outcome(stored.public_json(), created=decision.created)

    return retry_conflicts(attempt)
