"""The change feed's use cases (`core.services.projection`) against the emulator and Azurite: the projector
keeps the views, the notifier sends one message per event, whatever the feed delivers.

Every test writes through the registered functions, records each stored version of each document as the
feed would deliver it (`FeedTape`), and hands `handle_changes` a chosen sequence: the same batch twice,
shuffled, with intermediate versions left out, interrupted, with failures injected by thin wrappers around
the real stores. Then it compares the views container with an oracle that reads the assignments container
and decides, with logic of its own (not `view_entries`), which entries every view must hold; and the
notifications queue with the event documents: one message for each event that has recipients.

Each test has a database and a notifications queue of its own, so views and messages are its own.
"""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from core.bootstrap import Runtime
from core.cosmos import RoundTripCounter
from core.errors import ServiceUnavailable
from core.events import EventDocument
from core.models import AssignmentDocument
from core.projections import candidates_pk, due_bucket, due_pk, inbox_pk, sent_pk, target_pk
from core.queues import MAX_MESSAGE_BYTES
from core.services.projection import (
    ChangeRef,
    FeedDeps,
    FeedResult,
    handle_changes,
    projection_lag,
    rebuild,
    retry_change,
)
from core.settings import Settings
from core.timer_rules import next_action_at
from localhost.scenarios import FeedTape, drain_queue, notifications_queue
from tests.support.api import (
    GROUP,
    ORIGINATOR,
    act,
    assign,
    catch_up,
    create,
    delegate,
    key_of,
    known_user,
    new_body,
    now_iso,
    post_event,
    unassign,
)
from tests.support.app import TEST_TENANT, FunctionCaller, InstallRuntime

TENANT = TEST_TENANT
ACTIVE = frozenset({"pending", "in_progress"})
ANN, BOB, CID, DEE = "ann@contoso.com", "bob@contoso.com", "cid@contoso.com", "dee@contoso.com"
PEOPLE = (ANN, BOB, CID, DEE)
# docs/api-rules.md, "Events and notifications".
MESSAGE_FIELDS = {"eventId", "type", "occurredAt", "tenantId", "assignmentId", "sequence", "recipients", "assignment"}
ROLES = {"assignee", "previousAssignee", "originator"}
# The view writes of the projector (reads and the notifier's bookkeeping are not counted).
VIEW_WRITES = frozenset({"upsert", "delete", "save_projection"})


# --- the oracle -----------------------------------------------------------------------------------------

Views = dict[tuple[str, str], tuple[Any, ...]]


def expected_views(app: FunctionCaller, *, prefix: str = "", tenant: str = TENANT) -> Views:
    """What every view must hold, decided here from the assignments as stored (docs/api-rules.md, "Lists,
    views and history"; "Timer: expiry and reminders"), by plain rules of this test:

    - the originator's sent list and the target's roster hold every assignment;
    - the assignee's inbox holds every assignment that has an assignee, whatever its status;
    - the candidates list holds the active tasks nobody holds, with their groups;
    - the due index holds every active assignment with something still to come: an expiry, or (when it has an
      assignee) a due date with reminders left.

    Each entry shows the assignment's current version, status and last change. Only the naming of partitions
    is taken from `core.projections`."""
    max_reminders = app.runtime.settings.reminder_max
    query = "SELECT * FROM c WHERE c.docType = 'assignment' AND c.tenantId = @tenant AND STARTSWITH(c.id, @prefix)"
    parameters: list[dict[str, object]] = [{"name": "@tenant", "value": tenant}, {"name": "@prefix", "value": prefix}]
    expected: Views = {}
    for doc in app.runtime.assignments_container.query_items(
        query, parameters=parameters, enable_cross_partition_query=True
    ):
        assignment_id, status = doc["id"], doc["status"]
        shown = (doc["version"], status, doc["updatedAt"])
        assignee = doc.get("assigneeUserKey")
        active = status in ACTIVE
        expected[(sent_pk(tenant, doc["originatorUserKey"]), assignment_id)] = shown
        expected[(target_pk(tenant, doc["targetType"], doc["targetId"]), assignment_id)] = shown
        if assignee:
            expected[(inbox_pk(tenant, assignee), assignment_id)] = shown
        if active and doc.get("taskKey") and not assignee:
            expected[(candidates_pk(tenant), assignment_id)] = (*shown, tuple(sorted(doc["candidateGroups"])))
        reminders_left = bool(assignee and doc.get("dueAt") and doc["remindersSent"] < max_reminders)
        if active and (doc.get("expiresAt") or reminders_left):
            expected[("due", f"{tenant}|{assignment_id}")] = (doc["version"],)
    return expected


def held_views(app: FunctionCaller, *, prefix: str = "", tenant: str = TENANT) -> Views:
    """What the views container holds, read directly, in the oracle's terms."""
    query = "SELECT * FROM c WHERE c.docType = 'view' AND c.tenantId = @tenant AND STARTSWITH(c.assignmentId, @prefix)"
    parameters: list[dict[str, object]] = [{"name": "@tenant", "value": tenant}, {"name": "@prefix", "value": prefix}]
    held: Views = {}
    for item in app.runtime.views_container.query_items(
        query, parameters=parameters, enable_cross_partition_query=True
    ):
        if item["kind"] == "due":
            assert item["pk"].startswith("due|"), item
            key: tuple[str, str] = ("due", item["id"])
            value: tuple[Any, ...] = (item["version"],)
        else:
            shown = item["assignment"]
            assert shown["id"] == item["assignmentId"] == item["id"], item
            assert shown["status"] == item["status"], item
            key, value = (item["pk"], item["id"]), (item["version"], item["status"], shown["updatedAt"])
            if item["kind"] == "candidates":
                value = (*value, tuple(item["groups"]))
        assert key not in held, f"two due entries for {key}"
        held[key] = value
    return held


