"""The sweep (`core.services.sweep`, docs/api-rules.md "Timer: expiry and reminders") against the emulator, on a
Runtime whose clock the test sets. Every test has a database of its own (the sweep's cursor is one document per
views container) and a notifications queue of its own.

The change feed runs in-process (`catch_up`): it files the due index and sends the notifications, from the event
documents the timer writes in the same batch as its change. A sweep right after a write may not see the write in
the due index yet; the tests catch up where a real host's projector would have run.

With D = `dueAt`, E = `expiresAt`: the policy is lead 48 h, repeat 12 h, warning 6 h, at most 3 reminders.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from core.aggregate import SYSTEM_ACTOR, Decision
from core.bootstrap import Runtime, set_runtime
from core.errors import ConcurrencyConflict
from core.models import AssignmentDocument, IdempotencyRecord
from core.projections import due_bucket, due_pk
from core.queues import MessageQueue
from core.services import sweep as sweep_module
from core.services.projection import FeedDeps
from core.services.sweep import SweepResult, sweep
from core.settings import Settings
from core.store import AssignmentStore, SweepState
from localhost.stack import IsolatedSettings, make_settings
from tests.support.api import (
    ASSIGNEE,
    ASSIGNEE_OID,
    ORIGINATOR,
    act,
    add_user,
    assert_problem,
    assign,
    catch_up,
    create,
    event_types,
    get,
    iso,
    new_body,
    new_task,
    new_user,
    patch,
    stored_doc,
    unassign,
)
from tests.support.app import FunctionCaller, InstallRuntime
from tests.support.processes import race_in_processes
from tests.support.services import RunningService
from tests.support.tokens import JwksServer

T0 = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
LEAD, REPEAT, WARNING, REMINDER_MAX = timedelta(hours=48), timedelta(hours=12), timedelta(hours=6), 3
POLICY_SETTINGS = {
    "REMINDER_LEAD_HOURS": 48,
    "REMINDER_REPEAT_HOURS": 12,
    "EXPIRY_WARNING_HOURS": 6,
    "REMINDER_MAX": REMINDER_MAX,
}


class Clock:
    """The Runtime's clock: it reads what the test set."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def to(self, moment: datetime) -> None:
        self.now = moment


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def timed_settings(
    cosmos_service: RunningService, azurite_service: RunningService, jwks_server: JwksServer
) -> Settings:
    """A database and a notifications queue of the test's own, and the policy above."""
    return make_settings(
        cosmos_service,
        azurite_service,
        jwks_server,
        NOTIFICATIONS_QUEUE=f"notify-{uuid.uuid4().hex[:12]}",
        **POLICY_SETTINGS,
    )


def start_at(app: FunctionCaller, moment: datetime) -> None:
    """The sweep's cursor at `moment`'s hour, as if sweeps had run until then (a first sweep looks back 7 days)."""
    app.runtime.views.save_sweep_state(SweepState(cursor=due_bucket(moment)))


@pytest.fixture
def timed(own_runtime: InstallRuntime, timed_settings: Settings, clock: Clock) -> FunctionCaller:
    app = own_runtime(Runtime(timed_settings, clock=clock))
    start_at(app, T0)
    return app


# --- helpers -----------------------------------------------------------------------------------------------


def run(app: FunctionCaller, **changes: Any) -> SweepResult:
    deps = app.runtime.sweep_deps()
    return sweep(dataclasses.replace(deps, **changes) if changes else deps)


def counts(result: SweepResult) -> dict[str, int]:
    return result.to_json()


def nothing() -> dict[str, int]:
    return {"expired": 0, "expiring": 0, "reminded": 0, "remaining": 0}


def did(**fields: int) -> dict[str, int]:
    return nothing() | fields


def make(app: FunctionCaller, *, due: datetime | None = None, expires: datetime | None = None, **body: Any) -> str:
    """An assignment of ORIGINATOR's for ASSIGNEE, created now (the runtime's clock) and filed in the due index."""
    fields = {"dueAt": iso(due) if due else None, "expiresAt": iso(expires) if expires else None}
    response = create(app, new_body(**{k: v for k, v in fields.items() if v is not None}, **body))
    assert response.status == 201, response.body
    catch_up(app)
    return str(response.json()["id"])


def make_task(app: FunctionCaller, *, due: datetime | None = None, expires: datetime | None = None) -> str:
    fields = {"dueAt": iso(due) if due else None, "expiresAt": iso(expires) if expires else None}
    task_id = str(new_task(app, **{k: v for k, v in fields.items() if v is not None})["id"])
    catch_up(app)
    return task_id


def due_entries(app: FunctionCaller, assignment_id: str) -> list[tuple[str, str]]:
    """Where the due index files the assignment: (bucket partition, action time) of each entry."""
    items = app.runtime.views_container.query_items(
        "SELECT c.pk, c.dueAt FROM c WHERE c.kind = 'due' AND c.assignmentId = @id",
        parameters=[{"name": "@id", "value": assignment_id}],
        enable_cross_partition_query=True,
    )
    return [(str(item["pk"]), str(item["dueAt"])) for item in items]


