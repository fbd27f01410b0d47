"""The timer's rules on their own (docs/api-rules.md, "Timer: expiry and reminders"): `due_action` says what a
sweep at a given time must do, `next_action_at` when the due index must file the assignment, and the
aggregate's `timer` operation stamps what the action changes. Pure: no Cosmos, the time is an argument.

With D = `dueAt`, E = `expiresAt`, n = `remindersSent`, l = `lastReminderAt`. The policy's four durations
differ from each other on purpose, so a rule that used the wrong one would fail here. The sweep that runs
these against the emulator is tested in test_sweep.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import aggregate
from core.aggregate import SYSTEM_ACTOR, Context
from core.events import EventType, Role
from core.models import AssignmentDocument, PatchRequest, ReassignRequest, Status
from core.rules import ACTIVE_STATUSES, TERMINAL_STATUSES
from core.services.pipeline import parse_model
from core.timer_rules import Action, ReminderPolicy, due_action, next_action_at
from tests.support.documents import ADAM, CARL, NOW, OLIVIA, assignment, task

POLICY = ReminderPolicy(
    lead=timedelta(hours=48), repeat=timedelta(hours=12), expiry_warning=timedelta(hours=6), max_reminders=3
)
LEAD, REPEAT, WARNING = POLICY.lead, POLICY.repeat, POLICY.expiry_warning
TICK = timedelta(microseconds=1)
D = NOW + timedelta(days=10)
E = NOW + timedelta(days=20)


def at(document: AssignmentDocument, now: datetime, policy: ReminderPolicy = POLICY) -> Action | None:
    return due_action(document, policy, now)


def filed(document: AssignmentDocument, policy: ReminderPolicy = POLICY) -> datetime | None:
    return next_action_at(document, policy)


def assert_acts_first_at(
    document: AssignmentDocument, moment: datetime, action: Action, policy: ReminderPolicy = POLICY
) -> None:
    """Filed in the due index for `moment`, nothing due a tick before it, and `action` due at it."""
    assert filed(document, policy) == moment
    assert at(document, moment - TICK, policy) is None
    assert at(document, moment, policy) is action


def swept(document: AssignmentDocument, now: datetime, policy: ReminderPolicy = POLICY) -> AssignmentDocument:
    """The document after the timer's operation at `now` (the document itself when nothing was due)."""
    decision = aggregate.timer(document, Context(principal=OLIVIA.principal(), now=now), policy)
    return decision.document if decision.document is not None else document


def terminal(status: Status) -> dict[str, Any]:
    """The fields a terminal status requires (docs/api-rules.md, "Model", status invariants)."""
    fields: dict[str, Any] = {"status": status}
    if status == Status.CANCELLED:
        fields.update(cancelled_at=NOW, cancelled_by=OLIVIA.upn)
    elif status == Status.REJECTED:
        fields.update(rejected_at=NOW, rejected_by=ADAM.upn)
    elif status == Status.DELEGATED:
        fields.update(delegated_to="a1.1")
    return fields


# --- reminders ------------------------------------------------------------------------------------------


class TestBeforeDue:
    def test_is_filed_at_d_minus_lead_and_due_from_then_until_d(self) -> None:
        document = assignment(due_at=D)
        assert_acts_first_at(document, D - LEAD, Action.REMIND)
        assert at(document, D - TICK) is Action.REMIND

    def test_an_assignment_created_inside_the_window_is_reminded_at_the_next_sweep(self) -> None:
        document = assignment(due_at=NOW + timedelta(hours=1), created_at=NOW)
        assert filed(document) == NOW + timedelta(hours=1) - LEAD  # in the past: the next sweep acts
        assert at(document, NOW) is Action.REMIND

    def test_an_earlier_reminder_before_the_window_does_not_count(self) -> None:
        # l < D - lead: the reminder was for an earlier due date (a PATCH moved D later).
        document = assignment(due_at=D, last_reminder_at=D - LEAD - TICK, reminders_sent=1)
        assert filed(document) == D - LEAD
        assert at(document, D - LEAD) is Action.REMIND

    def test_sent_once_then_nothing_until_d(self) -> None:
        reminded = swept(assignment(due_at=D), D - LEAD + timedelta(hours=1))
        assert (reminded.reminders_sent, reminded.last_reminder_at) == (1, D - LEAD + timedelta(hours=1))
        assert at(reminded, D - TICK) is None
        assert filed(reminded) == D


