"""Who hears of each event (the table of docs/api-rules.md, "Events and notifications"), decided by the
operations of `core.aggregate` from the assignment as the change left it, and the message each becomes; pure,
no Cosmos. Sending them through the change feed to Azurite is tested in test_projection.py."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest

from core import aggregate
from core.events import EventDocument, EventType, Role, recipients_of, summary_of
from core.models import (
    AssignmentDocument,
    CancelRequest,
    CompleteRequest,
    CreateRequest,
    DelegateRequest,
    EventRequest,
    PatchRequest,
    ReassignRequest,
    RejectRequest,
    Status,
)
from core.queues import MAX_MESSAGE_BYTES
from core.services.pipeline import parse_model
from core.timer_rules import ReminderPolicy
from tests.support.documents import (
    ADAM,
    CARL,
    DORA,
    NOW,
    OLIVIA,
    OTHER_TENANT,
    TENANT,
    Person,
    assignment,
    context,
    task,
)

MESSAGE_FIELDS = {
    "eventId",
    "type",
    "occurredAt",
    "tenantId",
    "assignmentId",
    "sequence",
    "recipients",
    "assignment",
}
SUMMARY_FIELDS = {
    "id",
    "targetType",
    "targetId",
    "targetTitle",
    "status",
    "dueAt",
    "expiresAt",
    "assigneeEmail",
    "originatorEmail",
}
# The table: every event type, and whether it notifies anyone at all.
HISTORY_ONLY = {EventType.CREATED, EventType.STARTED, EventType.ATTEMPT_CLOSED, EventType.EDITED}


def heard(event: EventDocument) -> list[tuple[str, str | None, str]]:
    return [(r.user_key, r.upn, str(r.role)) for r in event.recipients]


def assignee(person: Person) -> tuple[str, str, str]:
    return (person.key, person.upn, "assignee")


def previous(person: Person) -> tuple[str, str, str]:
    return (person.key, person.upn, "previousAssignee")


def originator(person: Person = OLIVIA) -> tuple[str, str, str]:
    return (person.key, person.upn, "originator")


def only(decision: aggregate.Decision, event_type: EventType) -> EventDocument:
    (event,) = [event for event in decision.events if event.type == event_type]
    return event


def notified(decision: aggregate.Decision) -> dict[str, list[tuple[str, str | None, str]]]:
    """The events of a decision that reach someone, by type."""
    return {str(event.type): heard(event) for event in decision.events if event.recipients}


def create(assignee_person: Person | None, **body: Any) -> aggregate.Decision:
    request: dict[str, Any] = {"targetType": "chat", "targetId": "chat-1", "completionCriteria": "manual", **body}
    if assignee_person is not None:
        request["assigneeEmail"] = assignee_person.upn
    return aggregate.create(
        parse_model(CreateRequest, request),
        context(OLIVIA.principal(), user=assignee_person.directory_user() if assignee_person else None),
        assignment_id="a1",
        originator_email=OLIVIA.upn,
        originator_user_key=OLIVIA.key,
    )


def progress(document: AssignmentDocument, kind: str, **fields: Any) -> aggregate.Decision:
    body = {"eventId": uuid.uuid4().hex, "type": kind, "occurredAt": NOW.isoformat(), **fields}
    event = parse_model(EventRequest, body)
    return aggregate.record_event(document, context(ADAM.principal()), event, marker_id="m")


class TestRecipientsPerTheTable:
    def test_create_with_an_assignee_notifies_the_assignee_of_assigned(self) -> None:
        decision = create(ADAM)
        assert [str(event.type) for event in decision.events] == ["created", "assigned"]
        assert notified(decision) == {"assigned": [assignee(ADAM)]}

    def test_an_unassigned_task_notifies_no_one_until_assigned(self) -> None:
        created = create(None, taskKey="t", candidateGroups=["g"])
        assert [str(event.type) for event in created.events] == ["created"]
        assert notified(created) == {}
        document = created.document
        assert document is not None
        cancelled = aggregate.cancel(document, context(OLIVIA.principal()), CancelRequest())
        assert notified(cancelled) == {}, "cancelling a task nobody holds tells nobody"

    def test_txn_assign_notifies_the_new_assignee(self) -> None:
        decision = aggregate.assign(
            task(), context(OLIVIA.principal(), user=DORA.directory_user(), user_resolved=True), DORA.key
        )
        assert notified(decision) == {"assigned": [assignee(DORA)]}

    def test_txn_unassign_notifies_the_previous_assignee(self) -> None:
        held = task(assignee_email=ADAM.upn, assignee_user_key=ADAM.key, assigned_by=OLIVIA.upn)
        decision = aggregate.unassign(held, context(OLIVIA.principal()))
        assert notified(decision) == {"unassigned": [previous(ADAM)]}

    def test_reassign_notifies_the_new_and_the_previous_assignee(self) -> None:
        request = parse_model(ReassignRequest, {"toUpn": DORA.upn})
        ctx = context(OLIVIA.principal(), user=DORA.directory_user(), user_resolved=True)
        decision = aggregate.reassign(assignment(), ctx, request)
        assert notified(decision) == {"reassigned": [assignee(DORA), previous(ADAM)]}

    def test_delegate_notifies_the_new_assignee_the_previous_one_and_the_originator(self) -> None:
        ctx = context(ADAM.principal(), user=DORA.directory_user(), user_resolved=True)
        decision = aggregate.delegate(assignment(), ctx, parse_model(DelegateRequest, {"toUpn": DORA.upn}))
        assert notified(decision) == {"delegated": [assignee(DORA), previous(ADAM), originator()]}
        delegated, created = decision.events
        assert delegated.assignment_id == "a1", "the delegated event belongs to the original"
        assert (created.type, created.assignment_id, created.recipients) == (EventType.CREATED, "a1.1", [])

    def test_a_second_delegation_names_the_delegate_before_as_previous(self) -> None:
        successor = assignment(
            id="a1.1",
            assignee_email=DORA.upn,
            assignee_user_key=DORA.key,
            delegation_chain=[ADAM.upn],
            delegation_chain_user_keys=[ADAM.key],
        )
        ctx = context(DORA.principal(), user=CARL.directory_user(), user_resolved=True)
        decision = aggregate.delegate(successor, ctx, parse_model(DelegateRequest, {"toUpn": CARL.upn}))
        assert notified(decision) == {"delegated": [assignee(CARL), previous(DORA), originator()]}

    def test_cancel_notifies_the_assignee(self) -> None:
        decision = aggregate.cancel(assignment(), context(OLIVIA.principal()), CancelRequest(reason="no longer needed"))
        assert notified(decision) == {"cancelled": [assignee(ADAM)]}

    def test_reject_notifies_the_originator(self) -> None:
        decision = aggregate.reject(assignment(allow_rejection=True), context(ADAM.principal()), RejectRequest())
        assert notified(decision) == {"rejected": [originator()]}

    def test_complete_notifies_the_originator(self) -> None:
        decision = aggregate.complete(
            assignment(completion_criteria="manual"), context(ADAM.principal()), CompleteRequest()
        )
        assert notified(decision) == {"completed": [originator()]}

    def test_completion_by_a_progress_event_notifies_the_originator_only(self) -> None:
        decision = progress(assignment(completion_criteria="chat_visited"), "visited")
        assert [str(event.type) for event in decision.events][-1] == "completed"
        assert notified(decision) == {"completed": [originator()]}

    def test_failure_notifies_the_originator(self) -> None:
        document = assignment(completion_criteria="flow_passed", pass_score=80, max_attempts=1)
        decision = progress(document, "flow_completed", score=10)
        assert notified(decision) == {"failed": [originator()]}

    def test_progress_and_edits_go_to_history_only(self) -> None:
        started = progress(assignment(completion_criteria="flow_completed"), "flow_started")
        assert [str(event.type) for event in started.events] == ["started"]
        assert notified(started) == {}
        patch = parse_model(PatchRequest, {"targetTitle": "New title"})
        edited = aggregate.edit(assignment(etag='"e"'), context(OLIVIA.principal(), if_match='"e"'), patch)
        assert [str(event.type) for event in edited.events] == ["edited"]
        assert notified(edited) == {}

    def test_the_timer_expires_warns_and_reminds(self) -> None:
        policy = ReminderPolicy()
        expiring = assignment(expires_at=NOW + timedelta(hours=1))
        warned = aggregate.timer(expiring, context(OLIVIA.principal()), policy)
        assert notified(warned) == {"expiring": [assignee(ADAM)]}
        later = context(OLIVIA.principal(), now=NOW + timedelta(hours=2))
        assert notified(aggregate.timer(expiring, later, policy)) == {"expired": [assignee(ADAM), originator()]}
        due = assignment(due_at=NOW + timedelta(hours=1))
        assert notified(aggregate.timer(due, context(OLIVIA.principal()), policy)) == {"reminder": [assignee(ADAM)]}

    def test_an_expired_task_nobody_holds_tells_only_the_originator(self) -> None:
        expired = aggregate.timer(
            task(expires_at=NOW + timedelta(hours=1)),
            context(OLIVIA.principal(), now=NOW + timedelta(hours=2)),
            ReminderPolicy(),
        )
        assert notified(expired) == {"expired": [originator()]}

    @pytest.mark.parametrize("event_type", sorted(HISTORY_ONLY))
    def test_history_only_types_have_no_recipients_whatever_the_assignment(self, event_type: EventType) -> None:
        assert recipients_of(event_type, assignment(), previous=assignment(), successor=assignment()) == []

    def test_recipients_are_named_by_user_key_with_the_upn_for_display(self) -> None:
        renamed = ADAM.renamed("adam.new@contoso.com")
        document = assignment(assignee_email=renamed.upn, assignee_user_key=renamed.key)
        (recipient,) = recipients_of(EventType.CANCELLED, document)
        assert (recipient.user_key, recipient.upn, recipient.role) == (ADAM.key, renamed.upn, Role.ASSIGNEE)


class TestMessage:
    def delegated(self) -> EventDocument:
        ctx = context(ADAM.principal(), user=DORA.directory_user(), user_resolved=True)
        decision = aggregate.delegate(assignment(), ctx, parse_model(DelegateRequest, {"toUpn": DORA.upn}))
        return only(decision, EventType.DELEGATED)

    def test_the_message_has_the_documented_shape(self) -> None:
        event = self.delegated()
        message = event.message()
        assert set(message) == MESSAGE_FIELDS
        assert message["eventId"] == event.event_id
        assert message["type"] == "delegated"
        assert message["occurredAt"] == "2030-01-01T12:00:00.000Z"
        assert (message["tenantId"], message["assignmentId"], message["sequence"]) == (TENANT, "a1", 1)
        assert message["recipients"] == [
            {"userKey": DORA.key, "upn": DORA.upn, "role": "assignee"},
            {"userKey": ADAM.key, "upn": ADAM.upn, "role": "previousAssignee"},
            {"userKey": OLIVIA.key, "upn": OLIVIA.upn, "role": "originator"},
        ]
        assert set(message["assignment"]) == SUMMARY_FIELDS
        assert message["assignment"]["status"] == "delegated"
        json.dumps(message)

    def test_the_message_is_as_the_stored_event_reads_back(self) -> None:
        event = self.delegated()
        assert EventDocument.model_validate(event.to_cosmos()).message() == event.message()

    def test_the_largest_message_stays_under_48_kib(self) -> None:
        # Every field a message carries at its limit, in four-byte characters where text is free.
        wide = "\U0001f600"
        long_upn = ("a" * 54 + "@" + "b" * 190 + ".com")[:256]
        document = assignment(
            target_id=wide * 256,
            target_title=wide * 512,
            assignee_email=long_upn,
            assignee_user_key="k" * 128,
            originator_email=long_upn,
            originator_user_key="o" * 128,
            due_at=NOW,
            expires_at=NOW,
        )
        previous_holder = assignment(assignee_email=long_upn, assignee_user_key="p" * 128)
        recipients = recipients_of(EventType.DELEGATED, document, previous=previous_holder, successor=document)
        message = EventDocument(
            id="x",
            pk="p",
            event_id=str(uuid.uuid4()),
            tenant_id=TENANT,
            assignment_id="a" * 64,
            type=EventType.DELEGATED,
            at=NOW,
            actor=long_upn,
            sequence=2**31,
            recipients=recipients,
            assignment=summary_of(document),
        ).message()
        size = len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode())
        assert size < MAX_MESSAGE_BYTES, size
        assert len(message["recipients"]) == 3

    def test_event_ids_are_derived_per_tenant_assignment_and_sequence(self) -> None:
        first, again = create(ADAM), create(ADAM)
        assert [event.event_id for event in first.events] == [event.event_id for event in again.events]
        assert len({event.event_id for event in first.events}) == 2
        other_tenant = aggregate.create(
            parse_model(
                CreateRequest,
                {"targetType": "chat", "targetId": "chat-1", "completionCriteria": "manual", "assigneeEmail": ADAM.upn},
            ),
            context(OLIVIA.principal(tenant=OTHER_TENANT), user=ADAM.directory_user()),
            assignment_id="a1",
            originator_email=OLIVIA.upn,
            originator_user_key=OLIVIA.key,
        )
        assert not {e.event_id for e in other_tenant.events} & {e.event_id for e in first.events}
        for event in first.events:
            uuid.UUID(event.event_id)

    def test_each_event_is_numbered_from_the_assignment_it_belongs_to(self) -> None:
        created = create(ADAM).document
        assert created is not None
        assert created.event_sequence == 2
        cancelled = aggregate.cancel(created, context(OLIVIA.principal()), CancelRequest())
        (event,) = cancelled.events
        assert (event.sequence, event.id) == (3, "a1:evt:0000000003")
        assert cancelled.document is not None
        assert cancelled.document.status == Status.CANCELLED