def filed_at(moment: datetime) -> list[tuple[str, str]]:
    return [(due_pk(due_bucket(moment)), iso(moment))]


class Notifications:
    """The notifications queue, as a consumer sees it: base64 JSON, as the Functions queue trigger reads it.
    Messages are received (hidden for an hour), not peeked (at most 32): use one of these per test."""

    def __init__(self, app: FunctionCaller) -> None:
        settings = app.runtime.settings
        assert settings.azure_web_jobs_storage is not None
        self._client = QueueClient.from_connection_string(settings.azure_web_jobs_storage, settings.notifications_queue)
        self.received: list[dict[str, Any]] = []

    def all(self) -> list[dict[str, Any]]:
        """Every message sent so far (each received once, kept here)."""
        try:
            for message in self._client.receive_messages(messages_per_page=32, visibility_timeout=3600):
                self.received.append(json.loads(base64.b64decode(message.content)))
        except ResourceNotFoundError:
            pass  # nothing was ever sent
        return self.received

    def of(self, assignment_id: str, event_type: str | None = None) -> list[dict[str, Any]]:
        return [
            m
            for m in self.all()
            if m["assignmentId"] == assignment_id and (event_type is None or m["type"] == event_type)
        ]


def event_ids(app: FunctionCaller, assignment_id: str, event_type: str) -> list[str]:
    events, _ = app.runtime.store.history_page(
        app.runtime.settings.auth_tenant_ids[0], assignment_id, page_size=100, continuation_token=None
    )
    return [event.event_id for event in events if str(event.type) == event_type]


def reader(app: FunctionCaller) -> str:
    return app.tokens.user(ORIGINATOR)


# --- reminders ---------------------------------------------------------------------------------------------


class TestReminders:
    def test_before_due_once_in_the_window(self, timed: FunctionCaller, clock: Clock) -> None:
        due = T0 + timedelta(days=5)
        assignment_id = make(timed, due=due)
        assert due_entries(timed, assignment_id) == filed_at(due - LEAD)
        clock.to(due - LEAD - timedelta(minutes=1))
        assert counts(run(timed)) == nothing()
        clock.to(due - LEAD + timedelta(minutes=1))
        assert counts(run(timed)) == did(reminded=1)
        assert counts(run(timed)) == nothing(), "the entry is still filed, but the assignment is re-judged"
        document = stored_doc(timed, assignment_id)
        assert (document.reminders_sent, document.last_reminder_at) == (1, clock.now)
        assert (document.updated_by, document.updated_at) == (SYSTEM_ACTOR, clock.now)
        catch_up(timed)
        assert due_entries(timed, assignment_id) == filed_at(due)
        clock.to(due - timedelta(seconds=1))
        assert counts(run(timed)) == nothing()
        messages = Notifications(timed).of(assignment_id, "reminder")
        assert [(m["eventId"], m["recipients"]) for m in messages] == [
            (
                event_ids(timed, assignment_id, "reminder")[0],
                [{"userKey": ASSIGNEE_OID, "upn": ASSIGNEE, "role": "assignee"}],
            )
        ]

    def test_created_inside_the_window_is_reminded_at_the_next_sweep(self, timed: FunctionCaller, clock: Clock) -> None:
        due = T0 + timedelta(hours=3)
        assignment_id = make(timed, due=due)
        assert due_entries(timed, assignment_id) == [(due_pk(due_bucket(T0)), iso(due - LEAD))]
        clock.to(T0 + timedelta(minutes=1))
        assert counts(run(timed)) == did(reminded=1)

    def test_at_due_only_one_even_when_the_before_due_one_was_missed(self, timed: FunctionCaller, clock: Clock) -> None:
        due = T0 + timedelta(days=3)
        assignment_id = make(timed, due=due)
        late = due + timedelta(hours=2)  # no sweep ran in the window before due
        clock.to(late)
        assert counts(run(timed)) == did(reminded=1)
        catch_up(timed)
        assert counts(run(timed)) == nothing()
        assert due_entries(timed, assignment_id) == filed_at(late + REPEAT)
        assert stored_doc(timed, assignment_id).reminders_sent == 1
        assert event_types(timed, assignment_id).count("reminder") == 1

    def test_at_due_after_the_before_due_one(self, timed: FunctionCaller, clock: Clock) -> None:
        due = T0 + timedelta(days=3)
        assignment_id = make(timed, due=due)
        clock.to(due - LEAD)
        assert counts(run(timed)) == did(reminded=1)
        catch_up(timed)
        clock.to(due)
        assert counts(run(timed)) == did(reminded=1)
        document = stored_doc(timed, assignment_id)
        assert (document.reminders_sent, document.last_reminder_at) == (2, due)

    def test_repeat_every_repeat_hours_after_the_last_once_due(self, timed: FunctionCaller, clock: Clock) -> None:
        due = T0 + timedelta(days=3)
        assignment_id = make(timed, due=due)
        first = due + timedelta(minutes=30)
        clock.to(first)
        assert counts(run(timed)) == did(reminded=1)
        catch_up(timed)
        clock.to(first + REPEAT - timedelta(seconds=1))
        assert counts(run(timed)) == nothing()
        clock.to(first + REPEAT)
        assert counts(run(timed)) == did(reminded=1)
        document = stored_doc(timed, assignment_id)
        assert (document.reminders_sent, document.last_reminder_at) == (2, first + REPEAT)

    def test_reminder_max_caps_them_and_the_due_index_lets_go(self, timed: FunctionCaller, clock: Clock) -> None:
        due = T0 + timedelta(days=3)
        assignment_id = make(timed, due=due)
        for moment in (due - LEAD, due, due + REPEAT, due + 2 * REPEAT, due + 3 * REPEAT):
            clock.to(moment)
            run(timed)
            catch_up(timed)
        document = stored_doc(timed, assignment_id)
        assert document.reminders_sent == REMINDER_MAX
        assert event_types(timed, assignment_id).count("reminder") == REMINDER_MAX
        assert due_entries(timed, assignment_id) == []
        clock.to(due + 10 * REPEAT)
        assert counts(run(timed)) == nothing()
        reminders = Notifications(timed).of(assignment_id, "reminder")
        assert sorted(m["eventId"] for m in reminders) == sorted(event_ids(timed, assignment_id, "reminder"))


