"""Events: what every change to an assignment leaves behind (docs/api-rules.md, "Events and notifications").

An operation of `core.aggregate` emits events; each becomes an immutable document in the assignment's
partition, written in the same transactional batch as the change (the transactional outbox). History reads
them back in order; the notifier sends each one that has recipients as one queue message. Who receives an
event is decided here, from the assignment as the change left it, so the notifier needs no other read.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

from pydantic import Field

from core.hygiene import Timestamp, format_timestamp
from core.models import AssignmentDocument, CamelModel

DOC_TYPE_EVENT = "event"
# Event ids are derived, so a redelivered or re-decided write names the same event the same way.
_EVENT_NAMESPACE = uuid.UUID("6f1d3c1e-2b1a-4c33-9a57-0c1e6f0b9a11")


class EventType(StrEnum):
    CREATED = "created"
    ASSIGNED = "assigned"
    DELEGATED = "delegated"
    UNASSIGNED = "unassigned"
    REASSIGNED = "reassigned"
    STARTED = "started"
    ATTEMPT_CLOSED = "attemptClosed"
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EDITED = "edited"
    REMINDER = "reminder"
    EXPIRING = "expiring"
    EXPIRED = "expired"


class Role(StrEnum):
    ASSIGNEE = "assignee"
    PREVIOUS_ASSIGNEE = "previousAssignee"
    ORIGINATOR = "originator"


class Recipient(CamelModel):
    user_key: str
    upn: str | None
    role: Role


class EventDocument(CamelModel):
    """One event, stored beside its assignment and never changed."""

    id: str
    pk: str
    doc_type: str = DOC_TYPE_EVENT
    event_id: str
    tenant_id: str
    assignment_id: str
    type: EventType
    at: Timestamp
    actor: str
    sequence: int
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    reason: str | None = None
    recipients: list[Recipient] = Field(default_factory=list)
    assignment: dict[str, Any] = Field(default_factory=dict)

    def to_cosmos(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def history_item(self) -> dict[str, Any]:
        """What `GET /assignments/{id}/history` shows: `from`, `to` and `reason` only where they apply."""
        item: dict[str, Any] = {
            "eventId": self.event_id,
            "type": str(self.type),
            "at": format_timestamp(self.at),
            "actor": self.actor,
            "sequence": self.sequence,
        }
        for name, value in (("from", self.from_), ("to", self.to), ("reason", self.reason)):
            if value is not None:
                item[name] = value
        return item

    def message(self) -> dict[str, Any]:
        """The notification (docs/api-rules.md, "Events and notifications")."""
        return {
            "eventId": self.event_id,
            "type": str(self.type),
            "occurredAt": format_timestamp(self.at),
            "tenantId": self.tenant_id,
            "assignmentId": self.assignment_id,
            "sequence": self.sequence,
            "recipients": [recipient.model_dump(mode="json", by_alias=True) for recipient in self.recipients],
            "assignment": self.assignment,
        }


def event_document_id(assignment_id: str, sequence: int) -> str:
    """`:` never occurs in an assignment id, and the zero-padded sequence keeps ids in order."""
    return f"{assignment_id}:evt:{sequence:010d}"


def summary_of(document: AssignmentDocument) -> dict[str, Any]:
    """What a message says of the assignment: enough to render a notice without reading it."""
    fields = ("id", "target_type", "target_id", "target_title", "status", "due_at", "expires_at")
    shown = document.model_dump(mode="json", by_alias=True, include=set(fields))
    shown.update(assigneeEmail=document.assignee_email, originatorEmail=document.originator_email)
    return shown


def _assignee(document: AssignmentDocument, role: Role = Role.ASSIGNEE) -> list[Recipient]:
    if document.assignee_user_key is None:
        return []
    return [Recipient(user_key=document.assignee_user_key, upn=document.assignee_email, role=role)]


def _originator(document: AssignmentDocument) -> list[Recipient]:
    return [Recipient(user_key=document.originator_user_key, upn=document.originator_email, role=Role.ORIGINATOR)]


def recipients_of(
    event_type: EventType,
    document: AssignmentDocument,
    *,
    previous: AssignmentDocument | None = None,
    successor: AssignmentDocument | None = None,
) -> list[Recipient]:
    """Who hears of an event (the table of docs/api-rules.md, "Events and notifications"). `previous` is
    the assignment before the change, for the events that name a previous assignee."""
    before = previous or document
    match event_type:
        case EventType.ASSIGNED | EventType.REMINDER | EventType.EXPIRING | EventType.CANCELLED:
            return _assignee(document)
        case EventType.DELEGATED:
            new = _assignee(successor) if successor is not None else []
            return new + _assignee(before, Role.PREVIOUS_ASSIGNEE) + _originator(document)
        case EventType.REASSIGNED:
            return _assignee(document) + _assignee(before, Role.PREVIOUS_ASSIGNEE)
        case EventType.UNASSIGNED:
            return _assignee(before, Role.PREVIOUS_ASSIGNEE)
        case EventType.REJECTED | EventType.COMPLETED | EventType.FAILED:
            return _originator(document)
        case EventType.EXPIRED:
            return _assignee(document) + _originator(document)
        case _:
            # created, started, attemptClosed, edited: history only.
            return []


def new_event(
    document: AssignmentDocument,
    event_type: EventType,
    *,
    at: Any,
    actor: str,
    previous: AssignmentDocument | None = None,
    successor: AssignmentDocument | None = None,
    from_: str | None = None,
    to: str | None = None,
    reason: str | None = None,
) -> EventDocument:
    """The next event of `document`, numbered from its sequence (which this advances)."""
    document.event_sequence += 1
    sequence = document.event_sequence
    return EventDocument(
        id=event_document_id(document.id, sequence),
        pk=document.pk,
        event_id=str(uuid.uuid5(_EVENT_NAMESPACE, f"{document.tenant_id}/{document.id}/{sequence}")),
        tenant_id=document.tenant_id,
        assignment_id=document.id,
        type=event_type,
        at=at,
        actor=actor,
        sequence=sequence,
        **{"from": from_},
        to=to,
        reason=reason,
        recipients=recipients_of(event_type, document, previous=previous, successor=successor),
        assignment=summary_of(document),
    )
