"""Pydantic models, split by role.

- `CreateRequest`: what a caller may send to create an assignment (unknown and server-owned fields
  are refused).
- `Assignment`: the public model, every field always present, camelCase as in the seed.
- `AssignmentDocument`: what is stored in Cosmos: the public fields plus internal ones (`pk`, the tenant,
  `version`, the event sequence, the user keys of originator, assigner and chain) that never leave the service.
- Request models, one per body a route takes, all named `…Request` (plus `ListQuery` for a query string).
- `IdempotencyRecord`: a remembered answer, stored beside the assignment, never inside it.

The public representation is produced in one place: `AssignmentDocument.public_json()` (`to_public()`, the
same fields validated as the public model, is what tests check it against). The API rules these models
enforce are written down in docs/api-rules.md.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    StringConstraints,
    model_validator,
)
from pydantic.alias_generators import to_camel

from core.hygiene import (
    FreeText,
    Identifier,
    JsonObject,
    TargetId,
    Timestamp,
    TimestampInput,
    Upn,
    format_timestamp,
)

__all__ = ["Timestamp", "TimestampInput", "Upn", "format_timestamp"]

DOC_TYPE_ASSIGNMENT = "assignment"
DOC_TYPE_IDEMPOTENCY = "idempotencyRecord"
MAX_REASON_LENGTH = 2000


class TargetType(StrEnum):
    CHAT = "chat"
    DOCUMENT = "document"
    SURVEY = "survey"


class CompletionCriteria(StrEnum):
    CHAT_VISITED = "chat_visited"
    CHAT_ENGAGED = "chat_engaged"
    FLOW_STARTED = "flow_started"
    FLOW_COMPLETED = "flow_completed"
    FLOW_PASSED = "flow_passed"
    MANUAL = "manual"


class Status(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    DELEGATED = "delegated"


ROOT_ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
# Literal segments the API serves under /assignments/ can never be assignment ids.
RESERVED_IDS = frozenset({"summary"})


def _not_reserved(value: str) -> str:
    if value in RESERVED_IDS:
        raise ValueError(f"{value!r} is reserved: the API serves /assignments/{value}")
    return value


AssignmentId = Annotated[str, StringConstraints(pattern=rf"^{ROOT_ID_PATTERN}$"), AfterValidator(_not_reserved)]
# Short free text (titles, names, versions) and long free text (messages, reasons, notes).
ShortText = Annotated[str, FreeText(512, min_length=1)]
LongText = Annotated[str, FreeText(MAX_REASON_LENGTH)]
# Opaque keys and labels: `taskKey`, candidate groups, `scheduleId`, `chatLogId`.
Label = Annotated[str, Identifier(128)]
# The bounds refuse NaN and the infinities too: no comparison with NaN holds.
Score = Annotated[float, Strict(), Field(ge=0, le=100)]
# At most the attempts an assignment can keep (ATTEMPTS_LIMIT's ceiling), so the largest possible document
# stays under Cosmos DB's 2 MB item limit (tests/core/test_models.py builds it).
MAX_ATTEMPTS = 100
AttemptCount = Annotated[StrictInt, Field(ge=1, le=MAX_ATTEMPTS)]


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, use_enum_values=True)


class RequestModel(CamelModel):
    """A request body: camelCase names only, nothing unknown, no coercion of booleans or numbers."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, validate_by_name=False, validate_by_alias=True)


class Attempt(CamelModel):
    started_at: Timestamp | None = None
    chat_log_id: str | None = None
    completed_at: Timestamp | None = None
    score: float | None = None
    outcome_data: dict[str, Any] | None = None
    note: str | None = None


class CreateRequest(RequestModel):
    """The body of `POST /assignments`."""

    id: AssignmentId | None = None
    target_type: TargetType
    target_id: TargetId
    assignee_email: Upn | None = None
    originator_email: Upn | None = None
    completion_criteria: CompletionCriteria
    target_version: ShortText | None = None
    target_title: ShortText | None = None
    originator_name: ShortText | None = None
    originator_message: LongText | None = None
    due_at: TimestampInput | None = None
    expires_at: TimestampInput | None = None
    max_attempts: AttemptCount | None = None
    allow_rejection: StrictBool = False
    allow_delegation: StrictBool = True
    pass_score: Score | None = None
    task_key: Label | None = None
    candidate_groups: Annotated[list[Label], Field(max_length=100)] = Field(default_factory=list)
    schedule_id: Label | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CreateRequest:
        check_schedule_and_score(self.due_at, self.expires_at, self.completion_criteria, self.pass_score)
        if self.task_key is None:
            if self.assignee_email is None:
                raise ValueError("assigneeEmail is required unless the assignment is a task (taskKey)")
            if self.candidate_groups:
                raise ValueError("candidateGroups applies only to tasks (taskKey)")
        return self


