"""Use case: list the assignments a caller holds in one role, newest first, a page at a time.

The store pages by continuation token (`core.services.paging`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from core.models import ListQuery, ListRole
from core.services.paging import decode_token, encode_token, fingerprint_of
from core.services.pipeline import Deps, parse_model
from core.store import ListFilter

if TYPE_CHECKING:
    from core.auth import Principal


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
    fingerprint = fingerprint_of(asdict(list_filter), principal)
    store_token = decode_token(query.continuation_token, fingerprint)
    page = deps.store.list_page(list_filter, page_size=query.page_size, continuation_token=store_token)
    return {
        "items": [document.public_json() for document in page.items],
        "continuationToken": encode_token(page.continuation_token, fingerprint),
    }