def assert_views_match(app: FunctionCaller, *, prefix: str = "") -> None:
    expected, held = expected_views(app, prefix=prefix), held_views(app, prefix=prefix)
    missing = {key: value for key, value in expected.items() if key not in held}
    extra = {key: value for key, value in held.items() if key not in expected}
    wrong = {key: (held[key], value) for key, value in expected.items() if key in held and held[key] != value}
    assert (missing, extra, wrong) == ({}, {}, {}), "views differ from the oracle: (missing, extra, (held, expected))"


# --- faults ---------------------------------------------------------------------------------------------


class Killed(BaseException):
    """The process died: not an error the projector may catch (it catches `Exception`)."""


class Faulty:
    """A real store with a fault before some of its calls: `fault(method_name)` runs before each call of a
    method in `methods` and may raise; every other attribute is the store's own."""

    def __init__(self, inner: Any, fault: Callable[[str], None], methods: Iterable[str]) -> None:
        self._inner = inner
        self._fault = fault
        self._methods = frozenset(methods)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in self._methods:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self._fault(name)
            return attribute(*args, **kwargs)

        return call


class ScanMissing:
    """A real view store whose scans miss the items `missing` picks, as a scan that passed their place before
    they were written does; every other attribute is the store's own."""

    def __init__(self, inner: Any, missing: Callable[[Mapping[str, Any]], bool]) -> None:
        self._inner = inner
        self._missing = missing

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def scan(self, *, continuation_token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        items, token = self._inner.scan(continuation_token=continuation_token)
        return [item for item in items if not self._missing(item)], token


def killed_after(writes: int) -> Callable[[str], None]:
    """A projector that dies at its write number `writes + 1`, and stays dead."""
    done = [0]

    def fault(_name: str) -> None:
        done[0] += 1
        if done[0] > writes:
            raise Killed(f"killed at view write {done[0]}")

    return fault


def unavailable_for(calls: int, *, skip: int = 0) -> Callable[[str], None]:
    """Cosmos (or Storage) answers 503 to `calls` calls after the first `skip`, then recovers."""
    seen = [0]

    def fault(_name: str) -> None:
        seen[0] += 1
        if skip < seen[0] <= skip + calls:
            raise ServiceUnavailable("injected outage", retry_after=1)

    return fault


def once_before(action: Callable[[], None]) -> Callable[[str], None]:
    """Run `action` (another projector, a write) just before the first faulted call, then nothing."""
    pending = [action]

    def fault(_name: str) -> None:
        if pending:
            pending.pop()()

    return fault


# --- a test's world -------------------------------------------------------------------------------------


class World:
    """A fresh database and notifications queue, writes through the registered functions recorded on a tape,
    and deliveries of any sequence of recorded versions."""

    def __init__(self, app: FunctionCaller, *, prefix: str = "") -> None:
        self.app = app
        self.prefix = prefix
        self.tape = FeedTape(app)
        self.queue = notifications_queue(app)
        self.received: list[dict[str, Any]] = []

    # The feed.

    def deps(self, *, views: Any = None, queue: Any = None) -> FeedDeps:
        deps = self.app.runtime.feed_deps()
        return dataclasses.replace(deps, views=views or deps.views, queue=queue or deps.queue)

    def faulty_views(self, fault: Callable[[str], None], methods: Iterable[str] = VIEW_WRITES) -> FeedDeps:
        return self.deps(views=Faulty(self.app.runtime.views, fault, methods))

    def deliver(self, bodies: Iterable[Mapping[str, Any]], deps: FeedDeps | None = None) -> FeedResult:
        return handle_changes([json.loads(json.dumps(body)) for body in bodies], deps or self.deps())

    def retry(self, refs: Iterable[ChangeRef], deps: FeedDeps | None = None) -> list[FeedResult]:
        """The retry queue's function on each ref, as its message would arrive (JSON)."""
        return [
            retry_change(ChangeRef.from_json(json.loads(json.dumps(r.to_json()))), deps or self.deps()) for r in refs
        ]

    # Writes, each recorded.

    def _done(self, response: Any, status: int = 200) -> None:
        assert response.status == status, response.body
        self.tape.snap()

    def create(self, assignment_id: str, assignee: str | None, *, task: bool = False, **fields: Any) -> str:
        body = new_body(id=self.prefix + assignment_id, **fields)
        if assignee is None:
            del body["assigneeEmail"]
        else:
            body["assigneeEmail"] = assignee
        if task or assignee is None:
            body.update(taskKey="review", candidateGroups=[GROUP])
        self._done(create(self.app, body), 201)
        return str(body["id"])

    def reassign(self, assignment_id: str, to: str) -> None:
        known_user(self.app, to)
        self._done(act(self.app, "reassign", assignment_id, {"toUpn": to}))

    def assign(self, assignment_id: str, to: str) -> None:
        known_user(self.app, to)
        self._done(assign(self.app, assignment_id, key_of(to)))

    def unassign(self, assignment_id: str) -> None:
        self._done(unassign(self.app, assignment_id))

    def delegate(self, assignment_id: str, by: str, to: str) -> str:
        known_user(self.app, to)
        response = delegate(self.app, assignment_id, {"toUpn": to}, token=self.app.tokens.user(by))
        self._done(response, 201)
        return str(response.json()["id"])

    def cancel(self, assignment_id: str) -> None:
        self._done(act(self.app, "cancel", assignment_id))

    def progress(self, assignment_id: str, by: str, kind: str, **fields: Any) -> None:
        self._done(post_event(self.app, assignment_id, kind, token=self.app.tokens.user(by), **fields))

    def reject(self, assignment_id: str, by: str) -> None:
        self._done(act(self.app, "reject", assignment_id, {"reason": "not mine"}, token=self.app.tokens.user(by)))

    def complete(self, assignment_id: str, by: str) -> None:
        self._done(act(self.app, "complete", assignment_id, token=self.app.tokens.user(by)))

    # What the feed left behind.

    def events(self) -> list[EventDocument]:
        query = "SELECT * FROM c WHERE c.docType = 'event' AND STARTSWITH(c.assignmentId, @prefix)"
        items = self.app.runtime.assignments_container.query_items(
            query, parameters=[{"name": "@prefix", "value": self.prefix}], enable_cross_partition_query=True
        )
        return sorted(
            (EventDocument.model_validate(item) for item in items), key=lambda e: (e.assignment_id, e.sequence)
        )

    def drain(self) -> list[dict[str, Any]]:
        new = [m for m in drain_queue(self.queue) if str(m["assignmentId"]).startswith(self.prefix)]
        self.received += new
        return new

    def assert_notified(self, *, at_least_once: frozenset[str] = frozenset()) -> None:
        """Every event with recipients has exactly one message (or, for `at_least_once`, one or more identical
        ones), as the event reads; nothing else is on the queue."""
        self.drain()
        expected = {event.event_id: event.message() for event in self.events() if event.recipients}
        counts = Counter(str(message["eventId"]) for message in self.received)
        assert set(counts) == set(expected), (sorted(set(expected) - set(counts)), sorted(set(counts) - set(expected)))
        repeated = {event_id for event_id, count in counts.items() if count > 1}
        assert repeated <= at_least_once, f"sent more than once: {repeated}"
        for message in self.received:
            assert set(message) == MESSAGE_FIELDS
            assert {recipient["role"] for recipient in message["recipients"]} <= ROLES
            assert message == expected[message["eventId"]]
            size = len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode())
            assert size < MAX_MESSAGE_BYTES

    def assert_converged(self, **notified: Any) -> None:
        assert_views_match(self.app, prefix=self.prefix)
        self.assert_notified(**notified)