# --- the expiry warning and expiry ---------------------------------------------------------------------------


class TestExpiryWarning:
    def test_once_to_the_assignee_and_not_a_reminder(self, timed: FunctionCaller, clock: Clock) -> None:
        expires = T0 + timedelta(days=2)
        assignment_id = make(timed, expires=expires)
        assert due_entries(timed, assignment_id) == filed_at(expires - WARNING)
        clock.to(expires - WARNING + timedelta(minutes=1))
        assert counts(run(timed)) == did(expiring=1)
        catch_up(timed)
        assert counts(run(timed)) == nothing()
        assert due_entries(timed, assignment_id) == filed_at(expires)
        document = stored_doc(timed, assignment_id)
        assert (document.reminders_sent, document.last_reminder_at) == (0, None)
        assert event_types(timed, assignment_id).count("expiring") == 1
        (message,) = Notifications(timed).of(assignment_id, "expiring")
        assert message["recipients"] == [{"userKey": ASSIGNEE_OID, "upn": ASSIGNEE, "role": "assignee"}]
        assert message["eventId"] == event_ids(timed, assignment_id, "expiring")[0]

    def test_a_new_expires_at_by_patch_gets_a_new_warning(self, timed: FunctionCaller, clock: Clock) -> None:
        expires = T0 + timedelta(days=2)
        assignment_id = make(timed, expires=expires)
        clock.to(expires - WARNING)
        assert counts(run(timed)) == did(expiring=1)
        later = expires + timedelta(days=1)
        etag = stored_doc(timed, assignment_id).etag
        assert patch(timed, assignment_id, {"expiresAt": iso(later)}, if_match=etag).status == 200
        catch_up(timed)
        assert due_entries(timed, assignment_id) == filed_at(later - WARNING)
        clock.to(later - WARNING)
        assert counts(run(timed)) == did(expiring=1)
        assert event_types(timed, assignment_id).count("expiring") == 2

    def test_warning_and_reminder_due_together_take_two_sweeps(self, timed: FunctionCaller, clock: Clock) -> None:
        expires = T0 + timedelta(days=3)
        assignment_id = make(timed, due=expires - timedelta(hours=1), expires=expires)
        clock.to(expires - timedelta(hours=2))  # the warning's window, and past the before-due reminder's start
        assert counts(run(timed)) == did(expiring=1)
        catch_up(timed)
        assert counts(run(timed)) == did(reminded=1)
        document = stored_doc(timed, assignment_id)
        assert (document.reminders_sent, document.expiry_warned_at) == (1, clock.now)


