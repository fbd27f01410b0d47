"""The OpenAPI 3.1 document of the HTTP API, built from the pydantic models' own JSON Schema.

`OPERATIONS` describes every route the app registers: one entry per HTTP function, named as the function is
(its `operationId`), with its request model, its answers and the domain errors it can raise. The error
statuses, and the txn routes' keys and messages, come from the one error table (`triggers/http_errors.py`),
which the caller passes in, so the document cannot drift from it; `tests/triggers/test_openapi.py` checks
that the document names exactly the routes and methods `triggers.http_support.ROUTES` and the indexed
functions hold.

The security scheme depends on settings (`AUTH_AUDIENCE`, `AUTH_TENANT_ID`), so `build_document` takes
them as arguments and is called per request; only the JSON Schemas, which depend on nothing but the code,
are built once.

This module describes the HTTP surface; it serves nothing and does not import azure.functions
(`triggers/openapi.py` serves the document and the Swagger UI that renders it).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, Literal, NotRequired, Protocol

from pydantic import ConfigDict, Field, TypeAdapter, WithJsonSchema, with_config
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import core_schema
from typing_extensions import TypedDict

from core import errors as e
from core.auth import ROLE_ADMIN, ROLE_REPORT, SCOPE_READ_WRITE
from core.events import EventType
from core.hygiene import (
    MAX_TARGET_ID_LENGTH,
    MAX_UPN_LENGTH,
    FreeText,
    Identifier,
    Timestamp,
    format_timestamp,
    normalize_upn,
)
from core.models import (
    Assignment,
    CamelModel,
    CancelRequest,
    CompleteRequest,
    CreateRequest,
    DelegateRequest,
    EventRequest,
    ListQuery,
    ListRole,
    PageQuery,
    PatchRequest,
    ReassignRequest,
    RejectRequest,
    RosterQuery,
    SummaryQuery,
    TargetType,
    UserRequest,
)
from core.services.pipeline import ASSIGNMENT_ID_PATTERN, MAX_IDEMPOTENCY_KEY_LENGTH
from core.services.users import MAX_USER_KEY_LENGTH

OPENAPI_VERSION = "3.1.0"
API_VERSION = "0.1.0"  # pyproject.toml's version (tests/triggers/test_openapi.py keeps them equal)

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
MERGE_PATCH_JSON = "application/merge-patch+json"
SECURITY_SCHEME = "entra"
# The same tokens, pasted: Swagger UI's Authorize dialog takes a token got elsewhere (az, MSAL, scripts/token).
BEARER_SCHEME = "bearerToken"
LOGIN_HOST = "https://login.microsoftonline.com"

# The demo data of `scripts/run` (localhost/demo.py; a test keeps them equal), so that the examples work as
# they are in Swagger UI against a local run, and the fuzzer's examples reach real assignments.
EXAMPLE_ASSIGNMENT_ID = "demo-welcome"
EXAMPLE_TASK_ID = "demo-task"
EXAMPLE_ASSIGNEE = "grace@contoso.com"
EXAMPLE_ASSIGNEE_KEY = "2f6a7c1e-8b4d-4e0a-9c3b-5d1e7f2a0002"
EXAMPLE_DELEGATE = "alan@contoso.com"
EXAMPLE_GROUP = "7d0e4f1a-5c2b-4a8e-9f3d-6b1c2a0e9d01"
# The target of `demo-welcome` (grace's): a roster that holds something.
EXAMPLE_TARGET_TYPE = "chat"
EXAMPLE_TARGET_ID = "onboarding-chat"

# What every timestamp looks like on the way out (docs/api-rules.md, "Model"): UTC, `Z`, milliseconds.
TIMESTAMP_OUT_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"


# --- the error table, as the caller's ---------------------------------------------------------------------


class ErrorRendering(Protocol):
    """One row of `triggers.http_errors.ERROR_TABLE`, as far as the document needs it."""

    @property
    def status(self) -> int: ...
    @property
    def title(self) -> str: ...
    @property
    def txn_key(self) -> str | None: ...
    @property
    def txn_message(self) -> str | None: ...
    @property
    def txn_status(self) -> int: ...


ErrorTable = Mapping[type[BaseException], ErrorRendering]


def rendering_of(table: ErrorTable, error: type[e.DomainError]) -> ErrorRendering:
    """The table's row for an error class, looked up along its MRO as the boundary does."""
    for cls in error.__mro__:
        if cls in table:
            return table[cls]
    raise LookupError(f"{error.__name__} is not in the error table: it would be answered as a 500")


# --- response and body shapes that have no model in core.models -------------------------------------------

_FORBID = ConfigDict(extra="forbid")


@with_config(_FORBID)
class FieldProblem(TypedDict):
    field: str
    message: str


@with_config(_FORBID)
class Problem(TypedDict):
    """An error of our own routes: RFC 9457 problem details, with the machine-readable `code`
    (docs/api-rules.md, "Errors of our own routes")."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    traceId: str
    errors: NotRequired[list[FieldProblem]]
    delegatedTo: NotRequired[str]
    errorLogId: NotRequired[int]


@with_config(_FORBID)
class TxnError(TypedDict):
    """An error of the txn routes, in the seed's format (docs/api-rules.md, "The txn routes")."""

    errorKey: str
    error: str


@with_config(_FORBID)
class TxnAssignParams(TypedDict):
    submitKey: str
    userKey: str


@with_config(_FORBID)
class TxnAssignBody(TypedDict):
    """The body of `POST /workspaces/secure/api/v1/txn/assign`."""

    params: TxnAssignParams


@with_config(_FORBID)
class TxnUnassignParams(TypedDict):
    submitKey: str


@with_config(_FORBID)
class TxnUnassignBody(TypedDict):
    """The body of `POST /workspaces/secure/api/v1/txn/unassign`."""

    params: TxnUnassignParams


class AssignmentPage(CamelModel):
    """A page of a list (`GET /assignments`, a target's roster), in the order `orderBy` asks: newest
    `createdAt` first (the default) or soonest `dueAt` first; pass `continuationToken` back for the next."""

    items: list[Assignment]
    continuation_token: str | None


@with_config(_FORBID)
class SweepRequest(TypedDict):
    """The body of `POST /ops/sweep`: none, or `{}`."""