class TestAtDue:
    def test_after_the_before_due_reminder_the_next_is_at_d(self) -> None:
        document = assignment(due_at=D, last_reminder_at=D - timedelta(hours=1), reminders_sent=1)
        assert_acts_first_at(document, D, Action.REMIND)

    def test_only_one_even_when_the_before_due_one_was_missed(self) -> None:
        # No sweep ran in the window: at due is one reminder, then the next is a repeat.
        document = assignment(due_at=D)
        late = D + timedelta(hours=3)
        assert at(document, late) is Action.REMIND
        reminded = swept(document, late)
        assert (reminded.reminders_sent, reminded.last_reminder_at) == (1, late)
        assert at(reminded, late) is None
        assert at(reminded, late + REPEAT - TICK) is None
        assert filed(reminded) == late + REPEAT

    def test_lead_zero_means_no_before_due_reminder_only_at_due(self) -> None:
        assert_acts_first_at(assignment(due_at=D), D, Action.REMIND, replace(POLICY, lead=timedelta(0)))


class TestRepeat:
    def test_every_repeat_after_the_last_reminder_once_d_has_passed(self) -> None:
        last = D + timedelta(minutes=5)
        document = assignment(due_at=D, last_reminder_at=last, reminders_sent=1)
        assert_acts_first_at(document, last + REPEAT, Action.REMIND)

    def test_a_late_sweep_sends_one_repeat_not_one_per_period_missed(self) -> None:
        last = D
        document = assignment(due_at=D, last_reminder_at=last, reminders_sent=1)
        much_later = last + 5 * REPEAT + timedelta(minutes=1)
        reminded = swept(document, much_later)
        assert (reminded.reminders_sent, reminded.last_reminder_at) == (2, much_later)
        assert filed(reminded) == much_later + REPEAT


class TestReminderMax:
    def test_the_cap_stops_reminders_and_leaves_nothing_in_the_due_index(self) -> None:
        document = assignment(due_at=D)
        moments = [D - LEAD, D, D + REPEAT, D + 2 * REPEAT, D + 3 * REPEAT]
        for moment in moments:
            document = swept(document, moment)
        assert document.reminders_sent == POLICY.max_reminders == 3
        assert document.last_reminder_at == D + REPEAT
        assert at(document, D + timedelta(days=365)) is None
        assert filed(document) is None

    def test_at_the_cap_the_expiry_is_still_filed_and_still_acts(self) -> None:
        document = assignment(due_at=D, expires_at=E, reminders_sent=3, last_reminder_at=D, expiry_warned_at=NOW)
        assert filed(document) == E
        assert at(document, E) is Action.EXPIRE

    def test_reminder_max_zero_sends_none(self) -> None:
        policy = replace(POLICY, max_reminders=0)
        assert at(assignment(due_at=D), D, policy) is None
        assert filed(assignment(due_at=D), policy) is None

    def test_no_due_date_no_reminder(self) -> None:
        document = assignment(due_at=None)
        assert filed(document) is None
        assert at(document, NOW + timedelta(days=1000)) is None


# --- the expiry warning and expiry ----------------------------------------------------------------------


class TestExpiryWarning:
    def test_once_in_the_window_before_e(self) -> None:
        document = assignment(expires_at=E)
        assert_acts_first_at(document, E - WARNING, Action.WARN)
        warned = swept(document, E - WARNING)
        assert warned.expiry_warned_at == E - WARNING
        assert at(warned, E - TICK) is None
        assert filed(warned) == E

    def test_it_does_not_count_as_a_reminder(self) -> None:
        warned = swept(assignment(expires_at=E, reminders_sent=2, last_reminder_at=NOW), E - WARNING)
        assert (warned.reminders_sent, warned.last_reminder_at) == (2, NOW)

    def test_a_warning_is_sent_even_when_reminders_are_capped(self) -> None:
        document = assignment(due_at=D, expires_at=E, reminders_sent=3, last_reminder_at=D)
        assert at(document, E - WARNING) is Action.WARN

    def test_warning_and_reminder_due_together_warn_first_and_remind_at_the_next_sweep(self) -> None:
        # One action per sweep and assignment: the warning, then (filed for now) the reminder.
        document = assignment(due_at=E - timedelta(hours=1), expires_at=E)
        moment = E - timedelta(hours=2)
        assert at(document, moment) is Action.WARN
        warned = swept(document, moment)
        assert filed(warned) == E - timedelta(hours=1) - LEAD  # past: the current bucket, the next sweep
        assert at(warned, moment) is Action.REMIND
        reminded = swept(warned, moment)
        assert (reminded.reminders_sent, reminded.expiry_warned_at) == (1, moment)

    def test_a_new_expires_at_gets_a_new_warning(self) -> None:
        warned = assignment(expires_at=E, expiry_warned_at=E - WARNING, etag='"v1"')
        later = E + timedelta(days=5)
        edited = aggregate.edit(
            warned,
            Context(principal=OLIVIA.principal(), now=E - WARNING, if_match='"v1"'),
            parse_model(PatchRequest, {"expiresAt": later.isoformat()}),
        ).document
        assert edited is not None
        assert edited.expiry_warned_at is None
        assert filed(edited) == later - WARNING
        assert at(edited, later - WARNING) is Action.WARN

    def test_an_edit_that_keeps_expires_at_keeps_the_warning(self) -> None:
        warned = assignment(expires_at=E, expiry_warned_at=E - WARNING, etag='"v1"')
        edited = aggregate.edit(
            warned,
            Context(principal=OLIVIA.principal(), now=E - WARNING, if_match='"v1"'),
            parse_model(PatchRequest, {"dueAt": (E - timedelta(days=1)).isoformat()}),
        ).document
        assert edited is not None
        assert edited.expiry_warned_at == E - WARNING

    def test_a_zero_warning_is_never_sent(self) -> None:
        assert_acts_first_at(assignment(expires_at=E), E, Action.EXPIRE, replace(POLICY, expiry_warning=timedelta(0)))