class TestExpiry:
    def test_expired_by_the_system_now_with_an_event_and_a_message_to_both(
        self, timed: FunctionCaller, clock: Clock
    ) -> None:
        expires = T0 + timedelta(hours=1)
        assignment_id = make(timed, expires=expires)
        moment = expires + timedelta(seconds=30)
        clock.to(moment)
        # One sweep: the warning was never sent, and expiry wins.
        assert counts(run(timed)) == did(expired=1)
        shown = get(timed, assignment_id, reader(timed)).json()
        assert (shown["status"], shown["updatedBy"], shown["updatedAt"]) == ("expired", "system:timer", iso(moment))
        assert event_types(timed, assignment_id)[-1] == "expired"
        assert "expiring" not in event_types(timed, assignment_id)
        catch_up(timed)
        assert due_entries(timed, assignment_id) == []
        (message,) = Notifications(timed).of(assignment_id, "expired")
        assert message["eventId"] == event_ids(timed, assignment_id, "expired")[0]
        assert [r["role"] for r in message["recipients"]] == ["assignee", "originator"]
        assert message["assignment"]["status"] == "expired"
        listed = timed.call(
            "list_assignments",
            url="/assignments",
            token=reader(timed),
            params={"role": "originator", "status": "expired"},
        )
        assert [item["id"] for item in listed.json()["items"]] == [assignment_id]

    def test_expiry_wins_over_a_reminder_in_the_same_sweep(self, timed: FunctionCaller, clock: Clock) -> None:
        assignment_id = make(timed, due=T0 + timedelta(minutes=30), expires=T0 + timedelta(hours=1))
        clock.to(T0 + timedelta(hours=1))
        assert counts(run(timed)) == did(expired=1)
        document = stored_doc(timed, assignment_id)
        assert (document.status, document.reminders_sent, document.last_reminder_at) == ("expired", 0, None)
        assert "reminder" not in event_types(timed, assignment_id)

    def test_a_timer_write_changes_the_etag_so_a_stale_if_match_is_412(
        self, timed: FunctionCaller, clock: Clock
    ) -> None:
        due = T0 + timedelta(days=3)
        assignment_id = make(timed, due=due)
        etag = stored_doc(timed, assignment_id).etag
        clock.to(due)
        assert counts(run(timed)) == did(reminded=1)
        response = patch(timed, assignment_id, {"targetTitle": "new"}, if_match=etag)
        assert_problem(response, 412, "preconditionFailed")


# --- the due index follows the assignment ---------------------------------------------------------------------


class TestDueIndex:
    def test_a_patch_of_the_due_date_moves_the_entry_once_the_feed_caught_up(
        self, timed: FunctionCaller, clock: Clock
    ) -> None:
        first, second = T0 + timedelta(days=3), T0 + timedelta(days=9)
        assignment_id = make(timed, due=first)
        assert due_entries(timed, assignment_id) == filed_at(first - LEAD)
        etag = stored_doc(timed, assignment_id).etag
        assert patch(timed, assignment_id, {"dueAt": iso(second)}, if_match=etag).status == 200
        assert due_entries(timed, assignment_id) == filed_at(first - LEAD), "a view: not before the feed ran"
        # A sweep before the feed caught up reads the stale entry and re-judges the assignment as it is now.
        clock.to(first - LEAD)
        assert counts(run(timed)) == nothing()
        catch_up(timed)
        assert due_entries(timed, assignment_id) == filed_at(second - LEAD)
        clock.to(second - LEAD)
        assert counts(run(timed)) == did(reminded=1)

    def test_a_terminal_assignment_is_left_alone_and_leaves_the_index(
        self, timed: FunctionCaller, clock: Clock
    ) -> None:
        assignment_id = make(timed, due=T0 + timedelta(hours=2), expires=T0 + timedelta(hours=3))
        assert act(timed, "cancel", assignment_id).status == 200
        before = stored_doc(timed, assignment_id)
        assert due_entries(timed, assignment_id) != [], "not caught up yet: the entry is stale"
        clock.to(T0 + timedelta(days=1))
        assert counts(run(timed)) == nothing()
        after = stored_doc(timed, assignment_id)
        assert (after.status, after.version, after.etag) == ("cancelled", before.version, before.etag)
        assert event_types(timed, assignment_id)[-1] == "cancelled"
        catch_up(timed)
        assert due_entries(timed, assignment_id) == []

    def test_an_unassigned_task_gets_no_warning_or_reminder_but_expires(
        self, timed: FunctionCaller, clock: Clock
    ) -> None:
        due, expires = T0 + timedelta(hours=5), T0 + timedelta(hours=10)
        task_id = make_task(timed, due=due, expires=expires)
        assert due_entries(timed, task_id) == filed_at(expires)
        for moment in (due - LEAD, due + timedelta(minutes=1), expires - WARNING):
            clock.to(moment)
            assert counts(run(timed)) == nothing()
        clock.to(expires)
        assert counts(run(timed)) == did(expired=1)
        catch_up(timed)
        assert event_types(timed, task_id) == ["created", "expired"]
        (message,) = Notifications(timed).of(task_id, "expired")
        assert [r["role"] for r in message["recipients"]] == ["originator"]

    def test_reassign_resets_the_reminders_for_the_new_assignee(self, timed: FunctionCaller, clock: Clock) -> None:
        due = T0 + timedelta(days=3)
        assignment_id = make(timed, due=due)
        for moment in (due - LEAD, due):
            clock.to(moment)
            assert counts(run(timed)) == did(reminded=1)
            catch_up(timed)
        user_key, upn = add_user(timed)
        assert act(timed, "reassign", assignment_id, {"toUpn": upn}).status == 200
        document = stored_doc(timed, assignment_id)
        assert (document.reminders_sent, document.last_reminder_at) == (0, None)
        catch_up(timed)
        assert due_entries(timed, assignment_id) == [(due_pk(due_bucket(clock.now)), iso(due - LEAD))]
        assert counts(run(timed)) == did(reminded=1)
        catch_up(timed)
        last = Notifications(timed).of(assignment_id, "reminder")[-1]
        assert last["recipients"] == [{"userKey": user_key, "upn": upn, "role": "assignee"}]

    def test_txn_assign_resets_the_reminders(self, timed: FunctionCaller, clock: Clock) -> None:
        due = T0 + timedelta(days=3)
        task_id = make_task(timed, due=due)
        first, second = new_user(timed), new_user(timed)
        assert assign(timed, task_id, first.user_key).status == 200
        catch_up(timed)
        clock.to(due)
        assert counts(run(timed)) == did(reminded=1)
        assert unassign(timed, task_id).status == 200
        catch_up(timed)
        assert due_entries(timed, task_id) == []
        assert counts(run(timed)) == nothing()
        assert stored_doc(timed, task_id).reminders_sent == 1, "unassign keeps them; assign resets them"
        assert assign(timed, task_id, second.user_key).status == 200
        document = stored_doc(timed, task_id)
        assert (document.reminders_sent, document.last_reminder_at) == (0, None)
        catch_up(timed)
        assert counts(run(timed)) == did(reminded=1)
        catch_up(timed)
        recipients = [m["recipients"][0]["userKey"] for m in Notifications(timed).of(task_id, "reminder")]
        assert recipients == [first.user_key, second.user_key]


