"""Use case: an assignment's history (docs/api-rules.md, "Lists, views and history"): its events, oldest
first, read from the event documents beside it, so it is complete whatever the change feed delivered."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.models import PageQuery
from core.rules import check_readable
from core.services.paging import decode_token, encode_token, fingerprint_of
from core.services.pipeline import Command, Deps, load, parse_model


def get_history(command: Command, params: Mapping[str, str], deps: Deps) -> dict[str, Any]:
    """Everyone who may read the assignment may read its history. A point read, then one single-partition
    query a page."""
    query = parse_model(PageQuery, dict(params))
    document = load(deps, command.principal, command.assignment_id)
    check_readable(command.principal, document)
    fingerprint = fingerprint_of({"history": document.id, "pageSize": query.page_size}, command.principal)
    events, token = deps.store.history_page(
        document.tenant_id,
        document.id,
        page_size=query.page_size,
        continuation_token=decode_token(query.continuation_token, fingerprint),
    )
    return {"items": [event.history_item() for event in events], "continuationToken": encode_token(token, fingerprint)}