Count = Annotated[int, Field(ge=0)]


@with_config(_FORBID)
class SweepReport(TypedDict):
    """What one sweep did: assignments expired, expiry warnings and reminders sent, and the due actions left
    for the next sweep (`SWEEP_MAX_SECONDS` ran out)."""

    expired: Count
    expiring: Count
    reminded: Count
    remaining: Count


# An item of `GET /assignments/{id}/history`. Functional syntax: `from` is a Python keyword.
HistoryItem = TypedDict(
    "HistoryItem",
    {
        "eventId": str,
        # A string with the events' vocabulary, inline: `EventType` is the component of progress events' types
        # (`core.models.EventType`), and a second enum of that name would rename both.
        "type": Annotated[str, WithJsonSchema({"type": "string", "enum": [str(kind) for kind in EventType]})],
        "at": Timestamp,
        "actor": str,
        "sequence": Annotated[int, Field(ge=1)],
        "from": NotRequired[str],
        "to": NotRequired[str],
        "reason": NotRequired[str],
    },
)
HistoryItem.__doc__ = (
    "One event of an assignment: `sequence` counts 1, 2, ... per assignment; `from` and `to` (UPNs) only "
    "where the assignee changed, `reason` only where one was given."
)
with_config(_FORBID)(HistoryItem)


@with_config(_FORBID)
class HistoryPage(TypedDict):
    """A page of `GET /assignments/{id}/history`: oldest first; pass `continuationToken` back for the next."""

    items: list[HistoryItem]
    continuationToken: str | None


@with_config(_FORBID)
class StatusCounts(TypedDict):
    """How many entries have each status; every status is named, with 0 when none has it."""

    pending: Count
    in_progress: Count
    completed: Count
    failed: Count
    expired: Count
    cancelled: Count
    rejected: Count
    delegated: Count


@with_config(_FORBID)
class AssignmentSummary(TypedDict):
    """`GET /assignments/summary`: the counts of the caller's list in `role`."""

    role: ListRole
    counts: StatusCounts
    total: Count


@with_config(_FORBID)
class RosterSummary(TypedDict):
    """`GET /targets/{targetType}/{targetId}/summary`: the counts of what the caller may see of a target."""

    targetType: TargetType
    targetId: str
    counts: StatusCounts
    total: Count


@with_config(_FORBID)
class User(TypedDict):
    """A user of the Cosmos directory."""

    userKey: str
    upn: str
    displayName: str | None
    accountEnabled: bool


@with_config(_FORBID)
class DependencyHealth(TypedDict):
    status: Literal["up", "down"]
    durationMs: float
    error: NotRequired[str]


@with_config(_FORBID)
class HealthReport(TypedDict):
    status: Literal["healthy", "unhealthy"]
    dependencies: dict[str, DependencyHealth]


# --- JSON Schema from the models ---------------------------------------------------------------------------


class _SchemaGenerator(GenerateJsonSchema):
    """Pydantic's generator, plus what our own annotated types (core/hygiene.py) check but do not say:
    lengths of free text and identifiers, UPNs, and the timestamp format. Field titles are left out
    (pydantic's are the attribute names, title-cased)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def function_after_schema(self, schema: core_schema.AfterValidatorFunctionSchema) -> JsonSchemaValue:
        json_schema = super().function_after_schema(schema)
        check = schema["function"]["function"]
        if isinstance(check, FreeText | Identifier):
            json_schema = {**json_schema, "maxLength": check.max_length}
            if check.min_length:
                json_schema["minLength"] = check.min_length
        elif check is normalize_upn:
            json_schema = {
                **json_schema,
                "format": "email",
                "maxLength": MAX_UPN_LENGTH,
                "description": "A user principal name (user@contoso.com): ASCII, compared and stored lower-cased",
            }
        return json_schema

    def function_plain_schema(self, schema: core_schema.PlainValidatorFunctionSchema) -> JsonSchemaValue:
        json_schema = super().function_plain_schema(schema)
        serialization: Any = schema.get("serialization") or {}
        if serialization.get("function") is format_timestamp:
            json_schema = {
                **json_schema,
                "format": "date-time",
                "description": "RFC 3339 with a time zone (Z or an offset), years 1970 to 9999",
            }
        return json_schema

    def ser_schema(self, schema: Any) -> JsonSchemaValue | None:
        json_schema = super().ser_schema(schema)
        if json_schema is not None and schema.get("function") is format_timestamp:
            json_schema = {**json_schema, "format": "date-time", "pattern": TIMESTAMP_OUT_PATTERN}
        return json_schema


REQUEST_MODELS: tuple[type[Any], ...] = (
    CreateRequest,
    EventRequest,
    PatchRequest,
    DelegateRequest,
    ReassignRequest,
    RejectRequest,
    CancelRequest,
    CompleteRequest,
    UserRequest,
    ListQuery,
    PageQuery,
    SummaryQuery,
    RosterQuery,
    SweepRequest,
    TxnAssignBody,
    TxnUnassignBody,
)
RESPONSE_MODELS: tuple[type[Any], ...] = (
    Assignment,
    AssignmentPage,
    HistoryPage,
    AssignmentSummary,
    RosterSummary,
    SweepReport,
    User,
    HealthReport,
    Problem,
    TxnError,
)
# Answers whose every property is always present (docs/api-rules.md, "Model": unset is null or []), and
# that never carry anything else: an internal field leaking out fails the fuzzer's schema check.
_CLOSED_ANSWERS = ("Assignment", "Attempt", "AssignmentPage")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


@lru_cache(maxsize=1)
def component_schemas() -> dict[str, Any]:
    """Every model's JSON Schema, requests as they are validated and answers as they are serialized."""
    inputs: list[tuple[tuple[str, JsonSchemaMode], JsonSchemaMode, TypeAdapter[Any]]] = [
        ((model.__name__, "validation"), "validation", TypeAdapter(model)) for model in REQUEST_MODELS
    ]
    inputs += [((model.__name__, "serialization"), "serialization", TypeAdapter(model)) for model in RESPONSE_MODELS]
    _, top = TypeAdapter.json_schemas(
        inputs, by_alias=True, ref_template="#/components/schemas/{model}", schema_generator=_SchemaGenerator
    )
    schemas: dict[str, Any] = top["$defs"]
    for name in _CLOSED_ANSWERS:
        schema = schemas[name]
        schema["required"] = list(schema["properties"])
        schema["additionalProperties"] = False
        for prop in schema["properties"].values():
            prop.pop("default", None)
    return schemas


