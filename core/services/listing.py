"""Use case: list the assignments a caller holds in one role, newest first, a page at a time.

The store pages by continuation token (no OFFSET: the emulator has none, and it would cost more the
deeper the page). A token is bound to the query and the caller that made it: it carries a fingerprint of
both, so it cannot continue another query or be replayed by another caller.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from core.errors import FieldError, ValidationFailed
from core.models import ListQuery, ListRole
from core.services.pipeline import Deps, parse_model
from core.store import ListFilter

if TYPE_CHECKING:
    from core.auth import Principal

_NOT_OURS = "is not a continuation token of this query"


def _fingerprint(list_filter: ListFilter, principal: Principal) -> str:
    described = {**asdict(list_filter), "caller": [principal.tid, principal.oid]}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _encode_token(store_token: str | None, fingerprint: str) -> str | None:
    """Store tokens are JSON; base64url makes them, bound to their query, safe in a query string."""
    if store_token is None:
        return None
    wrapped = json.dumps({"q": fingerprint, "t": store_token}, separators=(",", ":"))
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


def _filter_for(query: ListQuery, principal: Principal) -> ListFilter | None:
    """The caller's filter in the role, or None when the caller can hold nothing in that role."""
    role = ListRole(query.role)
    common: dict[str, Any] = {
        "tenant_id": principal.tid,
        "role": role,
        "statuses": tuple(query.status),
        "due_before": query.due_before,
    }
    if role == ListRole.CANDIDATE:
        return ListFilter(**common, groups=tuple(sorted(principal.groups))) if principal.groups else None
    # Apps are never assignees (`rules.is_assignee`).
    if role == ListRole.ASSIGNEE and principal.is_app_only:
        return None
    return ListFilter(**common, user_key=principal.oid)


def list_assignments(params: Mapping[str, str], principal: Principal, deps: Deps) -> dict[str, Any]:
    """`GET /assignments`: `{"items": [...], "continuationToken": ...}`, newest `createdAt` first."""
    query = parse_model(ListQuery, dict(params))
    list_filter = _filter_for(query, principal)
    if list_filter is None:
        return {"items": [], "continuationToken": None}
    fingerprint = _fingerprint(list_filter, principal)
    store_token = _decode_token(query.continuation_token, fingerprint)
    page = deps.store.list_page(list_filter, page_size=query.page_size, continuation_token=store_token)
    return {
        "items": [document.public_json() for document in page.items],
        "continuationToken": _encode_token(page.continuation_token, fingerprint),
    }
