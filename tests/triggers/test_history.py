"""GET /assignments/{id}/history: every change leaves an event document in the change's own batch, so the
history is complete and gapless whatever the change feed delivers (docs/api-rules.md, "Lists, views and
history", "Events and notifications")."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.api import (
    ASSIGNEE,
    ORIGINATOR,
    act,
    add_user,
    assert_problem,
    delegate,
    new_assignment,
    now_iso,
    patch,
)
from tests.support.app import FunctionCaller, Response


def history(app: FunctionCaller, assignment_id: str, token: str, **params: str) -> Response:
    return app.call(
        "get_history",
        url=f"/assignments/{assignment_id}/history",
        token=token,
        route_params={"id": assignment_id},
        params=params,
    )


def all_items(app: FunctionCaller, assignment_id: str, token: str, page_size: int = 100) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params = {"pageSize": str(page_size)}
    while True:
        response = history(app, assignment_id, token, **params)
        assert response.status == 200, response.body
        body = response.json()
        items += body["items"]
        if body["continuationToken"] is None:
            return items
        params["continuationToken"] = body["continuationToken"]


def test_sixty_quick_writes_leave_a_complete_gapless_history(app: FunctionCaller) -> None:
    created = new_assignment(app, completionCriteria="manual")
    token = app.tokens.user(ASSIGNEE)
    for number in range(60):
        event = {"eventId": uuid.uuid4().hex, "type": "engaged", "occurredAt": now_iso(), "chatLogId": f"c{number}"}
        assert act(app, "events", created["id"], event, token=token).status == 200
    items = all_items(app, created["id"], app.tokens.user(ORIGINATOR), page_size=7)
    assert [item["sequence"] for item in items] == list(range(1, len(items) + 1))
    types = [item["type"] for item in items]
    # created, assigned, started, then an attempt closed by each new chat after the first.
    assert types[:3] == ["created", "assigned", "started"]
    assert types.count("attemptClosed") == 59
    assert len({item["eventId"] for item in items}) == len(items)
    assert all({"eventId", "type", "at", "actor", "sequence"} <= item.keys() for item in items)


def test_an_assignee_change_names_from_to_and_reason(app: FunctionCaller) -> None:
    created = new_assignment(app)
    _, bea = add_user(app)
    assert act(app, "reassign", created["id"], {"toUpn": bea, "reason": "Adam is away"}).status == 200
    last = all_items(app, created["id"], app.tokens.user(ORIGINATOR))[-1]
    assert last["type"] == "reassigned"
    assert (last["from"], last["to"], last["reason"]) == (ASSIGNEE, bea, "Adam is away")
    assert last["actor"] == ORIGINATOR


def test_delegation_shows_in_both_histories(app: FunctionCaller) -> None:
    created = new_assignment(app)
    _, dora = add_user(app)
    successor = delegate(app, created["id"], {"toUpn": dora, "reason": "on leave"}).json()
    original_events = all_items(app, created["id"], app.tokens.user(ORIGINATOR))
    assert original_events[-1]["type"] == "delegated"
    assert (original_events[-1]["from"], original_events[-1]["to"]) == (ASSIGNEE, dora)
    assert [item["type"] for item in all_items(app, successor["id"], app.tokens.user(dora))] == ["created"]


def test_a_refused_or_unchanged_write_leaves_no_event(app: FunctionCaller) -> None:
    created = new_assignment(app, targetTitle="Same")
    assert patch(app, created["id"], {"targetTitle": "Same"}, if_match=created["_etag"]).status == 200
    assert_problem(act(app, "reject", created["id"], token=app.tokens.user(ASSIGNEE)), 409, "rejectionNotAllowed")
    assert [item["type"] for item in all_items(app, created["id"], app.tokens.user(ORIGINATOR))] == [
        "created",
        "assigned",
    ]


def test_only_readers_read_the_history(app: FunctionCaller) -> None:
    created = new_assignment(app)
    assert_problem(history(app, created["id"], app.tokens.user("eve@contoso.com")), 404, "notFound")
    assert history(app, created["id"], app.tokens.user(ASSIGNEE)).status == 200
    assert history(app, created["id"], app.tokens.admin_app()).status == 200


def test_a_page_costs_one_read_and_one_single_partition_query(app: FunctionCaller) -> None:
    created = new_assignment(app)
    response, trips = app.round_trips_of(lambda: history(app, created["id"], app.tokens.user(ORIGINATOR)))
    assert response.status == 200
    assert trips == 2