def fresh_runtime(settings: Settings, **overrides: Any) -> Runtime:
    suffix = uuid.uuid4().hex[:10]
    return Runtime(
        settings.model_copy(
            update={"cosmos_database": f"feed-{suffix}", "notifications_queue": f"notify-{suffix}", **overrides}
        )
    )


@pytest.fixture
def world(own_runtime: InstallRuntime, settings: Settings) -> World:
    return World(own_runtime(fresh_runtime(settings)))


def in_days(days: float) -> str:
    return now_iso(timedelta(days=days))


def workload(world: World) -> None:
    """Assignees come and go, tasks are claimed and handed back, a delegation, progress and a cancel."""
    world.create("a1", ANN, dueAt=in_days(2))
    world.reassign("a1", BOB)
    world.reassign("a1", CID)
    world.create("t1", None, expiresAt=in_days(3))
    world.assign("t1", ANN)
    world.unassign("t1")
    world.assign("t1", BOB)
    world.create("a2", ANN, completionCriteria="flow_completed", expiresAt=in_days(5))
    successor = world.delegate("a2", ANN, BOB)
    world.progress(successor, BOB, "flow_started")
    world.create("a3", BOB, targetId="chat-2", dueAt=in_days(1))
    world.cancel("a3")
    world.create("t2", None, targetId="chat-2")


# --- redelivery, reordering, collapse -------------------------------------------------------------------


