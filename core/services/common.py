"""What every use case shares: its collaborators (`Deps`), its result (`Outcome`), body validation,
and the one read-decide-write loop that every single-document write goes through."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from core.clock import Clock, utc_now
from core.errors import (
    ConcurrencyConflict,
    FieldError,
    NotFound,
    PreconditionFailed,
    ServiceUnavailable,
    ValidationFailed,
)
from core.idempotency import IdempotentRequest, find_replay
from core.models import ROOT_ID_PATTERN, AssignmentDocument, OutboxEvent
from core.rules import begin_write, check_readable
from core.store import AssignmentStore, Marker

if TYPE_CHECKING:
    from core.auth import Principal
    from core.directory import Directory

ModelT = TypeVar("ModelT", bound=BaseModel)

# A root id, optionally followed by a successor's depth: `{rootId}.{n}`.
ASSIGNMENT_ID_PATTERN = re.compile(rf"^{ROOT_ID_PATTERN}(\.[0-9]{{1,4}})?$")
# Lost races are retried by re-reading; this many losses in a row means heavy contention.
MAX_RACE_RETRIES = 8


@dataclass(frozen=True)
class Deps:
    store: AssignmentStore
    clock: Clock = utc_now
    directory: Directory | None = None
    delegation_max_depth: int = 10


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


def emit(document: AssignmentDocument, event_type: str, now: datetime) -> None:
    """Queue an event in the document's outbox, written atomically with the change it reports."""
    document.outbox.append(
        OutboxEvent(
            event_id=f"{document.id}:{document.version}:{event_type}",
            type=event_type,
            version=document.version,
            at=now,
        )
    )


def load(deps: Deps, assignment_id: str) -> AssignmentDocument:
    if not ASSIGNMENT_ID_PATTERN.match(assignment_id):
        raise NotFound(f"Assignment {assignment_id} was not found")
    document = deps.store.read(assignment_id)
    if document is None:
        raise NotFound(f"Assignment {assignment_id} was not found")
    return document


def check_if_match(if_match: str | None, document: AssignmentDocument) -> None:
    """RFC 9110 If-Match: `*` or any listed ETag equal to the current one passes."""
    if if_match is None or if_match.strip() == "*":
        return
    if document.etag not in {tag.strip() for tag in if_match.split(",")}:
        raise PreconditionFailed("The assignment has changed since it was read (If-Match)")


Authorize = Callable[["Principal", AssignmentDocument], None]
Change = Callable[[AssignmentDocument, datetime], None]


def update_assignment(
    deps: Deps,
    *,
    assignment_id: str,
    principal: Principal,
    idempotency: IdempotentRequest | None,
    if_match: str | None,
    authorize: Authorize,
    change: Change,
    check_visible: Authorize = check_readable,
    marker: Marker | None = None,
) -> Outcome:
    """Read, check in the contract's order, change, and write conditionally on the ETag that was read.

    A lost race re-reads and re-decides from scratch, so the loser sees the winner's state and is
    refused by the same rules (e.g. `alreadyAssigned`) instead of overwriting it. A `marker` is written
    in the same transactional batch as the change.
    """
    for _ in range(MAX_RACE_RETRIES):
        document = load(deps, assignment_id)
        replay = find_replay(idempotency, document)
        if replay is not None:
            return Outcome(replay.body, created=replay.created)
        check_visible(principal, document)
        authorize(principal, document)
        check_if_match(if_match, document)
        read_etag = document.etag or ""
        now = deps.clock()
        begin_write(document, principal.actor, now)
        change(document, now)
        if idempotency is not None:
            document.remember(idempotency.record(created=False, holder=document))
        try:
            if marker is None:
                stored = deps.store.replace(document, etag=read_etag)
            else:
                stored = deps.store.replace_and_mark(document, etag=read_etag, marker=marker)
        except ConcurrencyConflict:
            continue
        return Outcome(stored.to_public().to_json())
    raise ServiceUnavailable("The assignment is being changed by many requests at once; retry", retry_after=1)