# --- operations --------------------------------------------------------------------------------------------

Family = Literal["problem", "txn"]
Access = Literal["anonymous", "user", "admin", "reporter"]

COMMON = (e.Unauthenticated, e.Forbidden, e.ServiceUnavailable)
BODY = (e.InvalidRequest, e.PayloadTooLarge, e.ValidationFailed)
ASSIGNMENT_WRITE = (
    *COMMON,
    *BODY,
    e.IdempotencyKeyReused,
    e.NotFound,
    e.PreconditionFailed,
    e.InvalidTransition,
    e.Expired,
    e.LimitExceeded,
)
TXN = (
    e.Unauthenticated,
    e.Forbidden,
    e.ServiceUnavailable,
    e.InvalidRequest,
    e.InvalidRequestAttribute,
    e.InvalidAssignAttribute,
    e.SubmitKeyNotSpecified,
    e.PayloadTooLarge,
    e.ValidationFailed,
    e.IdempotencyKeyReused,
    e.NotFound,
    e.NotVisible,
    e.PreconditionFailed,
    e.InvalidTransition,
    e.Expired,
    e.NotATask,
)


@dataclass(frozen=True)
class Answer:
    """A success status: what it carries and which headers come with it."""

    status: int
    description: str
    schema: str | None = None
    media_types: tuple[str, ...] = (JSON,)
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    function: str  # the HTTP function's name, which is also the operationId
    method: str
    path: str
    tag: str
    summary: str
    description: str
    access: Access
    answers: tuple[Answer, ...]
    errors: tuple[type[e.DomainError], ...] = ()
    family: Family = "problem"
    body: str | None = None
    body_required: bool = True
    body_types: tuple[str, ...] = (JSON,)
    body_examples: Mapping[str, Any] = field(default_factory=dict)
    parameters: tuple[str, ...] = ()  # names of `_PARAMETERS` besides the path's own, which `path` names
    query_model: str | None = None
    links: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    app_roles: tuple[str, ...] = ()  # app roles that let an app-only token in (besides what `access` says)
    host_statuses: tuple[int, ...] = ()  # answers of the Functions host itself, before any function runs


ASSIGNMENT_ANSWER = Answer(200, "The assignment, as it is now", "Assignment", headers=("ETag",))
DOCS_ASSETS = (
    "swagger-ui-bundle.js",
    "swagger-ui.css",
    "swagger-initializer.js",
    "oauth2-redirect.html",
    "oauth2-redirect.js",
    "favicon-32x32.png",
    "favicon-16x16.png",
    "LICENSE",
    "NOTICE",
    "swagger-ui-bundle.js.LICENSE.txt",
)
DOCS_ASSET_TYPES = ("application/javascript", "text/css", "text/html", "image/png", "text/plain")


def _link(target: str, description: str, *, id_from: str = "$response.body#/id", **extra: Any) -> dict[str, Any]:
    link: dict[str, Any] = {"operationId": target, "description": description}
    if target.startswith("txn_"):
        link["requestBody"] = {"params": {"submitKey": id_from}}
    else:
        link["parameters"] = {"path.id": id_from, **extra}
    return link


_IF_MATCH_FROM_ETAG = {"header.If-Match": "$response.header.ETag"}


def _lifecycle_links(subject: str) -> dict[str, Any]:
    """What one can do next with an assignment an answer carries."""
    return {
        "GetAssignment": _link("get_assignment", f"Read {subject}"),
        "EditAssignment": _link(
            "edit_assignment",
            f"Edit {subject}, conditional on its ETag",
            **{"header.If-Match": "$response.header.ETag"},
        ),
        "ReportProgress": _link("post_progress_event", f"Report progress on {subject}"),
        "CompleteAssignment": _link("complete_assignment", f"Complete {subject}"),
        "RejectAssignment": _link("reject_assignment", f"Reject {subject}"),
        "CancelAssignment": _link("cancel_assignment", f"Cancel {subject}"),
        "ReassignAssignment": _link("reassign_assignment", f"Reassign {subject}"),
        "DelegateAssignment": _link("delegate_assignment", f"Delegate {subject}"),
        "AssignTask": _link("txn_assign", f"Assign {subject}, if it is an unassigned task"),
        "UnassignTask": _link("txn_unassign", f"Hand {subject} back, if it is an assigned task"),
    }


# Reassigning and delegating name the new assignee the same way.
_TO_ALAN_EXAMPLE = {"toAlan": {"value": {"toUpn": EXAMPLE_DELEGATE, "reason": "Adam is on leave"}}}


def _action(
    action: str,
    summary: str,
    description: str,
    errors: tuple[type[e.DomainError], ...],
    *,
    answers: tuple[Answer, ...] = (ASSIGNMENT_ANSWER,),
    example_reason: str | None = None,
    **details: Any,
) -> Operation:
    """`POST /assignments/{id}/{action}`, served by `{action}_assignment` with an `{Action}Request` body: a
    user's write to one assignment, conditional on `If-Match` and safe to retry with an `Idempotency-Key`.
    An `example_reason` makes it an action whose body only gives a reason (`ReasonRequest`), and may be left out."""
    if example_reason is not None:
        details.update(body_required=False, body_examples={"reason": {"value": {"reason": example_reason}}})
    return Operation(
        f"{action}_assignment",
        "POST",
        f"/assignments/{{id}}/{action}",
        "lifecycle",
        summary,
        description,
        "user",
        answers,
        errors,
        body=f"{action.capitalize()}Request",
        parameters=("If-Match", "Idempotency-Key"),
        **details,
    )