class TestDelivery:
    def test_each_write_delivered_as_it_happens(self, world: World) -> None:
        workload(world)
        result = world.deliver(world.tape.bodies)
        assert result.failed == []
        world.assert_converged()

    def test_the_same_batch_twice_changes_nothing_the_second_time(self, world: World) -> None:
        workload(world)
        world.deliver(world.tape.bodies)
        again = world.deliver(world.tape.bodies)
        assert (again.projected, again.notified, again.failed) == (0, 0, [])
        world.assert_converged()

    @pytest.mark.parametrize("seed", range(4))
    def test_shuffled_across_and_within_documents(self, world: World, seed: int) -> None:
        workload(world)
        bodies = list(world.tape.bodies)
        random.Random(seed).shuffle(bodies)
        for start in range(0, len(bodies), 7):
            assert world.deliver(bodies[start : start + 7]).failed == []
        world.assert_converged()

    def test_a_collapsed_feed_takes_the_assignment_out_of_every_earlier_inbox(self, world: World) -> None:
        world.create("a1", ANN)
        world.deliver(world.tape.bodies)
        world.reassign("a1", BOB)
        world.reassign("a1", CID)
        v1, _v2, v3 = world.tape.versions("a1")
        assert v3["version"] == 3
        events = [body for body in world.tape.bodies if body["docType"] == "event"]
        world.deliver([v3, *events])
        for upn, held in ((ANN, []), (BOB, []), (CID, ["a1"])):
            listed = world.app.call(
                "list_assignments", url="/assignments", token=world.app.tokens.user(upn), params={"role": "assignee"}
            )
            assert [item["id"] for item in listed.json()["items"]] == held, upn
        assert v1["version"] == 1
        world.assert_converged()

    def test_only_the_latest_version_of_each_document(self, world: World) -> None:
        world.create("a0", ANN)
        world.deliver(world.tape.bodies)  # something was projected before the collapse
        workload(world)
        world.deliver(world.tape.latest())
        world.assert_converged()

    def test_an_old_version_after_the_new_one_is_ignored(self, world: World) -> None:
        world.create("a1", ANN)
        world.reassign("a1", BOB)
        v1, v2 = world.tape.versions("a1")
        assert world.deliver([v2]).projected == 1
        late = world.deliver([v1])
        assert (late.projected, late.skipped) == (0, 1)
        world.deliver(body for body in world.tape.bodies if body["docType"] == "event")
        world.assert_converged()


# --- failures -------------------------------------------------------------------------------------------


KILL_POINTS = [0, 1, 2, 3, 4, 5, 6, 8, 11, 15, 20, 30]


class TestFailures:
    @pytest.mark.parametrize("writes", KILL_POINTS)
    def test_killed_mid_batch_then_the_same_batch_again(self, world: World, writes: int) -> None:
        workload(world)
        with pytest.raises(Killed):
            world.deliver(world.tape.bodies, world.faulty_views(killed_after(writes)))
        world.deliver(world.tape.bodies)
        world.assert_converged()

    @pytest.mark.parametrize("writes", KILL_POINTS)
    def test_killed_mid_batch_then_the_feed_has_moved_on(self, world: World, writes: int) -> None:
        """The host restarts from its checkpoint; meanwhile the assignments changed again, so the feed now
        delivers only their latest versions."""
        workload(world)
        batch = list(world.tape.bodies)
        with pytest.raises(Killed):
            world.deliver(batch, world.faulty_views(killed_after(writes)))
        world.reassign(world.prefix + "a1", ANN)
        world.reassign(world.prefix + "a1", DEE)
        world.unassign(world.prefix + "t1")
        world.assign(world.prefix + "t1", CID)
        world.deliver(world.tape.latest())
        world.assert_converged()

    def test_a_poison_document_fails_alone_and_its_retry_projects_the_current_state(self, world: World) -> None:
        workload(world)
        poisoned = dict(world.tape.versions("a1")[-1], status="sleeping")
        batch = [body for body in world.tape.bodies if body["id"] != "a1"]
        batch.insert(len(batch) // 2, poisoned)
        result = world.deliver(batch)
        assert result.failed == [ChangeRef(TENANT, "assignment", "a1", f"{TENANT}:a1")]
        assert result.projected > 0
        assert ("due", f"{TENANT}|a1") not in held_views(world.app)
        (retried,) = world.retry(result.failed)
        assert retried.projected == 1
        world.assert_converged()

    def test_cosmos_unavailable_for_a_while_sends_documents_to_retry_which_converges(self, world: World) -> None:
        workload(world)
        every_call = ("read_projection", *VIEW_WRITES, "was_sent", "mark_sent")
        result = world.deliver(world.tape.bodies, world.faulty_views(unavailable_for(12), every_call))
        # Each document fails at its first call, so twelve of them go to retry.
        assert len(result.failed) == 12
        assert {ref.doc_type for ref in result.failed} == {"assignment", "event"}
        world.retry(result.failed)
        world.assert_converged()

    @pytest.mark.parametrize("skip", range(1, 5))
    def test_cosmos_failing_mid_projection_then_the_assignment_moves_on(self, world: World, skip: int) -> None:
        """A projection fails after some of its writes; before its retry runs the assignment changes again."""
        world.create("a1", ANN)
        world.deliver(world.tape.bodies)
        world.reassign("a1", BOB)
        v2 = world.tape.versions("a1")[-1]
        result = world.deliver([v2], world.faulty_views(unavailable_for(100, skip=skip)))
        assert len(result.failed) == 1
        world.reassign("a1", CID)
        world.retry(result.failed)
        world.deliver(world.tape.latest())
        world.assert_converged()

    def test_a_projection_that_loses_the_race_to_a_newer_one_leaves_the_newer_version(self, world: World) -> None:
        """The feed projects v2 while the retry queue's function projects v3: v3's projector saves its record
        first; v2's, which was writing at the same time, loses (its record write is conditional)."""
        world.create("a1", ANN, dueAt=in_days(2))
        world.deliver(world.tape.bodies)
        world.reassign("a1", BOB)
        v2 = world.tape.versions("a1")[-1]

        def newer_projection_wins() -> None:
            world.reassign("a1", CID)
            (v3,) = world.tape.versions("a1")[-1:]
            assert world.deliver([v3]).projected == 1

        result = world.deliver([v2], world.faulty_views(once_before(newer_projection_wins), methods=("upsert",)))
        assert result.failed == []
        world.deliver(body for body in world.tape.bodies if body["docType"] == "event")
        world.assert_converged()


# --- rebuild --------------------------------------------------------------------------------------------


def seed_junk(world: World) -> None:
    """Entries no assignment implies: a copy of a1 in Ann's inbox (she held it once), an older copy in Dee's,
    an entry of an assignment that never existed, and a due entry of a finished one."""
    views = world.app.runtime.views_container
    a1 = next(item for item in held_items(world) if item["id"] == "a1" and item["kind"] == "sent")
    for upn, version in ((ANN, a1["version"]), (DEE, 1)):
        pk = inbox_pk(TENANT, key_of(upn))
        views.upsert_item({**a1, "pk": pk, "kind": "inbox", "version": version})
    views.upsert_item({**a1, "pk": inbox_pk(TENANT, key_of(BOB)), "id": "ghost", "assignmentId": "ghost"})
    views.upsert_item(
        {
            "id": f"{TENANT}|a3",
            "pk": "due|2030010112",
            "docType": "view",
            "kind": "due",
            "tenantId": TENANT,
            "assignmentId": "a3",
            "version": 1,
            "dueAt": "2030-01-01T12:00:00.000Z",
        }
    )


def held_items(world: World) -> list[dict[str, Any]]:
    return list(
        world.app.runtime.views_container.query_items(
            "SELECT * FROM c WHERE c.docType = 'view'", enable_cross_partition_query=True
        )
    )


class TestRebuild:
    def test_rebuild_removes_stale_entries_and_writes_the_current_ones(self, world: World) -> None:
        workload(world)
        world.deliver(world.tape.bodies)
        seed_junk(world)
        # And something missing: a1's roster entry is gone.
        world.app.runtime.views.delete(target_pk(TENANT, "chat", "chat-1"), "a1")
        result = rebuild(world.deps())
        assert result.assignments == len(expected_ids(world))
        assert result.removed == 4
        world.assert_converged()

    def test_rebuild_over_empty_views_writes_everything(self, world: World) -> None:
        workload(world)
        rebuild(world.deps())
        assert_views_match(world.app)
        # The feed arriving afterwards adds nothing and removes nothing.
        world.deliver(world.tape.bodies)
        world.assert_converged()

    def test_rebuild_racing_a_newer_projection_leaves_the_newer_version(self, world: World) -> None:
        """A rebuild read a1 at v2; before it writes, a1 becomes v3 and the feed projects v3."""
        world.create("a1", ANN, dueAt=in_days(2))
        world.deliver(world.tape.bodies)
        world.reassign("a1", BOB)

        def feed_projects_a_newer_version() -> None:
            world.reassign("a1", CID)
            assert world.deliver(world.tape.versions("a1")[-1:]).projected == 1

        deps = world.faulty_views(once_before(feed_projects_a_newer_version), methods=("upsert",))
        rebuild(deps)
        world.deliver(world.tape.bodies)
        world.assert_converged()

    def test_rebuild_keeps_a_past_action_a_projector_filed_in_the_hour_before(self, world: World) -> None:
        """The rebuild's scan of the views is no snapshot: it can pass the place of an assignment's record
        before a projector writes it, then find the entries written after it. Such entries are kept when the
        assignment implies them, and a past action counts as implied though the projector filed it in its
        own hour's bucket and the rebuild's clock is in a later hour."""
        world.create("a1", ANN, dueAt=in_days(2))
        world.deliver(world.tape.bodies)
        projected_at: list[datetime] = []

        def a_projector_files_a_past_action() -> None:
            world.create("late", ANN, dueAt=in_days(3))
            document = world.app.runtime.store.read(TENANT, "late")
            assert document is not None
            action_at = next_action_at(document, world.deps().policy)
            assert action_at is not None
            projected_at.append(action_at + timedelta(minutes=30))
            at_that_time = dataclasses.replace(world.deps(), clock=lambda: projected_at[0])
            assert world.deliver(world.tape.versions("late")[-1:], at_that_time).projected == 1

        def two_hours_after_the_projector() -> datetime:
            # Before the projector runs (the rebuild's own projections), any time will do.
            return projected_at[0] + timedelta(hours=2) if projected_at else datetime.now(UTC)

        def the_record_of_late(item: Mapping[str, Any]) -> bool:
            return item.get("docType") == "projection" and item["id"] == "late"

        views = Faulty(
            ScanMissing(world.app.runtime.views, the_record_of_late),
            once_before(a_projector_files_a_past_action),
            ("scan",),
        )
        rebuild(dataclasses.replace(world.deps(views=views), clock=two_hours_after_the_projector))
        filed = due_pk(due_bucket(projected_at[0]))
        assert filed != due_pk(due_bucket(two_hours_after_the_projector()))
        assert (filed, f"{TENANT}|late") in {(item["pk"], item["id"]) for item in held_items(world)}

    def test_rebuild_in_a_thread_while_writes_and_projections_continue(self, world: World) -> None:
        workload(world)
        world.deliver(world.tape.bodies)
        seed_junk(world)
        errors: list[BaseException] = []
        stop = threading.Event()

        def rebuild_repeatedly() -> None:
            try:
                while not stop.is_set():
                    rebuild(world.deps())
            except BaseException as error:
                errors.append(error)

        thread = threading.Thread(target=rebuild_repeatedly)
        thread.start()
        try:
            for round_number in range(6):
                person = PEOPLE[round_number % len(PEOPLE)]
                if person != current_assignee(world, "a1"):
                    world.reassign("a1", person)
                world.unassign("t1")
                world.assign("t1", person)
                world.create(f"n{round_number}", person, dueAt=in_days(1))
                world.deliver(world.tape.bodies[-8:])
        finally:
            stop.set()
            thread.join(timeout=120)
        assert errors == []
        assert catch_up(world.app) > 0  # the registered feed function over the real change feed
        world.assert_converged()

    def test_projection_lag_counts_the_assignments_the_views_are_behind(self, world: World) -> None:
        world.create("a1", ANN)
        world.create("a2", BOB)
        assert projection_lag(world.deps()).behind == 2
        world.deliver(world.tape.bodies)
        world.reassign("a1", CID)
        lag = projection_lag(world.deps())
        assert (lag.behind, lag.assignments) == (1, 2)
        assert lag.oldest_change is not None
        world.deliver(world.tape.latest())
        assert projection_lag(world.deps()).behind == 0


def expected_ids(world: World) -> set[str]:
    return {key[1] for key in expected_views(world.app) if key[0] != "due"}


def current_assignee(world: World, assignment_id: str) -> str | None:
    document = world.app.runtime.store.read(TENANT, assignment_id)
    assert document is not None
    return document.assignee_email


# --- notifications --------------------------------------------------------------------------------------


def refusing_queue(world: World, fault: Callable[[str], None]) -> FeedDeps:
    return world.deps(queue=Faulty(world.app.runtime.notifications, fault, ["send"]))


class TestNotifications:
    @pytest.mark.parametrize("delivery", ["twice", "shuffled", "collapsed", "one by one"])
    def test_one_message_per_event_whatever_the_delivery(self, world: World, delivery: str) -> None:
        workload(world)
        bodies = world.tape.bodies
        if delivery == "twice":
            world.deliver(bodies)
            world.deliver(bodies)
        elif delivery == "shuffled":
            shuffled = list(bodies)
            random.Random(7).shuffle(shuffled)
            world.deliver(shuffled)
        elif delivery == "collapsed":
            world.deliver(world.tape.latest())
        else:
            for body in bodies:
                world.deliver([body])
                world.deliver([body])
        world.assert_converged()

    def test_storage_unavailable_for_a_while_events_go_to_retry_and_are_sent_later(self, world: World) -> None:
        workload(world)
        result = world.deliver(world.tape.bodies, refusing_queue(world, unavailable_for(3)))
        failed_events = [ref for ref in result.failed if ref.doc_type == "event"]
        assert len(failed_events) == 3
        assert world.drain() != [], "the other events were sent"
        assert sum(r.notified for r in world.retry(failed_events)) == 3
        world.assert_converged()

    def test_a_notifier_killed_between_sending_and_recording_sends_again_with_the_same_event_id(
        self, world: World
    ) -> None:
        world.create("a1", ANN)
        (assigned,) = [event for event in world.events() if event.recipients]
        result = world.deliver(world.tape.bodies, world.faulty_views(unavailable_for(1), methods=("mark_sent",)))
        assert [ref.id for ref in result.failed] == [assigned.id]
        (first,) = world.drain()
        world.retry(result.failed)
        (second,) = world.drain()
        assert first == second == assigned.message()
        world.deliver(world.tape.bodies)  # the feed again: recorded now, nothing more
        world.assert_converged(at_least_once=frozenset({assigned.event_id}))

    def test_each_operation_tells_the_people_of_the_table(self, world: World) -> None:
        keys = {upn: key_of(upn) for upn in (*PEOPLE, ORIGINATOR)}

        def to(*people: tuple[str, str]) -> list[dict[str, str]]:
            return [{"userKey": keys[upn], "upn": upn, "role": role} for upn, role in people]

        heard: list[tuple[str, str, list[dict[str, str]]]] = []

        def expect(assignment_id: str, event_type: str, recipients: list[dict[str, str]]) -> None:
            heard.append((assignment_id, event_type, recipients))

        world.create("c1", ANN)
        expect("c1", "assigned", to((ANN, "assignee")))
        world.reassign("c1", BOB)
        expect("c1", "reassigned", to((BOB, "assignee"), (ANN, "previousAssignee")))
        world.cancel("c1")
        expect("c1", "cancelled", to((BOB, "assignee")))
        world.create("d1", ANN)
        expect("d1", "assigned", to((ANN, "assignee")))
        world.delegate("d1", ANN, CID)
        expect("d1", "delegated", to((CID, "assignee"), (ANN, "previousAssignee"), (ORIGINATOR, "originator")))
        world.create("t1", None)  # an unassigned task tells no one
        world.cancel("t1")
        world.create("t2", None)
        world.assign("t2", DEE)
        expect("t2", "assigned", to((DEE, "assignee")))
        world.unassign("t2")
        expect("t2", "unassigned", to((DEE, "previousAssignee")))
        world.create("r1", ANN, allowRejection=True)
        expect("r1", "assigned", to((ANN, "assignee")))
        world.reject("r1", ANN)
        expect("r1", "rejected", to((ORIGINATOR, "originator")))
        world.create("m1", ANN, completionCriteria="manual")
        expect("m1", "assigned", to((ANN, "assignee")))
        world.complete("m1", ANN)
        expect("m1", "completed", to((ORIGINATOR, "originator")))
        world.create("f1", ANN, completionCriteria="flow_passed", passScore=80, maxAttempts=1)
        expect("f1", "assigned", to((ANN, "assignee")))
        world.progress("f1", ANN, "flow_completed", score=10)
        expect("f1", "failed", to((ORIGINATOR, "originator")))

        world.deliver(world.tape.bodies)
        got = [(m["assignmentId"], m["type"], m["recipients"]) for m in world.drain()]
        assert sorted(got, key=lambda h: h[:2]) == sorted(heard, key=lambda h: h[:2])
        world.assert_converged()


# --- reading the views: round trips and partitions ------------------------------------------------------


class RequestLog(RoundTripCounter):
    """The round-trip counter, also keeping each request's method, URL and headers."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    def __call__(self, request: Any) -> None:
        super().__call__(request)
        http = request.http_request
        self.requests.append((http.method, http.url, {k.lower(): v for k, v in http.headers.items()}))


@pytest.fixture
def logged(own_runtime: InstallRuntime, settings: Settings) -> tuple[World, RequestLog]:
    runtime = fresh_runtime(settings)
    log = RequestLog()
    runtime.round_trips = log  # before the client exists: it is built with this hook
    return World(own_runtime(runtime)), log


class TestReadingTheViews:
    def calls(self, world: World) -> dict[str, tuple[Callable[[], Any], str]]:
        """Each read route, and the partition its query must name."""
        app = world.app
        ann, originator = app.tokens.user(ANN), app.tokens.user(ORIGINATOR)
        candidate = app.tokens.user(DEE, groups=[GROUP])
        roster = {"targetType": "chat", "targetId": "chat-1"}

        def call(name: str, url: str, token: str, **kw: Any) -> Callable[[], Any]:
            def run() -> Any:
                response = app.call(name, url=url, token=token, **kw)
                assert response.status == 200, response.body
                return response.json()

            return run

        inbox, sent = inbox_pk(TENANT, key_of(ANN)), sent_pk(TENANT, key_of(ORIGINATOR))
        target = target_pk(TENANT, "chat", "chat-1")
        return {
            "list assignee": (call("list_assignments", "/assignments", ann, params={"role": "assignee"}), inbox),
            "list originator": (
                call("list_assignments", "/assignments", originator, params={"role": "originator", "pageSize": "2"}),
                sent,
            ),
            "list candidate": (
                call("list_assignments", "/assignments", candidate, params={"role": "candidate"}),
                candidates_pk(TENANT),
            ),
            "list by due date": (
                call("list_assignments", "/assignments", ann, params={"orderBy": "dueAt", "status": "pending"}),
                inbox,
            ),
            "summary assignee": (call("summarize_assignments", "/assignments/summary", ann), inbox),
            "summary originator": (
                call("summarize_assignments", "/assignments/summary", originator, params={"role": "originator"}),
                sent,
            ),
            "roster": (
                call("list_roster", "/targets/chat/chat-1/assignments", originator, route_params=roster),
                target,
            ),
            "roster summary": (
                call("summarize_roster", "/targets/chat/chat-1/summary", originator, route_params=roster),
                target,
            ),
        }

    def setup_views(self, world: World) -> None:
        for number in range(5):
            world.create(f"l{number}", ANN, dueAt=in_days(number + 1))
        world.create("t1", None)
        catch_up(world.app)

    def test_each_list_page_summary_and_roster_costs_one_round_trip_and_history_two(
        self, logged: tuple[World, RequestLog]
    ) -> None:
        world, _log = logged
        self.setup_views(world)
        for name, (call, _pk) in self.calls(world).items():
            call()  # warm: token keys, containers
            body, trips = world.app.round_trips_of(call)
            assert trips == 1, name
            if name == "list originator":
                assert len(body["items"]) == 2
                token = body["continuationToken"]
                assert token
                page2 = world.app.round_trips_of(
                    lambda token=token: world.app.call(
                        "list_assignments",
                        url="/assignments",
                        token=world.app.tokens.user(ORIGINATOR),
                        params={"role": "originator", "pageSize": "2", "continuationToken": token},
                    )
                )
                assert page2[1] == 1
                assert page2[0].status == 200
        history = world.app.round_trips_of(
            lambda: world.app.call(
                "get_history",
                url="/assignments/l0/history",
                token=world.app.tokens.user(ANN),
                route_params={"id": "l0"},
            )
        )
        assert history[0].status == 200
        assert [item["type"] for item in history[0].json()["items"]] == ["created", "assigned"]
        assert history[1] == 2

    def test_every_list_query_names_its_partition(self, logged: tuple[World, RequestLog]) -> None:
        """Checked on the wire: each request a read route sends to the views container is a query that carries
        `x-ms-documentdb-partitionkey` with the list's partition, and none asks for a cross-partition query."""
        world, log = logged
        self.setup_views(world)
        views_path = f"/dbs/{world.app.runtime.settings.cosmos_database}/colls/views/docs"
        for name, (call, pk) in self.calls(world).items():
            before = len(log.requests)
            call()
            sent = log.requests[before:]
            to_views = [(method, url, headers) for method, url, headers in sent if views_path in url]
            assert to_views, name
            for method, _url, headers in to_views:
                assert method == "POST", name
                assert headers.get("x-ms-documentdb-isquery") == "true", name
                assert headers.get("x-ms-documentdb-partitionkey") == json.dumps([pk]), name
                assert "x-ms-documentdb-query-enablecrosspartition" not in headers, name


# --- any history, any delivery --------------------------------------------------------------------------

# Weighted: a cancel ends an assignment's story, so it comes less often.
STEPS = st.sampled_from(
    [
        *("create", "task", "task", "reassign", "reassign", "assign", "assign", "unassign", "unassign"),
        *("progress", "cancel", "delegate", "delegate", "deliver", "deliver"),
    ]
)


@pytest.fixture
def shared(own_runtime: InstallRuntime, settings: Settings) -> FunctionCaller:
    return own_runtime(fresh_runtime(settings))


class Story:
    """A hypothesis example: writes over a few assignments of its own (ids under a fresh prefix), deliveries
    of what was written so far with duplicates, reordering and collapse, and a final delivery in which the
    latest version of each document comes at least once."""

    def __init__(self, app: FunctionCaller, rnd: random.Random) -> None:
        self.world = World(app, prefix=f"h{uuid.uuid4().hex[:8]}-")
        self.rnd = rnd
        self.ids: list[str] = []
        self.delivered_upto = 0

    def write(self, operation: str) -> None:
        w, rnd = self.world, self.rnd
        person = rnd.choice(PEOPLE)
        if operation in ("create", "task") or not self.ids:
            number = len(self.ids)
            dates: dict[str, Any] = rnd.choice([{}, {"dueAt": in_days(2)}, {"expiresAt": in_days(4)}])
            target = rnd.choice(["chat-1", "chat-2"])
            if operation == "task" or rnd.random() < 0.3:
                assignee = rnd.choice([None, person])
                self.ids.append(w.create(f"x{number}", assignee, task=True, targetId=target, **dates))
            else:
                self.ids.append(w.create(f"x{number}", person, targetId=target, **dates))
            return
        candidates = self.eligible(operation)
        if not candidates:
            return
        document = rnd.choice(candidates)
        assignment_id, holder, app = document.id, document.assignee_email, w.app
        if operation == "reassign":
            response = act(app, "reassign", assignment_id, {"toUpn": known_user(app, person).upn})
        elif operation == "assign":
            response = assign(app, assignment_id, key_of(known_user(app, person).upn))
        elif operation == "unassign":
            response = unassign(app, assignment_id)
        elif operation == "progress" and holder:
            response = post_event(app, assignment_id, "flow_started", token=app.tokens.user(holder))
        elif operation == "cancel":
            response = act(app, "cancel", assignment_id)
        else:
            assert holder is not None
            known_user(app, person)
            response = delegate(app, assignment_id, {"toUpn": person}, token=app.tokens.user(holder))
            if response.status == 201:
                self.ids.append(str(response.json()["id"]))
        assert response.status < 500, response.body
        w.tape.snap()

    def eligible(self, operation: str) -> list[AssignmentDocument]:
        """The story's active assignments the operation may succeed on (a refusal would write nothing)."""
        documents = [self.world.app.runtime.store.read(TENANT, assignment_id) for assignment_id in self.ids]
        active = [d for d in documents if d is not None and d.status in ACTIVE]
        if operation == "assign":
            return [d for d in active if d.is_task and d.is_unassigned]
        if operation == "unassign":
            return [d for d in active if d.is_task and not d.is_unassigned]
        if operation in ("progress", "delegate"):
            return [d for d in active if not d.is_unassigned]
        return active

    def deliveries(self, bodies: list[dict[str, Any]], *, final: bool) -> list[dict[str, Any]]:
        """Some versions of the documents (always the latest when `final`), some twice, in any order."""
        by_document: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for body in bodies:
            by_document.setdefault((body["pk"], body["id"]), []).append(body)
        chosen: list[dict[str, Any]] = []
        for versions in by_document.values():
            *earlier, latest = versions
            kept = [body for body in earlier if self.rnd.random() < 0.4]
            if final or self.rnd.random() < 0.6:
                kept.append(latest)
            chosen += kept + [body for body in kept if self.rnd.random() < 0.25]
        self.rnd.shuffle(chosen)
        return chosen

    def deliver(self, *, final: bool = False) -> None:
        bodies = self.world.tape.bodies if final else self.world.tape.bodies[self.delivered_upto :]
        chosen = self.deliveries(bodies, final=final)
        self.delivered_upto = len(self.world.tape.bodies)
        while chosen:
            size = self.rnd.randint(1, 6)
            batch, chosen = chosen[:size], chosen[size:]
            assert self.world.deliver(batch).failed == []


@hypothesis_settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(STEPS, min_size=3, max_size=12),
    rnd=st.randoms(use_true_random=False),
)
def test_any_history_delivered_any_way_converges(shared: FunctionCaller, steps: list[str], rnd: random.Random) -> None:
    story = Story(shared, rnd)
    for step in steps:
        if step == "deliver":
            story.deliver()
        else:
            story.write(step)
    story.deliver(final=True)
    story.world.assert_converged()