def check_schedule_and_score(
    due_at: datetime | None,
    expires_at: datetime | None,
    criterion: CompletionCriteria | str,
    pass_score: float | None,
) -> None:
    """Rules shared by create and edit, so both validate the same way."""
    if due_at is not None and expires_at is not None and expires_at < due_at:
        raise ValueError("expiresAt must not be before dueAt")
    if criterion == CompletionCriteria.FLOW_PASSED and pass_score is None:
        raise ValueError("passScore is required when completionCriteria is flow_passed")


class IdempotencyRecord(CamelModel):
    """What an `Idempotency-Key` was used for: stored as its own document in the assignment's partition,
    written in the same transactional batch as the change it answers, and expired after
    `IDEMPOTENCY_TTL_HOURS`. A replay answers with the first status and the current representation of
    `shown_id` (the assignment, or the successor a delegation created), so nothing is copied and the
    assignment never grows with the keys used on it."""

    id: str
    pk: str
    doc_type: str = DOC_TYPE_IDEMPOTENCY
    body_hash: str
    created: bool
    shown_id: str
    ttl: int


class AssignmentFields(CamelModel):
    """Every public field except the Cosmos system properties."""

    id: str
    target_type: TargetType
    target_id: str
    assignee_email: str | None = None
    assigned_by: str | None = None
    originator_email: str
    completion_criteria: CompletionCriteria
    attempts: list[Attempt] = Field(default_factory=list)
    status: Status = Status.PENDING
    delegation_chain: list[str] = Field(default_factory=list)
    target_version: str | None = None
    target_title: str | None = None
    originator_name: str | None = None
    originator_message: str | None = None
    due_at: Timestamp | None = None
    expires_at: Timestamp | None = None
    max_attempts: int | None = None
    cancelled_at: Timestamp | None = None
    cancelled_by: str | None = None
    cancellation_reason: str | None = None
    allow_rejection: bool = False
    rejected_at: Timestamp | None = None
    rejected_by: str | None = None
    rejection_reason: str | None = None
    allow_delegation: bool = True
    delegated_from: str | None = None
    delegated_to: str | None = None
    delegation_reason: str | None = None
    reassigned_from: str | None = None
    schedule_id: str | None = None
    last_reminder_at: Timestamp | None = None
    reminders_sent: int = 0
    created_at: Timestamp
    updated_at: Timestamp
    created_by: str
    updated_by: str
    task_key: str | None = None
    candidate_groups: list[str] = Field(default_factory=list)
    assignee_user_key: str | None = None
    pass_score: float | None = None

    @property
    def is_task(self) -> bool:
        return bool(self.task_key)

    @property
    def is_unassigned(self) -> bool:
        return self.assignee_email is None and self.assignee_user_key is None


class Assignment(AssignmentFields):
    """The public model: exactly what callers see."""

    ts: int | None = Field(default=None, alias="_ts")
    etag: str | None = Field(default=None, alias="_etag")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


_PUBLIC_FIELDS = set(Assignment.model_fields)


