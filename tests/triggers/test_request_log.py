"""One structured log line per request, carrying the trace id the response carries (the caller's W3C
`traceparent` when it sent one), the route, status, duration, assignment and caller key, never a token."""

from __future__ import annotations

import json
import logging

import pytest

from tests.support.api import ASSIGNEE, assert_problem, get, key_of, new_assignment
from tests.support.app import TEST_TENANT, FunctionCaller

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def request_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [record.request for record in caplog.records if hasattr(record, "request")]


def test_a_traceparent_is_the_trace_id_of_the_problem_the_header_and_the_log(
    app: FunctionCaller, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="assignments.http"):
        response = app.call(
            "get_assignment",
            url="/assignments/nope",
            token=app.tokens.user(ASSIGNEE),
            route_params={"id": "nope"},
            headers={"traceparent": TRACEPARENT},
        )
    problem = assert_problem(response, 404, "notFound")
    assert problem["traceId"] == TRACE
    assert response.headers["x-trace-id"] == TRACE
    (line,) = [line for line in request_lines(caplog) if line["traceId"] == TRACE]
    assert line["route"] == "GET /assignments/{id}"
    assert line["status"] == 404
    assert line["assignmentId"] == "nope"
    assert (line["tenantId"], line["userKey"]) == (TEST_TENANT, key_of(ASSIGNEE))
    assert isinstance(line["durationMs"], float)


def test_every_request_gets_one_line_and_no_token_is_logged(
    app: FunctionCaller, caplog: pytest.LogCaptureFixture
) -> None:
    created = new_assignment(app)
    token = app.tokens.user(ASSIGNEE)
    with caplog.at_level(logging.INFO, logger="assignments.http"):
        response = get(app, created["id"], token)
    assert response.status == 200
    (line,) = request_lines(caplog)
    assert line["traceId"] == response.headers["x-trace-id"]
    assert line["status"] == 200
    assert token not in caplog.text
    assert token.split(".")[1] not in json.dumps(line)