def _txn(
    action: str, summary: str, description: str, errors: tuple[type[e.DomainError], ...], **details: Any
) -> Operation:
    """`POST /workspaces/secure/api/v1/txn/{action}`, served by `txn_{action}` with a `Txn{Action}Body`: the
    seed's task write, answered in its format, conditional on `If-Match` and safe to retry with an
    `Idempotency-Key`."""
    return Operation(
        f"txn_{action}",
        "POST",
        f"/workspaces/secure/api/v1/txn/{action}",
        "txn",
        summary,
        description,
        "user",
        (ASSIGNMENT_ANSWER,),
        (*TXN, *errors),
        family="txn",
        body=f"Txn{action.capitalize()}Body",
        parameters=("If-Match", "Idempotency-Key"),
        **details,
    )


def _view_read(
    function: str, path: str, tag: str, summary: str, description: str, answer: Answer, **details: Any
) -> Operation:
    """A GET served from a view the change feed keeps, for any user: a query it does not take is its only
    error of its own (422)."""
    return Operation(
        function, "GET", path, tag, summary, description, "user", (answer,), (*COMMON, e.ValidationFailed), **details
    )


def _list(function: str, path: str, tag: str, summary: str, description: str, query_model: str) -> Operation:
    """A list of assignments, read from a view a page at a time."""
    return _view_read(
        function,
        path,
        tag,
        summary,
        description,
        Answer(200, "A page of assignments", "AssignmentPage"),
        query_model=query_model,
        # The longest continuation tokens (8192 characters) make a request line longer than hosts take.
        host_statuses=(414,),
    )


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "create_assignment",
        "POST",
        "/assignments",
        "assignments",
        "Create an assignment",
        "The caller becomes the originator; an app-only admin names one with `originatorEmail`. The assignee "
        "(`assigneeEmail`) must be an enabled directory user. A `taskKey` makes it a task, which may have no "
        "assignee. Unknown and server-owned fields are refused.",
        "user",
        (Answer(201, "Created", "Assignment", headers=("ETag", "Location")),),
        (*COMMON, *BODY, e.IdempotencyKeyReused, e.UserNotFound, e.DuplicateId, e.LimitExceeded),
        body="CreateRequest",
        body_examples={
            "assigned": {
                "summary": "A manual assignment for a directory user",
                "value": {
                    "targetType": "document",
                    "targetId": "security-policy-2026",
                    "targetTitle": "Read the security policy",
                    "assigneeEmail": EXAMPLE_ASSIGNEE,
                    "completionCriteria": "manual",
                    "allowRejection": True,
                    "dueAt": "2030-01-31T17:00:00Z",
                },
            },
            "onBehalf": {
                "summary": "Created by an app-only admin for an originator (a user may only name themselves)",
                "value": {
                    "targetType": "chat",
                    "targetId": "onboarding-chat",
                    "assigneeEmail": EXAMPLE_ASSIGNEE,
                    "originatorEmail": EXAMPLE_ASSIGNEE,
                    "completionCriteria": "chat_visited",
                },
            },
            "task": {
                "summary": "An unassigned task its candidate group may claim",
                "value": {
                    "targetType": "survey",
                    "targetId": "quarterly-review",
                    "taskKey": "TASK-1001",
                    "candidateGroups": [EXAMPLE_GROUP],
                    "completionCriteria": "flow_passed",
                    "passScore": 80,
                    "maxAttempts": 3,
                },
            },
        },
        parameters=("Idempotency-Key",),
        links={201: _lifecycle_links("the new assignment")},
    ),
    _list(
        "list_assignments",
        "/assignments",
        "assignments",
        "List the assignments the caller holds in a role",
        "Newest `createdAt` first, or with `orderBy=dueAt` soonest `dueAt` first (no due date last, ties by id). "
        "`overdue=true` keeps the active (`pending`, `in_progress`) assignments whose `dueAt` has passed. Served "
        "from a view kept by the change feed, so it reflects a write once the view has caught up. A continuation "
        "token is bound to its query and its caller. Unknown parameters are refused.",
        "ListQuery",
    ),
    _view_read(
        "summarize_assignments",
        "/assignments/summary",
        "assignments",
        "Count the assignments the caller holds in a role, per status",
        "Every status is named, with 0 when none has it; `total` is their sum. Served from the same view as "
        "the list, so it reflects a write once the view has caught up.",
        Answer(200, "The counts", "AssignmentSummary"),
        query_model="SummaryQuery",
    ),
    Operation(
        "get_assignment",
        "GET",
        "/assignments/{id}",
        "assignments",
        "Read an assignment",
        "For its assignee, originator, `assignedBy`, members of its delegation chain, admins, and members of "
        "the `candidateGroups` of an unassigned task; anyone else gets 404.",
        "user",
        (ASSIGNMENT_ANSWER,),
        (*COMMON, e.NotFound),
        links={200: {name: link for name, link in _lifecycle_links("it").items() if name != "GetAssignment"}},
    ),
    Operation(
        "get_history",
        "GET",
        "/assignments/{id}/history",
        "assignments",
        "Read an assignment's history",
        "Its events, oldest first, complete whatever the change feed delivered: `created`, `assigned`, "
        "`delegated`, `unassigned`, `reassigned`, `started`, `attemptClosed`, `completed`, `failed`, "
        "`rejected`, `cancelled`, `edited`, `reminder`, `expiring`, `expired`. For everyone who may read the "
        "assignment; anyone else gets 404. A continuation token is bound to its assignment, page size and caller.",
        "user",
        (Answer(200, "A page of events", "HistoryPage"),),
        (*COMMON, e.ValidationFailed, e.NotFound),
        query_model="PageQuery",
        host_statuses=(414,),
    ),
    Operation(
        "edit_assignment",
        "PATCH",
        "/assignments/{id}",
        "lifecycle",
        "Edit an assignment (merge patch)",
        "Originator or admin. `dueAt`, `expiresAt`, `originatorMessage`, `targetTitle`, `maxAttempts` and "
        "`passScore`; `null` clears one. `If-Match` is required. A patch that changes nothing writes nothing "
        "and keeps the ETag.",
        "user",
        (ASSIGNMENT_ANSWER,),
        (*ASSIGNMENT_WRITE, e.PreconditionRequired),
        body="PatchRequest",
        body_types=(MERGE_PATCH_JSON, JSON),
        body_examples={
            "reschedule": {"value": {"dueAt": "2030-02-01T09:00:00+01:00", "originatorMessage": None}},
        },
        parameters=("If-Match!", "Idempotency-Key"),
    ),
    Operation(
        "post_progress_event",
        "POST",
        "/assignments/{id}/events",
        "lifecycle",
        "Report progress",
        "The assignee, an app with the role `Assignments.Report` (any assignment of its tenant), or an admin. "
        "The same `eventId` again answers 200 and changes nothing. An event for a delegated assignment is 409 "
        "`invalidTransition` with `delegatedTo`.",
        "reporter",
        (ASSIGNMENT_ANSWER,),
        ASSIGNMENT_WRITE,
        body="EventRequest",
        body_examples={
            "completed": {
                "value": {
                    "eventId": "evt-42",
                    "type": "flow_completed",
                    "occurredAt": "2026-01-01T10:15:00Z",
                    "chatLogId": "chat-7",
                    "score": 85,
                    "outcomeData": {"q1": "b"},
                },
            },
            "visited": {"value": {"eventId": "evt-1", "type": "visited", "occurredAt": "2026-01-01T10:00:00Z"}},
        },
        parameters=("If-Match", "Idempotency-Key"),
        app_roles=(ROLE_REPORT,),
    ),
    _action(
        "complete",
        "Complete a manual assignment",
        "The assignee, who attests it is done, the originator, or an admin. No body, or `{}`.",
        (*ASSIGNMENT_WRITE, e.CriteriaNotManual),
        body_required=False,
    ),
    _action(
        "reject",
        "Reject an assignment",
        "The assignee or an admin, when `allowRejection` is true.",
        (*ASSIGNMENT_WRITE, e.RejectionNotAllowed),
        example_reason="Not my area",
    ),
    _action(
        "cancel",
        "Cancel an assignment",
        "The originator or an admin.",
        ASSIGNMENT_WRITE,
        example_reason="Course withdrawn",
    ),
    _action(
        "reassign",
        "Reassign an assignment in place",
        "The originator or an admin. `toUpn` must be an enabled directory user and not the current assignee.",
        (*ASSIGNMENT_WRITE, e.UserNotFound),
        body_examples=_TO_ALAN_EXAMPLE,
    ),
    _action(
        "delegate",
        "Delegate an assignment",
        "The assignee or an admin hands it on: a successor `{rootId}.{n}` is created and the original becomes "
        "`delegated`. The same caller delegating to the same user again gets 200 with the current successor.",
        (
            *ASSIGNMENT_WRITE,
            e.AlreadyDelegated,
            e.NotAssigned,
            e.DelegationNotAllowed,
            e.SelfDelegation,
            e.DelegationCycle,
            e.DelegationTooDeep,
            e.UserNotFound,
            e.DuplicateId,
        ),
        answers=(
            Answer(201, "The successor, created", "Assignment", headers=("ETag", "Location")),
            Answer(200, "The successor this caller created earlier", "Assignment", headers=("ETag", "Location")),
        ),
        body_examples=_TO_ALAN_EXAMPLE,
        links={201: _lifecycle_links("the successor"), 200: _lifecycle_links("the successor")},
    ),
    _list(
        "list_roster",
        "/targets/{targetType}/{targetId}/assignments",
        "targets",
        "List a target's assignments (its roster)",
        "All of them for admins; for anyone else, the ones they may read. Served from a view kept by the "
        "change feed. A continuation token is bound to its query and its caller. Unknown parameters are refused.",
        "RosterQuery",
    ),
    _view_read(
        "summarize_roster",
        "/targets/{targetType}/{targetId}/summary",
        "targets",
        "Count a target's assignments per status",
        "Over what the caller may see of the roster (all of it for admins). Every status is named, with 0 "
        "when none has it. The route takes no query parameters.",
        Answer(200, "The counts", "RosterSummary"),
    ),
    Operation(
        "put_user",
        "PUT",
        "/users/{userKey}",
        "users",
        "Add or change a directory user",
        "Admins only. Writes the Cosmos directory of the caller's tenant; a UPN held by another key is 409.",
        "admin",
        (
            Answer(201, "Added", "User", headers=("Location",)),
            Answer(200, "Replaced", "User"),
        ),
        (*COMMON, *BODY, e.DuplicateUpn),
        body="UserRequest",
        body_examples={
            "grace": {"value": {"upn": EXAMPLE_ASSIGNEE, "displayName": "Grace Hopper", "accountEnabled": True}}
        },
        links={
            201: {
                "GetUser": {
                    "operationId": "get_user",
                    "parameters": {"path.userKey": "$response.body#/userKey"},
                    "description": "Read the user back",
                }
            }
        },
    ),
    Operation(
        "get_user",
        "GET",
        "/users/{userKey}",
        "users",
        "Read a directory user",
        "Admins only.",
        "admin",
        (Answer(200, "The user", "User"),),
        (*COMMON, e.ValidationFailed, e.NotFound),
    ),
    Operation(
        "run_sweep",
        "POST",
        "/ops/sweep",
        "ops",
        "Run the timer's sweep now",
        "The same sweep the timer runs every `SWEEP_SCHEDULE`, over every tenant: expiry, expiry warnings "
        'and reminders (docs/api-rules.md, "Timer: expiry and reminders"). No body, or `{}`.',
        "admin",
        (Answer(200, "What the sweep did", "SweepReport"),),
        (*COMMON, *BODY),
        body="SweepRequest",
        body_required=False,
    ),
    _txn(
        "assign",
        "Assign a task (Transact-compatible)",
        "Assigns an unassigned task (`submitKey`, the assignment's id) to a directory user (`userKey`, their "
        "Entra object id). For the originator, `assignedBy`, admins, and members of the task's "
        "`candidateGroups` while it is unassigned; anyone else gets `accessDenied`. Errors are "
        '`{errorKey, error}`, checked in the seed\'s order (docs/api-rules.md, "The txn routes").',
        (e.UserKeyNotSpecified, e.AlreadyAssigned, e.UserNotFound),
        body_examples={
            "assign": {"value": {"params": {"submitKey": EXAMPLE_TASK_ID, "userKey": EXAMPLE_ASSIGNEE_KEY}}}
        },
        links={200: {"UnassignTask": _link("txn_unassign", "Hand the task back")}},
    ),
    _txn(
        "unassign",
        "Hand a task back (Transact-compatible)",
        "For the originator, `assignedBy`, the assignee and admins. The task becomes `pending` and unassigned.",
        (e.NotAssigned,),
        body_examples={"unassign": {"value": {"params": {"submitKey": EXAMPLE_TASK_ID}}}},
        links={200: {"AssignTask": _link("txn_assign", "Assign the task again")}},
    ),
    Operation(
        "health",
        "GET",
        "/health",
        "service",
        "Health",
        "Anonymous. Asks Cosmos DB and Storage for real: 200 when both answer, 503 otherwise.",
        "anonymous",
        (
            Answer(200, "Every dependency answers", "HealthReport"),
            Answer(503, "A dependency does not answer", "HealthReport"),
        ),
    ),
    Operation(
        "openapi_document",
        "GET",
        "/openapi.json",
        "service",
        "This document",
        "Anonymous. The OAuth2 scheme names this deployment's tenant and client id (`AUTH_TENANT_ID`, "
        "`AUTH_AUDIENCE`).",
        "anonymous",
        (Answer(200, "The OpenAPI 3.1 document", "OpenApiDocument"),),
    ),
    Operation(
        "docs",
        "GET",
        "/docs",
        "service",
        "API reference (Swagger UI)",
        "Anonymous. Renders this document with the Swagger UI the app ships (static/swagger-ui).",
        "anonymous",
        (Answer(200, "The page", media_types=("text/html",)),),
    ),
    Operation(
        "docs_asset",
        "GET",
        "/docs/{asset}",
        "service",
        "A file of the API reference page",
        "Anonymous. Swagger UI's files, its licences, and the page's initializer.",
        "anonymous",
        (Answer(200, "The file", media_types=DOCS_ASSET_TYPES),),
        (e.NotFound,),
    ),
)


