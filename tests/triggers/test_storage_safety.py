"""Nothing a caller sends can poison or bloat a stored assignment, and the local store behaves like Cosmos DB
where clients notice (docs/api-rules.md, "Input hygiene and limits", "Requests and responses"). Through the
registered functions, against the emulator."""

from __future__ import annotations

import json
import uuid

import pytest

from core.bootstrap import Runtime
from core.settings import Settings
from tests.support.api import (
    ASSIGNEE,
    ORIGINATOR,
    act,
    assert_problem,
    create,
    get,
    new_assignment,
    new_body,
    now_iso,
    patch,
    post_event,
    put_user,
)
from tests.support.app import TEST_TENANT, FunctionCaller, InstallRuntime


def stored_size(app: FunctionCaller, assignment_id: str) -> int:
    root = assignment_id.split(".")[0]
    body = app.runtime.assignments_container.read_item(assignment_id, partition_key=f"{TEST_TENANT}:{root}")
    return len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())


class TestPoison:
    def test_a_year_before_1000_is_refused_and_the_assignment_stays_readable(self, app: FunctionCaller) -> None:
        created = new_assignment(app)
        response = patch(app, created["id"], {"dueAt": "0999-06-01T00:00:00Z"}, if_match=created["_etag"])
        assert_problem(response, 422, "validationFailed")
        event = {"eventId": uuid.uuid4().hex, "type": "visited", "occurredAt": "0999-06-01T00:00:00Z"}
        assert_problem(
            act(app, "events", created["id"], event, token=app.tokens.user(ASSIGNEE)), 422, "validationFailed"
        )
        assert get(app, created["id"], app.tokens.user(ORIGINATOR)).json() == created
        assert act(app, "cancel", created["id"]).status == 200

    @pytest.mark.parametrize("when", ["1969-12-31T23:59:59Z", "10000-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00"])
    def test_times_outside_1970_to_9999_are_422(self, app: FunctionCaller, when: str) -> None:
        assert_problem(create(app, new_body(dueAt=when)), 422, "validationFailed")

    @pytest.mark.parametrize(
        "address",
        ["grace\u200b@contoso.com", "grace\u202e@contoso.com", "gr\x00ace@contoso.com", "\uff47race@contoso.com"],
    )
    def test_invisible_and_lookalike_characters_are_not_emails(self, app: FunctionCaller, address: str) -> None:
        assert_problem(create(app, new_body(assigneeEmail=address), register=False), 422, "validationFailed")
        assert_problem(put_user(app, f"k-{uuid.uuid4().hex}", {"upn": address}), 422, "validationFailed")

    @pytest.mark.parametrize("title", ["pay \u202eeciovni", "a\x07bell", "\u2066isolated\u2069"])
    def test_bidi_overrides_and_controls_are_not_stored_in_text(self, app: FunctionCaller, title: str) -> None:
        assert_problem(create(app, new_body(targetTitle=title)), 422, "validationFailed")

    def test_free_text_keeps_line_breaks_tabs_and_emoji(self, app: FunctionCaller) -> None:
        message = "Line one\r\nline\ttwo \U0001f469\u200d\U0001f4bb"
        created = create(app, new_body(originatorMessage=message)).json()
        assert created["originatorMessage"] == message


class TestNumbers:
    @pytest.mark.parametrize(("raw", "field"), [("1e400", "outcomeData.a"), (str(2**64), "outcomeData.a")])
    def test_numbers_a_double_cannot_hold_are_422_naming_the_field(
        self, app: FunctionCaller, raw: str, field: str
    ) -> None:
        created = new_assignment(app, completionCriteria="flow_completed")
        # Written by hand: json.dumps would never produce 1e400.
        event = f'"eventId": "{uuid.uuid4().hex}", "type": "flow_completed", "occurredAt": "{now_iso()}"'
        body = f'{{{event}, "outcomeData": {{"a": {raw}}}}}'.encode()
        response = act(
            app,
            "events",
            created["id"],
            raw=body,
            token=app.tokens.user(ASSIGNEE),
            headers={"content-type": "application/json"},
        )
        problem = assert_problem(response, 422, "validationFailed")
        assert [error["field"] for error in problem["errors"]] == [field]
        assert get(app, created["id"], app.tokens.user(ORIGINATOR)).json()["attempts"] == []

    def test_the_largest_safe_integer_is_kept_exactly(self, app: FunctionCaller) -> None:
        created = new_assignment(app, completionCriteria="flow_completed")
        outcome = {"n": 2**53 - 1, "m": -(2**53 - 1), "f": 0.1}
        done = post_event(app, created["id"], "flow_completed", outcomeData=outcome)
        assert done.status == 200, done.body
        assert get(app, created["id"], app.tokens.user(ORIGINATOR)).json()["attempts"][0]["outcomeData"] == outcome