# --- the cursor ---------------------------------------------------------------------------------------------


class TestCursor:
    def test_a_first_sweep_looks_back_seven_days(
        self, own_runtime: InstallRuntime, timed_settings: Settings, clock: Clock
    ) -> None:
        app = own_runtime(Runtime(timed_settings, clock=clock))  # no cursor yet
        due = T0 + timedelta(days=3)
        assignment_id = make(app, due=due)
        clock.to(due - LEAD + timedelta(days=6))
        result = run(app)
        assert (counts(result), result.buckets) == (did(reminded=1), 7 * 24 + 1)
        assert stored_doc(app, assignment_id).reminders_sent == 1

    def test_the_cursor_passes_only_empty_past_buckets(self, timed: FunctionCaller, clock: Clock) -> None:
        due = T0 + timedelta(days=3)
        make(timed, due=due)
        clock.to(due - LEAD + timedelta(hours=2, minutes=30))
        first = run(timed)
        assert counts(first) == did(reminded=1)
        # The acted-on entry is still in its bucket until the feed moves it: the cursor waits there.
        assert timed.runtime.views.read_sweep_state().cursor == due_bucket(due - LEAD)  # type: ignore[union-attr]
        catch_up(timed)
        second = run(timed)
        assert counts(second) == nothing()
        assert timed.runtime.views.read_sweep_state().cursor == due_bucket(clock.now)  # type: ignore[union-attr]
        third = run(timed)
        assert third.buckets == 1, "a later sweep starts from the cursor"

    def test_an_action_filed_into_the_hour_the_cursor_just_left_is_still_swept(
        self, timed: FunctionCaller, clock: Clock
    ) -> None:
        """The projector files a past action in the hour its clock reads; if it read 09:59:59 and wrote after a
        sweep at 10:00:01 found 09 empty and moved the cursor to 10, the entry would sit behind the cursor."""
        created = create(timed, new_body(dueAt=iso(T0 + LEAD + timedelta(minutes=30))))
        assert created.status == 201, created.body
        assignment_id = str(created.json()["id"])
        clock.to(T0 + timedelta(hours=1, seconds=1))
        assert counts(run(timed)) == nothing()  # the write is not in the due index yet: a view
        clock.to(T0 + timedelta(minutes=59, seconds=59))  # the projector's clock, read before that sweep's
        catch_up(timed)
        assert due_entries(timed, assignment_id) == [(due_pk(due_bucket(T0)), iso(T0 + timedelta(minutes=30)))]
        clock.to(T0 + timedelta(hours=1, minutes=1))
        assert counts(run(timed)) == did(reminded=1)

    def test_sweep_max_seconds_leaves_the_rest_as_remaining(self, timed: FunctionCaller, clock: Clock) -> None:
        ids = [make(timed, expires=T0 + timedelta(minutes=10 + n)) for n in range(5)]
        clock.to(T0 + timedelta(hours=1))
        ticks = iter(range(1000))
        # A monotonic clock that advances one second per reading, against a two-second budget.
        first = run(timed, max_seconds=2, monotonic=lambda: float(next(ticks)))
        assert first.expired + first.remaining == len(ids)
        assert first.remaining > 0
        second = run(timed)
        assert counts(second) == did(expired=first.remaining)
        assert all(stored_doc(timed, assignment_id).status == "expired" for assignment_id in ids)

    def test_remaining_counts_what_is_due_in_the_buckets_not_reached(
        self, timed: FunctionCaller, clock: Clock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(sweep_module, "BATCH", 2)
        # Before-due reminders filed in two hours: three at T0 (two pages), two an hour later.
        ids = [make(timed, due=T0 + LEAD + timedelta(minutes=10 + n)) for n in range(3)]
        ids += [make(timed, due=T0 + LEAD + timedelta(hours=1, minutes=10 + n)) for n in range(2)]
        assert {due_entries(timed, assignment_id)[0][0] for assignment_id in ids} == {
            due_pk(due_bucket(T0)),
            due_pk(due_bucket(T0 + timedelta(hours=1))),
        }
        clock.to(T0 + timedelta(hours=2))
        ticks = iter(range(1000))
        first = run(timed, max_seconds=2, monotonic=lambda: float(next(ticks)))  # time for one action
        assert counts(first) == did(reminded=1, remaining=4)
        second = run(timed)
        assert counts(second) == did(reminded=4)

    def test_a_bucket_with_more_due_than_a_page_is_swept_whole(
        self, timed: FunctionCaller, clock: Clock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(sweep_module, "BATCH", 2)
        ids = [make(timed, expires=T0 + timedelta(minutes=10 + n)) for n in range(5)]
        clock.to(T0 + timedelta(hours=1))
        result = run(timed)
        assert counts(result) == did(expired=5)
        assert result.read == 5
        assert all(stored_doc(timed, assignment_id).status == "expired" for assignment_id in ids)
        # Before the feed moves them, the acted-on entries are still filed: a sweep re-reads them all and acts
        # on none, however many pages they fill (no page is read twice, none is skipped).
        again = run(timed)
        assert (counts(again), again.read) == (nothing(), 5)


# --- POST /ops/sweep -----------------------------------------------------------------------------------------


def ops_sweep(app: FunctionCaller, token: str | None, *, body: bytes = b"", content_type: str | None = None) -> Any:
    headers = {"content-type": content_type} if content_type else {}
    return app.call("run_sweep", method="POST", url="/ops/sweep", token=token, body=body, headers=headers)


class TestOpsSweep:
    def test_an_admin_runs_the_sweep_and_gets_the_four_counts(self, timed: FunctionCaller, clock: Clock) -> None:
        expired = make(timed, expires=T0 + timedelta(hours=1))
        warned = make(timed, expires=T0 + timedelta(hours=4))
        reminded = make(timed, due=T0 + timedelta(hours=20))
        untouched = make(timed, due=T0 + timedelta(days=30))
        clock.to(T0 + timedelta(hours=1))
        response = ops_sweep(timed, timed.tokens.admin_app())
        assert response.status == 200, response.body
        assert response.content_type.startswith("application/json")
        body = response.json()
        assert body == {"expired": 1, "expiring": 1, "reminded": 1, "remaining": 0}
        assert all(type(value) is int for value in body.values())
        assert stored_doc(timed, expired).status == "expired"
        assert stored_doc(timed, warned).expiry_warned_at == clock.now
        assert stored_doc(timed, reminded).reminders_sent == 1
        assert stored_doc(timed, untouched).version == 1

    @pytest.mark.parametrize(
        ("body", "content_type"), [(b"", None), (b"{}", "application/json"), (b" { } ", "application/json")]
    )
    def test_no_body_or_an_empty_object(self, timed: FunctionCaller, body: bytes, content_type: str | None) -> None:
        response = ops_sweep(timed, timed.tokens.admin_app(), body=body, content_type=content_type)
        assert response.status == 200, response.body
        assert response.json() == nothing()

    def test_a_delegated_admin_may_run_it(self, timed: FunctionCaller) -> None:
        token = timed.tokens.user("boss@contoso.com", roles=("Assignments.Admin",))
        assert ops_sweep(timed, token).status == 200

    def test_a_user_or_a_reporter_app_is_403_and_nothing_is_swept(self, timed: FunctionCaller, clock: Clock) -> None:
        assignment_id = make(timed, expires=T0 + timedelta(hours=1))
        clock.to(T0 + timedelta(hours=2))
        for token in (timed.tokens.user(ORIGINATOR), timed.tokens.reporter_app()):
            assert_problem(ops_sweep(timed, token), 403, "forbidden")
        assert stored_doc(timed, assignment_id).status == "pending"

    def test_no_token_is_401(self, timed: FunctionCaller) -> None:
        assert_problem(ops_sweep(timed, None), 401, "unauthenticated")

    @pytest.mark.parametrize(
        ("body", "content_type", "status", "code"),
        [
            pytest.param(b'{"force": true}', "application/json", 422, "validationFailed", id="a-field"),
            pytest.param(b"[]", "application/json", 400, "invalidRequest", id="an-array"),
            pytest.param(b"null", "application/json", 400, "invalidRequest", id="null"),
            pytest.param(b"{", "application/json", 400, "invalidRequest", id="broken-json"),
            pytest.param(b"{}", "text/plain", 400, "invalidRequest", id="not-json"),
        ],
    )
    def test_any_other_body_is_refused_before_sweeping(
        self, timed: FunctionCaller, clock: Clock, body: bytes, content_type: str, status: int, code: str
    ) -> None:
        assignment_id = make(timed, expires=T0 + timedelta(hours=1))
        clock.to(T0 + timedelta(hours=2))
        assert_problem(ops_sweep(timed, timed.tokens.admin_app(), body=body, content_type=content_type), status, code)
        assert stored_doc(timed, assignment_id).status == "pending"

    def test_the_body_is_judged_after_the_caller(self, timed: FunctionCaller) -> None:
        response = ops_sweep(
            timed, timed.tokens.user(ORIGINATOR), body=b'{"force": true}', content_type="application/json"
        )
        assert_problem(response, 403, "forbidden")


# --- overlapping sweeps, and crashes -------------------------------------------------------------------------

SWEEPS = 4


class Crash(BaseException):
    """The process dies here: nothing in the service catches it."""


class LockstepStore:
    """The real store, except that each sweep's first read of an assignment waits until every sweep has read it:
    all decide from the same version, so all but one lose the conditional write (counted in `lost`)."""

    def __init__(self, inner: AssignmentStore, barrier: Any) -> None:
        self._inner = inner
        self._barrier = barrier
        self._seen: set[str] = set()
        self.lost = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def read(self, tenant_id: str, assignment_id: str) -> AssignmentDocument | None:
        document = self._inner.read(tenant_id, assignment_id)
        if assignment_id not in self._seen:
            self._seen.add(assignment_id)
            # A sweep that falls behind breaks the barrier for all: the sweeps then merely overlap.
            with contextlib.suppress(threading.BrokenBarrierError):
                self._barrier.wait(timeout=60)
        return document

    def write(self, decision: Decision, *, etag: str, record: IdempotencyRecord | None = None) -> AssignmentDocument:
        try:
            return self._inner.write(decision, etag=etag, record=record)
        except ConcurrencyConflict:
            self.lost += 1
            raise


def seed_everything_due(app: FunctionCaller, clock: Clock) -> tuple[dict[str, list[str]], datetime]:
    """Four assignments each due for a reminder, an expiry warning and expiry, at distinct times; and a moment
    at which all twelve actions are due."""
    ids: dict[str, list[str]] = {"reminder": [], "expiring": [], "expired": []}
    for n in range(4):
        ids["reminder"].append(make(app, due=T0 + timedelta(hours=3, minutes=n)))
        ids["expiring"].append(make(app, expires=T0 + timedelta(hours=5, minutes=n)))
        ids["expired"].append(make(app, expires=T0 + timedelta(minutes=30 + n)))
    return ids, T0 + timedelta(hours=1)


def assert_each_action_once_and_each_message_sent(
    app: FunctionCaller, ids: dict[str, list[str]], results: list[dict[str, int]]
) -> None:
    totals = {name: sum(result[name] for result in results) for name in ("expired", "expiring", "reminded")}
    assert totals == {"expired": 4, "expiring": 4, "reminded": 4}, results
    assert all(result["remaining"] == 0 for result in results), results
    for event_type, assignment_ids in ids.items():
        for assignment_id in assignment_ids:
            document = stored_doc(app, assignment_id)
            assert event_types(app, assignment_id).count(event_type) == 1
            assert document.version == 2, "one timer write"
            assert document.reminders_sent == (1 if event_type == "reminder" else 0)
    catch_up(app)
    inbox = Notifications(app)
    for event_type, assignment_ids in ids.items():
        for assignment_id in assignment_ids:
            (event_id,) = event_ids(app, assignment_id, event_type)
            sent = inbox.of(assignment_id, event_type)
            assert len(sent) >= 1
            assert {message["eventId"] for message in sent} == {event_id}


class TestOverlappingSweeps:
    def test_sweeps_on_four_threads_act_once_each(
        self, timed: FunctionCaller, timed_settings: Settings, clock: Clock
    ) -> None:
        ids, moment = seed_everything_due(timed, clock)
        clock.to(moment)
        barrier = threading.Barrier(SWEEPS)
        stores = [LockstepStore(Runtime(timed_settings, clock=clock).store, barrier) for _ in range(SWEEPS)]
        results: list[dict[str, int]] = []

        def one_sweep(store: LockstepStore) -> None:
            deps = dataclasses.replace(timed.runtime.sweep_deps(), store=cast(AssignmentStore, store))
            results.append(sweep(deps).to_json())

        threads = [threading.Thread(target=one_sweep, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert len(results) == SWEEPS, "a sweep failed"
        assert sum(store.lost for store in stores) >= SWEEPS - 1, "the sweeps raced for at least one assignment"
        assert_each_action_once_and_each_message_sent(timed, ids, results)

    def test_sweeps_in_three_processes_act_once_each(
        self, timed: FunctionCaller, timed_settings: Settings, clock: Clock
    ) -> None:
        workers = 3
        ids, moment = seed_everything_due(timed, clock)
        args = (timed_settings.model_dump(), moment)
        reported = race_in_processes(_sweep_in_another_process, [args] * workers, timeout=180)
        results = [result for result, _ in reported]
        assert sum(lost for _, lost in reported) >= workers - 1, "the sweeps raced for at least one assignment"
        assert_each_action_once_and_each_message_sent(timed, ids, results)


def _sweep_in_another_process(settings_fields: dict[str, Any], moment: datetime, barrier: Any, outcomes: Any) -> None:
    """One OS process: its own Runtime (Cosmos client) on the shared emulator, its clock at `moment`."""
    runtime = Runtime(IsolatedSettings(**settings_fields), clock=Clock(moment))
    set_runtime(runtime)
    runtime.store.ping()  # warm up: the containers ensured before the race
    store = LockstepStore(runtime.store, barrier)
    result = sweep(dataclasses.replace(runtime.sweep_deps(), store=cast(AssignmentStore, store)))
    outcomes.put((result.to_json(), store.lost))


class StoreThatDies:
    """The real store, in a process that dies just before or just after its first write commits."""

    def __init__(self, inner: AssignmentStore, *, after_commit: bool) -> None:
        self._inner = inner
        self._after_commit = after_commit
        self.died = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def write(self, decision: Decision, *, etag: str, record: IdempotencyRecord | None = None) -> AssignmentDocument:
        if self.died:
            return self._inner.write(decision, etag=etag, record=record)
        self.died = True
        if not self._after_commit:
            raise Crash("the sweep died before its write")
        self._inner.write(decision, etag=etag, record=record)
        raise Crash("the sweep died after its write committed")


class QueueThatDies:
    """The notifications queue, in a notifier that dies once per event type listed: before sending, or after
    sending and before the feed records the message as sent."""

    def __init__(self, inner: MessageQueue, *, before_send: str = "", after_send: str = "") -> None:
        self._inner = inner
        self._before, self._after = before_send, after_send
        self._died: set[str] = set()

    def send(self, message: dict[str, Any]) -> None:
        kind = str(message["type"])
        if kind == self._before and kind not in self._died:
            self._died.add(kind)
            raise Crash("the notifier died before sending")
        self._inner.send(message)
        if kind == self._after and kind not in self._died:
            self._died.add(kind)
            raise Crash("the notifier died after sending")


class RuntimeWithQueue(Runtime):
    """A Runtime whose change-feed functions send through `queue`."""

    queue: MessageQueue

    def feed_deps(self) -> FeedDeps:
        return dataclasses.replace(super().feed_deps(), queue=self.queue)


def timed_with_dying_notifier(
    own_runtime: InstallRuntime, settings: Settings, clock: Clock, **dies: str
) -> FunctionCaller:
    """As the `timed` fixture, but the change-feed functions send through a `QueueThatDies(**dies)`."""
    runtime = RuntimeWithQueue(settings, clock=clock)
    runtime.queue = QueueThatDies(runtime.notifications, **dies)
    app = own_runtime(runtime)
    start_at(app, T0)
    return app


def catch_up_past_a_crash(app: FunctionCaller) -> None:
    """The notifier dies in the feed's first delivery; the feed delivers the batch again (its checkpoint never
    moved), and once more."""
    with pytest.raises(Crash):
        catch_up(app)
    catch_up(app)
    catch_up(app)


class TestCrashes:
    @pytest.mark.parametrize("after_commit", [False, True], ids=["before-the-write", "after-the-write"])
    def test_a_sweep_that_dies_around_its_write_acts_once_and_the_message_still_goes(
        self, timed: FunctionCaller, clock: Clock, after_commit: bool
    ) -> None:
        assignment_id = make(timed, expires=T0 + timedelta(minutes=30))
        clock.to(T0 + timedelta(hours=1))
        dying = StoreThatDies(timed.runtime.store, after_commit=after_commit)
        with pytest.raises(Crash):
            run(timed, store=cast(AssignmentStore, dying))
        assert stored_doc(timed, assignment_id).status == ("expired" if after_commit else "pending")
        # The timer runs again (the next occurrence, or its retry): it re-judges the assignment as it is now.
        assert counts(run(timed)) == (nothing() if after_commit else did(expired=1))
        assert event_types(timed, assignment_id).count("expired") == 1
        catch_up(timed)
        (message,) = Notifications(timed).of(assignment_id, "expired")
        assert [message["eventId"]] == event_ids(timed, assignment_id, "expired")

    def test_a_notifier_that_dies_between_sending_and_recording_repeats_the_message_with_its_event_id(
        self, own_runtime: InstallRuntime, timed_settings: Settings, clock: Clock
    ) -> None:
        app = timed_with_dying_notifier(own_runtime, timed_settings, clock, after_send="reminder")
        assignment_id = make(app, due=T0 + timedelta(hours=3))
        assert counts(run(app)) == did(reminded=1)
        catch_up_past_a_crash(app)
        (event_id,) = event_ids(app, assignment_id, "reminder")
        sent = Notifications(app).of(assignment_id, "reminder")
        assert [message["eventId"] for message in sent] == [event_id, event_id]

    def test_a_notifier_that_dies_before_sending_loses_nothing(
        self, own_runtime: InstallRuntime, timed_settings: Settings, clock: Clock
    ) -> None:
        app = timed_with_dying_notifier(own_runtime, timed_settings, clock, before_send="expired")
        assignment_id = make(app, expires=T0 + timedelta(minutes=30))
        clock.to(T0 + timedelta(hours=1))
        assert counts(run(app)) == did(expired=1)
        catch_up_past_a_crash(app)
        (event_id,) = event_ids(app, assignment_id, "expired")
        assert [message["eventId"] for message in Notifications(app).of(assignment_id, "expired")] == [event_id]