# --- parameters and headers --------------------------------------------------------------------------------


def _path_parameter(
    name: str, schema: dict[str, Any], description: str | None = None, **examples: str
) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": name, "in": "path", "required": True}
    if description is not None:
        parameter["description"] = description
    parameter["schema"] = schema
    if examples:
        parameter["examples"] = {label: {"value": value} for label, value in examples.items()}
    return parameter


def _header_parameter(name: str, schema: dict[str, Any], description: str, *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": required, "description": description, "schema": schema}


_IF_MATCH = "The ETag read (quoted), a list of them, or `*`; stale: 412"

_PARAMETERS: dict[str, dict[str, Any]] = {
    "id": _path_parameter(
        "id",
        {"type": "string", "pattern": ASSIGNMENT_ID_PATTERN.pattern},
        "The assignment's id: a root id, or a successor's `{rootId}.{n}`",
        demo=EXAMPLE_ASSIGNMENT_ID,
    ),
    "userKey": _path_parameter(
        "userKey",
        {"type": "string", "minLength": 1, "maxLength": MAX_USER_KEY_LENGTH},
        "The user's key: their Entra object id (`oid`), an opaque string",
        grace=EXAMPLE_ASSIGNEE_KEY,
    ),
    "targetType": _path_parameter(
        "targetType", {"type": "string", "enum": [str(kind) for kind in TargetType]}, demo=EXAMPLE_TARGET_TYPE
    ),
    "targetId": _path_parameter(
        "targetId",
        {"type": "string", "minLength": 1, "maxLength": MAX_TARGET_ID_LENGTH},
        "The target's id, as assignments name it (`targetId`), percent-encoded",
        demo=EXAMPLE_TARGET_ID,
    ),
    "asset": _path_parameter("asset", {"type": "string", "enum": list(DOCS_ASSETS)}),
    "If-Match": _header_parameter("If-Match", {"type": "string"}, _IF_MATCH),
    "If-Match!": _header_parameter("If-Match", {"type": "string"}, f"{_IF_MATCH}, missing: 428", required=True),
    "Idempotency-Key": _header_parameter(
        "Idempotency-Key",
        {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH},
        "Repeating a request with the same key and body returns the first answer; another body with the same key "
        "is 422 `idempotencyKeyReused`",
    ),
}

_HEADERS: dict[str, dict[str, Any]] = {
    "ETag": {
        "description": "The assignment's entity tag, quoted (RFC 9110)",
        "required": True,
        "schema": {"type": "string", "pattern": '^".*"$'},
    },
    "Location": {"description": "Where the resource is read", "required": True, "schema": {"type": "string"}},
    "WWW-Authenticate": {
        "description": '`Bearer`, plus `error="invalid_token"` when a token was sent',
        "required": True,
        "schema": {"type": "string", "pattern": "^Bearer"},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
}


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query value is never JSON null: `anyOf: [X, null]` becomes X (keeping the default)."""
    options = schema.get("anyOf")
    if isinstance(options, list):
        kept = [option for option in options if option != {"type": "null"}]
        if len(kept) == 1:
            rest = {key: value for key, value in schema.items() if key not in ("anyOf", "default")}
            if schema.get("default") is not None:
                rest["default"] = schema["default"]
            return {**kept[0], **rest}
    return schema


def _query_parameters(model: str, schemas: Mapping[str, Any]) -> list[dict[str, Any]]:
    source = schemas[model]
    parameters = []
    for name, prop in source["properties"].items():
        schema = _without_null(copy.deepcopy(prop))
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
        if schema.get("type") == "array":
            # One value or a comma-separated list: `status=pending,in_progress`.
            parameter.update(style="form", explode=False)
        if "description" in schema:
            parameter["description"] = schema.pop("description")
        parameters.append(parameter)
    return parameters


# --- errors ------------------------------------------------------------------------------------------------


def _problem_responses(op: Operation, table: ErrorTable) -> dict[int, dict[str, Any]]:
    """problem+json answers by status, each naming the codes this route can give with that status."""
    codes: dict[int, list[str]] = {}
    for error in op.errors:
        status = rendering_of(table, error).status
        if error.code not in codes.setdefault(status, []):
            codes[status].append(error.code)
    codes[500] = ["internalError"]
    responses: dict[int, dict[str, Any]] = {}
    for status, names in sorted(codes.items()):
        extra: dict[str, Any] = {"status": {"const": status}, "code": {"enum": names}}
        required = []
        if status == 500:
            extra["errorLogId"] = {"type": "integer"}
            required.append("errorLogId")
        schema: dict[str, Any] = {"allOf": [_ref("Problem"), {"properties": extra}]}
        if required:
            schema["allOf"][1]["required"] = required
        responses[status] = {
            "description": _STATUS_TEXT.get(status, "Error") + ": " + ", ".join(f"`{name}`" for name in names),
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
        _add_error_headers(responses[status], status)
    return responses


def _txn_responses(op: Operation, table: ErrorTable) -> dict[int, dict[str, Any]]:
    """The seed's `{errorKey, error}` answers by status; the contract's messages are fixed, so they are too."""
    keys: dict[int, dict[str, str | None]] = {}
    for error in op.errors:
        row = rendering_of(table, error)
        if row.txn_key is None:
            raise LookupError(f"{error.__name__} has no txn errorKey: the txn routes would answer it with a 500")
        keys.setdefault(row.txn_status, {})[row.txn_key] = row.txn_message
    responses: dict[int, dict[str, Any]] = {}
    for status, messages in sorted(keys.items()):
        variants = []
        for key, message in messages.items():
            error_schema: dict[str, Any] = {"type": "string"}
            if message is not None:
                error_schema = {"const": message}
            elif key in _TXN_MESSAGE_PATTERNS:
                error_schema = {"type": "string", "pattern": _TXN_MESSAGE_PATTERNS[key]}
            variants.append({"properties": {"errorKey": {"const": key}, "error": error_schema}})
        schema = {"allOf": [_ref("TxnError"), {"anyOf": variants}]}
        responses[status] = {
            "description": _STATUS_TEXT.get(status, "Error") + ": " + ", ".join(f"`{key}`" for key in messages),
            "content": {JSON: {"schema": schema}},
        }
        _add_error_headers(responses[status], status)
    responses[500] = {
        "description": "Internal error: `internalError`, with the number of the error's log entry",
        "content": {
            JSON: {
                "schema": {
                    "allOf": [
                        _ref("TxnError"),
                        {
                            "properties": {
                                "errorKey": {"const": "internalError"},
                                "error": {"type": "string", "pattern": r"^Please see Error Log ID [0-9]+$"},
                            }
                        },
                    ]
                }
            }
        },
    }
    return responses


_TXN_MESSAGE_PATTERNS = {
    "invalidRequestAttribute": "^Invalid request attribute: ",
    "invalidAssignAttribute": "^Invalid assign attribute: ",
}

_STATUS_TEXT = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    412: "Precondition failed",
    413: "Payload too large",
    422: "Unprocessable",
    428: "Precondition required",
    500: "Internal error",
    503: "Service unavailable",
}


_HOST_ANSWERS = {
    414: "URI too long: the host itself refuses a request line over its limit (8 KiB on Azure Functions, "
    "64 KiB on the local host), in its own format, before the app sees it",
}


def _add_error_headers(response: dict[str, Any], status: int) -> None:
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"$ref": "#/components/headers/WWW-Authenticate"}}
    elif status == 503:
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}


# --- security ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiIdentity:
    """Who this API is in Entra ID, from `AUTH_AUDIENCE` (a client-id GUID and/or an App ID URI)."""

    client_id: str
    app_id_uri: str

    @property
    def user_scope(self) -> str:
        return f"{self.app_id_uri}/{SCOPE_READ_WRITE}"

    @property
    def app_scope(self) -> str:
        return f"{self.app_id_uri}/.default"


def api_identity(audiences: Sequence[str]) -> ApiIdentity:
    """The client id and App ID URI the accepted audiences name. Entra's default App ID URI is
    `api://{clientId}`; when AUTH_AUDIENCE lists an `api://` URI it is the one tokens are requested for."""
    cleaned = [audience.strip().rstrip("/") for audience in audiences if audience.strip()]
    if not cleaned:
        raise ValueError("AUTH_AUDIENCE names no audience")
    uri = next((audience for audience in cleaned if audience.startswith("api://")), None)
    client_id = next((audience for audience in cleaned if not audience.startswith("api://")), None)
    if client_id is None:
        assert uri is not None
        client_id = uri.removeprefix("api://")
    return ApiIdentity(client_id=client_id, app_id_uri=uri or f"api://{client_id}")


def authority(tenant_ids: Sequence[str]) -> str:
    """The sign-in endpoint: the one allowed tenant's, or `organizations` when several are allowed."""
    tenants = [tenant.strip() for tenant in tenant_ids if tenant.strip()]
    return f"{LOGIN_HOST}/{tenants[0] if len(tenants) == 1 else 'organizations'}"


def security_scheme(identity: ApiIdentity, tenant_ids: Sequence[str]) -> dict[str, Any]:
    base = f"{authority(tenant_ids)}/oauth2/v2.0"
    user_scopes = {identity.user_scope: "Read and write assignments as the signed-in user"}
    return {
        "type": "oauth2",
        "description": (
            "Microsoft Entra ID bearer tokens (RS256), validated by the service itself: every function is "
            "anonymous to the Functions host.\n\n"
            f"- **Users** sign in for the delegated scope `{identity.user_scope}` "
            f"(`scp` holds `{SCOPE_READ_WRITE}`).\n"
            f"- **Apps** (client credentials) request `{identity.app_scope}` and act through the app roles "
            "granted to them, in `roles`:\n"
            f"  - `{ROLE_ADMIN}`: everything, in a delegated or an app-only token;\n"
            f"  - `{ROLE_REPORT}`: progress events for any assignment of its tenant (app-only tokens).\n\n"
            "A scope never makes anyone an admin. Tokens of tenants outside `AUTH_TENANT_ID` are refused."
        ),
        "flows": {
            "authorizationCode": {
                "authorizationUrl": f"{base}/authorize",
                "tokenUrl": f"{base}/token",
                "scopes": user_scopes,
            },
            "implicit": {"authorizationUrl": f"{base}/authorize", "scopes": user_scopes},
            "clientCredentials": {
                "tokenUrl": f"{base}/token",
                "scopes": {identity.app_scope: f"The app roles granted to the app: {ROLE_ADMIN}, {ROLE_REPORT}"},
            },
        },
    }


def _security(op: Operation, identity: ApiIdentity) -> list[dict[str, list[str]]]:
    if op.access == "anonymous":
        return []
    return [{SECURITY_SCHEME: [identity.user_scope]}, {SECURITY_SCHEME: [identity.app_scope]}, {BEARER_SCHEME: []}]


def _who(op: Operation) -> str:
    if op.access == "admin":
        return f"Callers: admins only (app role `{ROLE_ADMIN}`, in a delegated or app-only token)."
    roles = [ROLE_ADMIN, *op.app_roles]
    return (
        f"Callers: users with the scope `{SCOPE_READ_WRITE}`; apps with the app role "
        + " or ".join(f"`{role}`" for role in roles)
        + "."
    )


# --- the document ------------------------------------------------------------------------------------------


_PATH_PARAMETER = re.compile(r"\{([^}]+)\}")


def _operation_object(op: Operation, table: ErrorTable, identity: ApiIdentity, schemas: Mapping[str, Any]) -> Any:
    obj: dict[str, Any] = {
        "operationId": op.function,
        "tags": [op.tag],
        "summary": op.summary,
        "description": op.description if op.access == "anonymous" else f"{op.description}\n\n{_who(op)}",
        "security": _security(op, identity),
    }
    if op.access != "anonymous":
        obj["x-app-roles"] = [ROLE_ADMIN, *op.app_roles]
    names = (*_PATH_PARAMETER.findall(op.path), *op.parameters)
    parameters = [copy.deepcopy(_PARAMETERS[name]) for name in names]
    if op.query_model is not None:
        parameters += _query_parameters(op.query_model, schemas)
    if parameters:
        obj["parameters"] = parameters
    if op.body is not None:
        content: dict[str, Any] = {}
        for media_type in op.body_types:
            content[media_type] = {"schema": _ref(op.body)}
            if op.body_examples:
                content[media_type]["examples"] = copy.deepcopy(dict(op.body_examples))
        obj["requestBody"] = {"required": op.body_required, "content": content}
    responses: dict[str, Any] = {}
    for answer in op.answers:
        response: dict[str, Any] = {"description": answer.description}
        response["content"] = {
            media_type: ({"schema": _ref(answer.schema)} if answer.schema else {}) for media_type in answer.media_types
        }
        if answer.headers:
            response["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in answer.headers}
        if answer.status in op.links:
            response["links"] = copy.deepcopy(dict(op.links[answer.status]))
        responses[str(answer.status)] = response
    if op.access != "anonymous" or op.errors:
        errors = _txn_responses(op, table) if op.family == "txn" else _problem_responses(op, table)
        for status, response in errors.items():
            if str(status) in responses:
                raise ValueError(f"{op.function}: status {status} is both an answer and an error")
            responses[str(status)] = response
    elif "500" not in responses:
        responses["500"] = _problem_responses(op, table)[500]
    for status in op.host_statuses:
        responses[str(status)] = {"description": _HOST_ANSWERS[status]}
    obj["responses"] = dict(sorted(responses.items()))
    return obj


def _description(identity: ApiIdentity) -> str:
    return (
        "Hands work to people and keeps track of it: assignments that target a chat, a document or a survey, "
        "with attempts, completion criteria, due and expiry dates, rejection and a delegation chain, plus "
        "Transact-compatible task assignment.\n\n"
        "**Authentication.** Microsoft Entra ID bearer tokens: users with the delegated scope "
        f"`{identity.user_scope}`; apps with the app roles `{ROLE_ADMIN}` (everything) or `{ROLE_REPORT}` "
        "(progress events). `/health`, `/openapi.json` and `/docs` are anonymous.\n\n"
        "**Errors.** Our routes answer `application/problem+json` with a machine-readable `code`; each operation "
        'lists its codes per status. The txn routes answer the seed\'s `{"errorKey", "error"}` body. A path '
        "under `/assignments`, `/targets`, `/users`, `/ops` or `/health` that no operation serves is 404, and a "
        "served path with another method is 405 with `Allow` (problem+json; under `/workspaces`, in the seed's "
        "format).\n\n"
        "**Writes** return the new quoted `ETag`; `If-Match` is honoured on every write to one assignment (412), "
        "and required by PATCH (428). `Idempotency-Key` makes a write safe to retry.\n\n"
        "The rules are docs/api-rules.md in the repository."
    )


def build_document(table: ErrorTable, *, audiences: Sequence[str], tenant_ids: Sequence[str]) -> dict[str, Any]:
    """The whole document, for a deployment that accepts `audiences` from `tenant_ids`."""
    identity = api_identity(audiences)
    schemas = component_schemas()
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation_object(op, table, identity, schemas)
    components_schemas = copy.deepcopy(schemas)
    components_schemas["OpenApiDocument"] = {"type": "object", "required": ["openapi", "info", "paths"]}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Assignments",
            "version": API_VERSION,
            "description": _description(identity),
        },
        "tags": [
            {"name": "assignments", "description": "Create, read, list and count assignments; an assignment's history"},
            {
                "name": "lifecycle",
                "description": "Progress, completion, rejection, cancellation, reassignment, delegation and edits",
            },
            {"name": "targets", "description": "A target's roster and its counts"},
            {"name": "users", "description": "The Cosmos user directory (admins)"},
            {"name": "ops", "description": "Operations for admins: the timer's sweep on request"},
            {"name": "txn", "description": 'Transact-compatible task assignment (docs/api-rules.md, "The txn routes")'},
            {"name": "service", "description": "Health and this documentation"},
        ],
        "paths": paths,
        "components": {
            "schemas": components_schemas,
            "headers": copy.deepcopy(_HEADERS),
            "securitySchemes": {
                SECURITY_SCHEME: security_scheme(identity, tenant_ids),
                BEARER_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An Entra ID access token for this API got elsewhere, as the oauth2 scheme "
                    f"describes: `az account get-access-token --resource {identity.app_id_uri}`, MSAL, or "
                    "locally `scripts/token` and the tokens `scripts/run` prints",
                },
            },
        },
    }


def documented_routes(document: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, route template without the leading slash) for every operation of a document."""
    methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    return {
        (method.upper(), path.lstrip("/"))
        for path, item in document["paths"].items()
        for method in item
        if method in methods
    }


def iter_operations(document: Mapping[str, Any]) -> Iterable[tuple[str, str, Mapping[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation
