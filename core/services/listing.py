"""Use case: list the assignments a caller holds in one role, newest first, a page at a time.

It queries the assignments container directly (the change-feed views will take this over). The query is
always parameterized, filters on `docType`, and pages by Cosmos continuation token: the emulator has no
OFFSET, and OFFSET would cost more the deeper the page anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from core.errors import FieldError, ValidationFailed
from core.models import DOC_TYPE_ASSIGNMENT, AssignmentDocument, ListQuery, ListRole, format_timestamp
from core.services.common import Deps, parse_model

if TYPE_CHECKING:
    from core.auth import Principal

# Each role's filter restates `rules.can_read` for that role, so a page never holds what the caller may
# not read.
_ROLE_FILTERS: dict[ListRole, str] = {
    ListRole.ASSIGNEE: "(c.assigneeUserKey = @userKey OR (IS_NULL(c.assigneeUserKey) AND c.assigneeEmail = @upn))",
    ListRole.ORIGINATOR: "c.originatorEmail = @actor",
    ListRole.CANDIDATE: (
        "IS_STRING(c.taskKey) AND IS_NULL(c.assigneeEmail) AND IS_NULL(c.assigneeUserKey)"
        " AND EXISTS(SELECT VALUE g FROM g IN c.candidateGroups WHERE ARRAY_CONTAINS(@groups, g))"
    ),
}


_NOT_OURS = "is not a continuation token of this query"


def _fingerprint(sql: str, parameters: Mapping[str, object]) -> str:
    """A token continues one query for one caller: the query text with the caller's own parameters."""
    return hashlib.sha256(json.dumps([sql, parameters], sort_keys=True).encode()).hexdigest()[:32]


def _encode_token(cosmos_token: str | None, fingerprint: str) -> str | None:
    """Cosmos tokens are JSON; base64url makes them, bound to their query, safe in a query string."""
    if cosmos_token is None:
        return None
    wrapped = json.dumps({"q": fingerprint, "t": cosmos_token}, separators=(",", ":"))
    return base64.urlsafe_b64encode(wrapped.encode()).decode("ascii")


def _decode_token(token: str | None, fingerprint: str) -> str | None:
    if token is None:
        return None
    try:
        wrapped = json.loads(base64.urlsafe_b64decode(token.encode("ascii")).decode())
    except (ValueError, binascii.Error, UnicodeError):
        wrapped = None
    if not isinstance(wrapped, dict) or wrapped.get("q") != fingerprint or not isinstance(wrapped.get("t"), str):
        raise ValidationFailed(f"continuationToken {_NOT_OURS}", [FieldError("continuationToken", _NOT_OURS)])
    return str(wrapped["t"])


def _role_parameters(role: ListRole, principal: Principal) -> dict[str, object] | None:
    """The role filter's parameters, or None when the caller can hold nothing in that role."""
    if role == ListRole.ASSIGNEE:
        # Apps are never assignees (`rules.is_assignee`).
        if principal.is_app_only or principal.upn is None:
            return None
        return {"@userKey": principal.oid, "@upn": principal.upn}
    if role == ListRole.ORIGINATOR:
        return {"@actor": principal.actor}
    if not principal.groups:
        return None
    return {"@groups": sorted(principal.groups)}


def list_assignments(params: Mapping[str, str], principal: Principal, deps: Deps) -> dict[str, Any]:
    """`GET /assignments`: `{"items": [...], "continuationToken": ...}`, newest `createdAt` first."""
    query = parse_model(ListQuery, dict(params))
    role = ListRole(query.role)
    role_parameters = _role_parameters(role, principal)
    if role_parameters is None:
        return {"items": [], "continuationToken": None}

    clauses = ["c.docType = @docType", _ROLE_FILTERS[role]]
    parameters: dict[str, object] = {"@docType": DOC_TYPE_ASSIGNMENT, **role_parameters}
    if query.status:
        clauses.append("ARRAY_CONTAINS(@statuses, c.status)")
        parameters["@statuses"] = [str(status) for status in query.status]
    if query.due_before is not None:
        # Stored timestamps share one fixed-width UTC format, so they compare as strings; null never matches.
        clauses.append("c.dueAt < @dueBefore")
        parameters["@dueBefore"] = format_timestamp(query.due_before)
    sql = f"SELECT * FROM c WHERE {' AND '.join(clauses)} ORDER BY c.createdAt DESC"  # noqa: S608 - fixed clauses

    fingerprint = _fingerprint(sql, parameters)
    cosmos_token = _decode_token(query.continuation_token, fingerprint)
    page = deps.store.query(sql, parameters, page_size=query.page_size, continuation_token=cosmos_token)
    return {
        "items": [AssignmentDocument.model_validate(item).to_public().to_json() for item in page.items],
        "continuationToken": _encode_token(page.continuation_token, fingerprint),
    }