class TestGrowth:
    def test_a_thousand_maximal_events_stop_at_the_attempts_limit_and_the_originator_can_still_cancel(
        self, app: FunctionCaller
    ) -> None:
        limit = app.runtime.settings.attempts_limit
        created = new_assignment(app, completionCriteria="flow_passed", passScore=100)
        # 8 KiB of outcome and a 2,000-character non-ASCII note: the most one event may carry.
        outcome = {"answers": "x" * (8 * 1024 - 20)}
        note = "\u00e9" * 2000
        statuses: list[int] = []
        for number in range(1000):
            response = post_event(
                app,
                created["id"],
                "flow_completed",
                score=0,
                outcomeData=outcome,
                note=note,
                chatLogId=f"chat-{number}",
            )
            statuses.append(response.status)
            if response.status != 200:
                assert response.json()["code"] == "limitExceeded", response.body
        assert statuses[:limit] == [200] * limit
        assert set(statuses[limit:]) == {409}
        size = stored_size(app, created["id"])
        print(f"\nstored assignment after 1,000 maximal events: {size:,} bytes ({size / 2**20:.2f} MiB)")
        assert size < 2 * 1024 * 1024
        cancelled = act(app, "cancel", created["id"], {"reason": "enough"})
        assert cancelled.status == 200, cancelled.body
        assert cancelled.json()["status"] == "cancelled"

    def test_idempotency_keys_do_not_grow_the_assignment(self, app: FunctionCaller) -> None:
        with_keys, without = (new_assignment(app, completionCriteria="flow_completed") for _ in range(2))
        assert stored_size(app, with_keys["id"]) == stored_size(app, without["id"])
        token = app.tokens.user(ASSIGNEE)
        for _ in range(20):
            for created, headers in ((with_keys, {"Idempotency-Key": uuid.uuid4().hex}), (without, {})):
                event = {"eventId": uuid.uuid4().hex, "type": "engaged", "occurredAt": now_iso()}
                assert act(app, "events", created["id"], event, token=token, headers=headers).status == 200
        # The keys' records and the events' markers are documents beside the assignment, not inside it.
        assert stored_size(app, with_keys["id"]) == stored_size(app, without["id"])


class TestLikeCosmos:
    def test_etags_are_quoted_entity_tags_and_if_match_takes_the_rfc_form(self, app: FunctionCaller) -> None:
        created = create(app, new_body())
        etag = created.headers["etag"]
        assert etag.startswith('"')
        assert etag.endswith('"')
        assert etag == created.json()["_etag"]
        cancelled = act(app, "cancel", created.json()["id"], headers={"If-Match": etag})
        assert cancelled.status == 200, cancelled.body
        assert cancelled.headers["etag"] != etag

    def test_a_stale_rfc_entity_tag_is_412(self, app: FunctionCaller) -> None:
        created = create(app, new_body()).json()
        assert patch(app, created["id"], {"targetTitle": "New"}, if_match=created["_etag"]).status == 200
        stale = patch(app, created["id"], {"targetTitle": "Newer"}, if_match=created["_etag"])
        assert_problem(stale, 412, "preconditionFailed")

    def test_a_missing_container_is_503_not_404_or_500(
        self, app: FunctionCaller, settings: Settings, own_runtime: InstallRuntime
    ) -> None:
        runtime = Runtime(settings.model_copy(update={"cosmos_database": f"gone-{uuid.uuid4().hex[:8]}"}))
        gone = own_runtime(runtime)
        created = create(gone, new_body()).json()
        # As when an emulator restarts empty under a running app: its clients still name the containers.
        database = runtime.assignments_container.client_connection
        names = runtime.container_names
        for container in (names.assignments, names.users, names.views):
            database.DeleteContainer(f"dbs/{names.database}/colls/{container}")
        token = gone.tokens.user(ORIGINATOR)
        for response in (
            get(gone, created["id"], token),
            create(gone, new_body(), register=False),
            gone.call("list_assignments", url="/assignments", token=token, params={"role": "originator"}),
            put_user(gone, "k-gone", {"upn": "gone@contoso.com"}),
        ):
            problem = assert_problem(response, 503, "serviceUnavailable")
            assert "retry-after" in response.headers, problem
