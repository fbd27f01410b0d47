"""Use cases of the lists, all served from the change-feed views (docs/api-rules.md, "Lists, views and
history"), each one single-partition query a page:

- `GET /assignments?role=…`: what the caller holds as assignee (their inbox), sent as originator, or is
  offered as a candidate (their tenant's unassigned tasks, filtered by the token's groups);
- `GET /assignments/summary?role=…`: the caller's counts per status in that role;
- `GET /targets/{targetType}/{targetId}/assignments` and `/summary`: a target's roster, all of it for
  the tenant's admins, else the entries the caller may read.

Views reflect a write once the projector has caught up; an item's `_etag` may be older than the
assignment's. Summaries count the statuses of a list's entries: the emulator has no GROUP BY, so one
single-partition query reads the statuses (a few bytes each, 1,000 a page) and they are counted here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from core.errors import FieldError, ValidationFailed
from core.models import ListOrder, ListQuery, ListRole, RosterQuery, Status, SummaryQuery, TargetType
from core.projections import candidates_pk, inbox_pk, sent_pk, target_pk
from core.services.paging import decode_token, encode_token, fingerprint_of
from core.services.pipeline import Deps, parse_model
from core.store import ViewQuery, ViewStore

if TYPE_CHECKING:
    from datetime import datetime

    from core.auth import Principal


def _views(deps: Deps) -> ViewStore:
    if deps.views is None:
        raise RuntimeError("Lists need the views store, and none is configured")
    return deps.views


def _role_query(role: ListRole, principal: Principal) -> ViewQuery | None:
    """The view partition of the caller's list in the role, or None when the caller holds nothing there."""
    tenant = principal.tid
    if role == ListRole.CANDIDATE:
        return ViewQuery(candidates_pk(tenant), groups=tuple(sorted(principal.groups))) if principal.groups else None
    if role == ListRole.ASSIGNEE:
        # Apps are never assignees (`rules.is_assignee`).
        return None if principal.is_app_only else ViewQuery(inbox_pk(tenant, principal.oid))
    return ViewQuery(sent_pk(tenant, principal.oid))


def _filtered(
    query: ViewQuery,
    *,
    statuses: list[Status],
    overdue: bool,
    order: ListOrder,
    now: datetime,
    due_before: datetime | None = None,
) -> ViewQuery:
    return ViewQuery(
        query.pk,
        statuses=tuple(statuses),
        due_before=due_before,
        overdue_at=now if overdue else None,
        order_by_due=order == ListOrder.DUE_AT,
        groups=query.groups,
        reader=query.reader,
    )


def _page(deps: Deps, principal: Principal, query: ViewQuery, *, page_size: int, token: str | None) -> dict[str, Any]:
    # The query as the caller asked it: "overdue" is judged at each page's own time, so the fingerprint holds
    # whether it was asked, not the moment (which would make every token refuse its next page).
    described = {**asdict(query), "overdue_at": query.overdue_at is not None, "pageSize": page_size}
    fingerprint = fingerprint_of(described, principal)
    items, next_token = _views(deps).page(
        query, page_size=page_size, continuation_token=decode_token(token, fingerprint)
    )
    return {"items": items, "continuationToken": encode_token(next_token, fingerprint)}


def list_assignments(params: Mapping[str, str], principal: Principal, deps: Deps) -> dict[str, Any]:
    """`GET /assignments`: `{"items": [...], "continuationToken": ...}`, newest `createdAt` first, or soonest
    `dueAt` first (undated last, ties by id)."""
    query = parse_model(ListQuery, dict(params))
    base = _role_query(ListRole(query.role), principal)
    if base is None:
        return {"items": [], "continuationToken": None}
    view = _filtered(
        base,
        statuses=query.status,
        overdue=query.overdue,
        order=ListOrder(query.order_by),
        now=deps.clock(),
        due_before=query.due_before,
    )
    return _page(deps, principal, view, page_size=query.page_size, token=query.continuation_token)


def _counts(statuses: list[str]) -> dict[str, Any]:
    counted = Counter(statuses)
    return {"counts": {str(status): counted.get(str(status), 0) for status in Status}, "total": len(statuses)}


def summarize_assignments(params: Mapping[str, str], principal: Principal, deps: Deps) -> dict[str, Any]:
    """`GET /assignments/summary`: `{"role", "counts": {status: n}, "total"}` over the caller's list."""
    query = parse_model(SummaryQuery, dict(params))
    role = ListRole(query.role)
    base = _role_query(role, principal)
    return {"role": str(role), **_counts([] if base is None else _views(deps).statuses(base))}


def _roster_query(target_type: str, target_id: str, principal: Principal) -> ViewQuery:
    try:
        kind = TargetType(target_type)
    except ValueError:
        message = f"must be one of {', '.join(t.value for t in TargetType)}"
        raise ValidationFailed(f"targetType {message}", [FieldError("targetType", message)]) from None
    if not 1 <= len(target_id) <= 256:
        message = "must be 1 to 256 characters"
        raise ValidationFailed(f"targetId {message}", [FieldError("targetId", message)])
    pk = target_pk(principal.tid, str(kind), target_id)
    if principal.is_admin:
        return ViewQuery(pk)
    return ViewQuery(pk, reader=principal.oid, groups=tuple(sorted(principal.groups)))


def list_roster(
    target_type: str, target_id: str, params: Mapping[str, str], principal: Principal, deps: Deps
) -> dict[str, Any]:
    """`GET /targets/{targetType}/{targetId}/assignments`."""
    query = parse_model(RosterQuery, dict(params))
    view = _filtered(
        _roster_query(target_type, target_id, principal),
        statuses=query.status,
        overdue=query.overdue,
        order=ListOrder(query.order_by),
        now=deps.clock(),
    )
    return _page(deps, principal, view, page_size=query.page_size, token=query.continuation_token)


def summarize_roster(
    target_type: str, target_id: str, params: Mapping[str, str], principal: Principal, deps: Deps
) -> dict[str, Any]:
    """`GET /targets/{targetType}/{targetId}/summary`: counts per status over what the caller may see."""
    if params:
        fields = [FieldError(name, "is not allowed") for name in params]
        raise ValidationFailed("The request is not valid: this route takes no parameters", fields)
    statuses = _views(deps).statuses(_roster_query(target_type, target_id, principal))
    return {"targetType": target_type, "targetId": target_id, **_counts(statuses)}