class TestExpiry:
    def test_at_e_and_after(self) -> None:
        document = assignment(expires_at=E, expiry_warned_at=E - WARNING)
        assert at(document, E - TICK) is None
        assert at(document, E) is Action.EXPIRE
        assert at(document, E + timedelta(days=400)) is Action.EXPIRE

    def test_expiry_wins_over_a_due_reminder_and_an_unsent_warning(self) -> None:
        document = assignment(due_at=D, expires_at=D + timedelta(hours=1))
        assert at(document, D + timedelta(hours=1)) is Action.EXPIRE

    def test_the_operation_stamps_the_system_actor_and_now(self) -> None:
        document = assignment(due_at=D, expires_at=E, status=Status.IN_PROGRESS, version=4, event_sequence=6)
        moment = E + timedelta(minutes=3)
        decision = aggregate.timer(document, Context(principal=OLIVIA.principal(), now=moment), POLICY)
        expired = decision.document
        assert expired is not None
        assert expired.status == Status.EXPIRED
        assert (expired.updated_by, expired.updated_at, expired.version) == (SYSTEM_ACTOR, moment, 5)
        assert expired.expires_at is not None
        assert expired.expires_at <= expired.updated_at  # the invariant: expired => expiresAt <= updatedAt
        assert (expired.reminders_sent, expired.last_reminder_at) == (0, None)  # expiry is not a reminder
        (event,) = decision.events
        assert (event.type, event.actor, event.at, event.sequence) == (EventType.EXPIRED, SYSTEM_ACTOR, moment, 7)
        assert [(r.user_key, r.role) for r in event.recipients] == [
            (ADAM.key, Role.ASSIGNEE),
            (OLIVIA.key, Role.ORIGINATOR),
        ]
        assert document.status == Status.IN_PROGRESS, "the operation never touches the document it was given"

    def test_an_unassigned_task_expires_and_tells_its_originator(self) -> None:
        decision = aggregate.timer(task(expires_at=E), Context(principal=OLIVIA.principal(), now=E), POLICY)
        (event,) = decision.events
        assert event.type == EventType.EXPIRED
        assert [r.user_key for r in event.recipients] == [OLIVIA.key]


# --- who and what is left alone ---------------------------------------------------------------------------


class TestLeftAlone:
    @pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
    def test_a_terminal_assignment_is_never_touched_nor_filed(self, status: Status) -> None:
        document = assignment(due_at=D, expires_at=E, **terminal(status))
        assert filed(document) is None
        for moment in (D - LEAD, D, E - WARNING, E, E + timedelta(days=30)):
            assert at(document, moment) is None
            assert not aggregate.timer(document, Context(principal=OLIVIA.principal(), now=moment), POLICY).writes

    def test_warnings_and_reminders_only_with_an_assignee(self) -> None:
        unassigned = task(due_at=D, expires_at=E)
        assert filed(unassigned) == E  # only its expiry is filed
        for moment in (D - LEAD, D, D + REPEAT, E - WARNING):
            assert at(unassigned, moment) is None
        assert at(unassigned, E) is Action.EXPIRE

    def test_nothing_due_writes_nothing(self) -> None:
        document = assignment(due_at=D, expires_at=E)
        decision = aggregate.timer(document, Context(principal=OLIVIA.principal(), now=NOW), POLICY)
        assert not decision.writes
        assert decision.events == ()

    @pytest.mark.parametrize("status", sorted(ACTIVE_STATUSES))
    def test_a_reminder_keeps_the_status_and_tells_the_assignee(self, status: Status) -> None:
        document = assignment(due_at=D, status=status)
        decision = aggregate.timer(document, Context(principal=OLIVIA.principal(), now=D), POLICY)
        reminded = decision.document
        assert reminded is not None
        assert (reminded.status, reminded.updated_by, reminded.updated_at) == (status, SYSTEM_ACTOR, D)
        (event,) = decision.events
        assert (event.type, event.actor) == (EventType.REMINDER, SYSTEM_ACTOR)
        assert [(r.user_key, r.role) for r in event.recipients] == [(ADAM.key, Role.ASSIGNEE)]


class TestNewAssigneeResets:
    def test_reassign_sets_n_to_zero_and_l_to_null(self) -> None:
        document = assignment(due_at=D, reminders_sent=3, last_reminder_at=D, etag='"v1"')
        assert filed(document) is None  # capped
        ctx = Context(principal=OLIVIA.principal(), now=D, user=CARL.directory_user(), user_resolved=True)
        new = aggregate.reassign(document, ctx, parse_model(ReassignRequest, {"toUpn": CARL.upn})).document
        assert new is not None
        assert (new.reminders_sent, new.last_reminder_at) == (0, None)
        assert filed(new) == D - LEAD
        assert at(new, D) is Action.REMIND

    def test_txn_assign_sets_n_to_zero_and_l_to_null(self) -> None:
        held_before = task(due_at=D, reminders_sent=2, last_reminder_at=D)
        ctx = Context(principal=OLIVIA.principal(), now=D, user=CARL.directory_user(), user_resolved=True)
        new = aggregate.assign(held_before, ctx, CARL.key).document
        assert new is not None
        assert (new.assignee_user_key, new.reminders_sent, new.last_reminder_at) == (CARL.key, 0, None)
        assert at(new, D) is Action.REMIND


# --- the due index never files late, and due_action is the documented rules --------------------------------


def documented(document: AssignmentDocument, policy: ReminderPolicy, now: datetime) -> Action | None:
    """The rules as docs/api-rules.md writes them, literally (an oracle independent of the implementation)."""
    if document.status not in ACTIVE_STATUSES:
        return None
    due, expires, sent, last = document.due_at, document.expires_at, document.reminders_sent, document.last_reminder_at
    if expires is not None and now >= expires:
        return Action.EXPIRE
    if document.is_unassigned:
        return None
    if expires is not None and document.expiry_warned_at is None and expires - policy.expiry_warning <= now < expires:
        return Action.WARN
    if due is None or sent >= policy.max_reminders:
        return None
    before_due = due - policy.lead <= now < due and (last is None or last < due - policy.lead)
    at_due = now >= due and (last is None or last < due)
    repeat = now >= due and last is not None and last >= due and now >= last + policy.repeat
    return Action.REMIND if before_due or at_due or repeat else None


HOURS = st.integers(min_value=-24 * 40, max_value=24 * 40).map(lambda hours: NOW + timedelta(hours=hours))
MINUTES = st.integers(min_value=-60 * 24 * 40, max_value=60 * 24 * 40).map(lambda m: NOW + timedelta(minutes=m))
POLICIES = st.builds(
    ReminderPolicy,
    lead=st.integers(0, 72).map(lambda h: timedelta(hours=h)),
    repeat=st.integers(1, 72).map(lambda h: timedelta(hours=h)),
    expiry_warning=st.integers(0, 72).map(lambda h: timedelta(hours=h)),
    max_reminders=st.integers(0, 6),
)


@st.composite
def documents(draw: st.DrawFn) -> AssignmentDocument:
    status = draw(st.sampled_from(sorted(Status)))
    fields: dict[str, Any] = {
        "due_at": draw(st.none() | HOURS),
        "expires_at": draw(st.none() | HOURS),
        "last_reminder_at": draw(st.none() | MINUTES),
        "reminders_sent": draw(st.integers(0, 7)),
        "expiry_warned_at": draw(st.none() | MINUTES),
        **terminal(status),
    }
    if draw(st.booleans()):
        return assignment(**fields)
    return task(**fields)


@given(documents(), POLICIES, MINUTES)
def test_due_action_is_the_documented_rules(
    document: AssignmentDocument, policy: ReminderPolicy, now: datetime
) -> None:
    assert due_action(document, policy, now) is documented(document, policy, now)


@given(documents(), POLICIES, MINUTES)
def test_the_index_files_the_first_moment_anything_is_due(
    document: AssignmentDocument, policy: ReminderPolicy, now: datetime
) -> None:
    """Nothing is due before the filed time (the sweep never misses an action by reading only the buckets up to
    now), and something is due at it (an entry never waits in the index for nothing)."""
    first = next_action_at(document, policy)
    if first is None:
        assert due_action(document, policy, now) is None
        return
    assert due_action(document, policy, first) is not None
    if now < first:
        assert due_action(document, policy, now) is None