class AssignmentDocument(AssignmentFields):
    """The stored document. Cosmos adds `_rid`, `_self`, `_attachments`; they are ignored."""

    model_config = ConfigDict(extra="ignore")

    pk: str
    tenant_id: str
    doc_type: str = DOC_TYPE_ASSIGNMENT
    # Rights follow user keys (the Entra `oid`), never the UPNs shown in the public fields.
    originator_user_key: str
    assigned_by_user_key: str | None = None
    delegation_chain_user_keys: list[str] = Field(default_factory=list)
    # Grows by one on every write, so projections can order versions and ignore stale redeliveries.
    version: int = 1
    # The sequence number of the last event this assignment emitted (its events are documents beside it).
    event_sequence: int = 0
    # When the timer sent the one expiry warning (`expiring`); it does not count as a reminder.
    expiry_warned_at: Timestamp | None = None
    # The Idempotency-Key claim (hashed) that created this document, so a retried create knows its own.
    created_with_key: str | None = None
    ts: int | None = Field(default=None, alias="_ts")
    etag: str | None = Field(default=None, alias="_etag")

    def to_public(self) -> Assignment:
        return Assignment.model_validate(self.model_dump(include=_PUBLIC_FIELDS))

    def public_json(self) -> dict[str, Any]:
        """The public representation in one pass: the stored document, validated once when it was read,
        dumped with only the public fields (the same JSON as `to_public().to_json()`, without re-validating)."""
        return self.model_dump(mode="json", by_alias=True, include=_PUBLIC_FIELDS)

    def to_cosmos(self) -> dict[str, Any]:
        """The JSON body to write; system properties are Cosmos's to set. It is validated as the read side
        will read it, so nothing that could not be read back is ever stored (a bug here is a 500 that
        writes nothing, never a poisoned document)."""
        return self.to_cosmos_and_back()[0]

    def to_cosmos_and_back(self) -> tuple[dict[str, Any], AssignmentDocument]:
        """`to_cosmos`, and the document that validating it gave: the body as a read will give it back,
        but for the system properties. A write answers with it, instead of validating Cosmos's echo of
        the same body a second time."""
        body = self.model_dump(mode="json", by_alias=True, exclude={"ts", "etag"})
        return body, AssignmentDocument.model_validate(body)


# What a deep copy may share with its original: values nothing can change in place.
_IMMUTABLE_TYPES = frozenset({str, int, float, bool, type(None), datetime})


def deep_copy(value: Any) -> Any:
    """`copy.deepcopy` of a document or any of its values, sharing the immutable ones.

    Lists, dicts and models are copied all the way down, as `model_copy(deep=True)` copies them; strings,
    numbers and timestamps, which nothing can change in place, are shared instead of copied. Copying them
    is most of what `model_copy(deep=True)` costs (each datetime goes through `__reduce_ex__`): this is
    3-4 times faster. Anything else, and a model with extra or private attributes, goes to `copy.deepcopy`.
    """
    kind = type(value)
    if kind in _IMMUTABLE_TYPES:
        return value
    if kind is list:
        return [deep_copy(item) for item in value]
    if kind is dict:
        return {key: deep_copy(item) for key, item in value.items()}
    if isinstance(value, BaseModel) and not value.__pydantic_extra__ and not value.__pydantic_private__:
        copied = value.model_copy()
        for name, field_value in value.__dict__.items():
            if type(field_value) not in _IMMUTABLE_TYPES:
                copied.__dict__[name] = deep_copy(field_value)
        return copied
    return copy.deepcopy(value)


def root_id_of(assignment_id: str) -> str:
    """A successor `{rootId}.{n}` belongs to its root."""
    return assignment_id.split(".", 1)[0]


def partition_key_of(tenant_id: str, assignment_id: str) -> str:
    """The tenant and the root id: an assignment and its delegated successors share a partition, so a
    delegation is one transactional batch, and no partition (hence no id) is shared across tenants."""
    return f"{tenant_id}:{root_id_of(assignment_id)}"


# --- lifecycle requests --------------------------------------------------------------------------------


class EventType(StrEnum):
    VISITED = "visited"
    ENGAGED = "engaged"
    FLOW_STARTED = "flow_started"
    FLOW_COMPLETED = "flow_completed"


class EventRequest(RequestModel):
    """The body of `POST /assignments/{id}/events`. `occurredAt` supplies the attempt's timestamps."""

    event_id: Annotated[str, Identifier(128)]
    type: EventType
    occurred_at: TimestampInput
    chat_log_id: Label | None = None
    score: Score | None = None
    outcome_data: JsonObject | None = None
    note: LongText | None = None

    @model_validator(mode="after")
    def _outcome_only_when_completed(self) -> EventRequest:
        # Only `flow_completed` closes an attempt with an outcome; elsewhere these would be silently lost.
        if self.type != EventType.FLOW_COMPLETED and (
            self.score is not None or self.outcome_data is not None or self.note is not None
        ):
            raise ValueError("score, outcomeData and note are allowed only on flow_completed events")
        return self


class CompleteRequest(RequestModel):
    """The body of `POST /assignments/{id}/complete`: none, or `{}`."""


class ReasonRequest(RequestModel):
    """A body that carries only an optional `reason`."""

    reason: LongText | None = None


class RejectRequest(ReasonRequest):
    """The body of `POST /assignments/{id}/reject`."""


class CancelRequest(ReasonRequest):
    """The body of `POST /assignments/{id}/cancel`."""


class ReassignRequest(ReasonRequest):
    """The body of `POST /assignments/{id}/reassign`."""

    to_upn: Upn


class PatchRequest(RequestModel):
    """The merge-patch body of `PATCH /assignments/{id}`: the fields present are changed, `null` clears one."""

    due_at: TimestampInput | None = None
    expires_at: TimestampInput | None = None
    originator_message: LongText | None = None
    target_title: ShortText | None = None
    max_attempts: AttemptCount | None = None
    pass_score: Score | None = None

    def changes(self) -> dict[str, Any]:
        """The fields the patch names, by attribute name; absent fields are not changes."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class ListOrder(StrEnum):
    CREATED_AT = "createdAt"
    DUE_AT = "dueAt"


def _query_bool(value: object) -> object:
    # A query string says `true` or `false`; anything else (1, yes, on) is a mistake worth hearing about.
    if value in ("true", "false"):
        return value == "true"
    if isinstance(value, bool):
        return value
    raise ValueError("must be true or false")


StrictQueryBool = Annotated[bool, BeforeValidator(_query_bool)]


class ListRole(StrEnum):
    ASSIGNEE = "assignee"
    ORIGINATOR = "originator"
    CANDIDATE = "candidate"


def _comma_separated(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class PageQuery(CamelModel):
    """A page of a list: `pageSize` 1-100 (default 50), and the token of the page before."""

    model_config = ConfigDict(extra="forbid", validate_by_name=False, validate_by_alias=True)

    page_size: Annotated[int, Field(ge=1, le=100)] = 50
    continuation_token: Annotated[str, StringConstraints(min_length=1, max_length=8192)] | None = None


class ListQuery(CamelModel):
    """The query string of `GET /assignments`. `status` is one status or a comma-separated list. Query
    values are strings, so numbers are parsed from them, but never a Unix time for `dueBefore`."""

    model_config = ConfigDict(extra="forbid", validate_by_name=False, validate_by_alias=True)

    role: ListRole = ListRole.ASSIGNEE
    status: Annotated[list[Status], BeforeValidator(_comma_separated)] = Field(default_factory=list)
    due_before: TimestampInput | None = None
    # Active assignments whose due date is before the request's time; with a terminal status, nothing.
    overdue: StrictQueryBool = False
    order_by: ListOrder = ListOrder.CREATED_AT
    page_size: Annotated[int, Field(ge=1, le=100)] = 50
    continuation_token: Annotated[str, StringConstraints(min_length=1, max_length=8192)] | None = None


class SummaryQuery(CamelModel):
    """The query string of `GET /assignments/summary`."""

    model_config = ConfigDict(extra="forbid", validate_by_name=False, validate_by_alias=True)

    role: ListRole = ListRole.ASSIGNEE


class RosterQuery(CamelModel):
    """The query string of `GET /targets/{targetType}/{targetId}/assignments` (and of its summary, which
    takes only `status` and `overdue`)."""

    model_config = ConfigDict(extra="forbid", validate_by_name=False, validate_by_alias=True)

    status: Annotated[list[Status], BeforeValidator(_comma_separated)] = Field(default_factory=list)
    overdue: StrictQueryBool = False
    order_by: ListOrder = ListOrder.CREATED_AT
    page_size: Annotated[int, Field(ge=1, le=100)] = 50
    continuation_token: Annotated[str, StringConstraints(min_length=1, max_length=8192)] | None = None


class DelegateRequest(RequestModel):
    """The body of `POST /assignments/{id}/delegate`."""

    to_upn: Upn
    reason: LongText | None = None


class UserRequest(RequestModel):
    """The body of `PUT /users/{userKey}`."""

    upn: Upn
    display_name: Annotated[str, FreeText(256)] | None = None
    account_enabled: StrictBool = True


@dataclass(frozen=True)
class TxnAssignRequest:
    """The `params` of `POST /workspaces/secure/api/v1/txn/assign` (docs/api-rules.md, "The txn routes"),
    parsed by the seed's rules (`core.services.txn.parse_assign_request`), which pydantic's error order
    cannot express."""

    submit_key: str
    user_key: str


@dataclass(frozen=True)
class TxnUnassignRequest:
    """The `params` of `POST /workspaces/secure/api/v1/txn/unassign`."""

    submit_key: str
