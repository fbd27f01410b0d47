"""The views the change feed keeps (docs/api-rules.md, "Lists, views and history"), pure: which view entries
an assignment, as stored, implies. The projector (`core.services.projection`) writes exactly these and
removes whatever an earlier version implied and this one does not.

Every view partition is one list, so every list is a single-partition query:

    inbox|{tenant}|{assigneeKey}          what a user holds as assignee
    sent|{tenant}|{originatorKey}         what a user sent
    candidates|{tenant}                   unassigned active tasks, with their candidate groups
    target|{tenant}|{type}|{digest}       the roster of one target (its id is hashed: any characters)
    due|{hour}                            the timer's due index: each active assignment's next due action
    projection|{tenant}|{rootId}          what was projected for each assignment, and at which version

Room is left for per-schedule rosters (`schedule|{tenant}|{scheduleId}`) the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from core.hygiene import format_timestamp
from core.models import AssignmentDocument, root_id_of
from core.rules import ACTIVE_STATUSES, is_active
from core.timer_rules import ReminderPolicy, next_action_at

DOC_TYPE_VIEW = "view"
DOC_TYPE_PROJECTION = "projection"
# A due date that sorts after every real one: no due date comes last.
NO_DUE_DATE = "~"


class ViewKind(StrEnum):
    INBOX = "inbox"
    SENT = "sent"
    CANDIDATES = "candidates"
    TARGET = "target"
    DUE = "due"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:40]


def inbox_pk(tenant_id: str, user_key: str) -> str:
    return f"inbox|{tenant_id}|{_digest(user_key)}"


def sent_pk(tenant_id: str, user_key: str) -> str:
    return f"sent|{tenant_id}|{_digest(user_key)}"


def candidates_pk(tenant_id: str) -> str:
    return f"candidates|{tenant_id}"


def target_pk(tenant_id: str, target_type: str, target_id: str) -> str:
    return f"target|{tenant_id}|{target_type}|{_digest(target_id)}"


def due_bucket(moment: datetime) -> str:
    """The hour a due action falls in: a sweep reads only the buckets up to now."""
    return moment.astimezone(UTC).strftime("%Y%m%d%H")


def due_pk(bucket: str) -> str:
    return f"due|{bucket}"


def projection_pk(tenant_id: str, assignment_id: str) -> str:
    return f"projection|{tenant_id}|{root_id_of(assignment_id)}"


@dataclass(frozen=True)
class ViewKey:
    pk: str
    id: str


@dataclass(frozen=True)
class ViewEntry:
    key: ViewKey
    body: dict[str, Any]


def readers_of(document: AssignmentDocument) -> list[str]:
    """The user keys that may read it, for rosters seen by non-admins (`rules.can_read`, by key)."""
    keys = [document.originator_user_key, document.assignee_user_key, document.assigned_by_user_key]
    keys += document.delegation_chain_user_keys
    return sorted({key for key in keys if key})


def _entry(kind: ViewKind, pk: str, document: AssignmentDocument, public: dict[str, Any]) -> ViewEntry:
    due = public["dueAt"]
    offered = document.is_task and document.is_unassigned and is_active(document)
    return ViewEntry(
        ViewKey(pk, document.id),
        {
            "id": document.id,
            "pk": pk,
            "docType": DOC_TYPE_VIEW,
            "kind": str(kind),
            "tenantId": document.tenant_id,
            "assignmentId": document.id,
            "version": document.version,
            "status": str(document.status),
            "active": document.status in ACTIVE_STATUSES,
            "createdAt": public["createdAt"],
            "dueAt": due,
            # One field orders by due date, undated last, ties by id: the emulator orders by one field.
            "dueSort": f"{due or NO_DUE_DATE}|{document.id}",
            "readers": readers_of(document),
            "groups": sorted(document.candidate_groups) if offered else [],
            "assignment": public,
        },
    )


def view_entries(
    document: AssignmentDocument, policy: ReminderPolicy, *, now: datetime | None = None
) -> list[ViewEntry]:
    """Every entry the assignment implies, as stored now. A due action already past when it is projected
    (`now`) is filed in the current hour's bucket, never behind the sweep's cursor."""
    public = document.public_json()
    tenant = document.tenant_id
    entries = [
        _entry(ViewKind.SENT, sent_pk(tenant, document.originator_user_key), document, public),
        _entry(ViewKind.TARGET, target_pk(tenant, str(document.target_type), document.target_id), document, public),
    ]
    if document.assignee_user_key is not None:
        entries.append(_entry(ViewKind.INBOX, inbox_pk(tenant, document.assignee_user_key), document, public))
    if document.is_task and document.is_unassigned and is_active(document):
        entries.append(_entry(ViewKind.CANDIDATES, candidates_pk(tenant), document, public))
    due_at = next_action_at(document, policy)
    if due_at is not None:
        pk = due_pk(due_bucket(due_at if now is None else max(due_at, now)))
        entries.append(
            ViewEntry(
                ViewKey(pk, f"{tenant}|{document.id}"),
                {
                    "id": f"{tenant}|{document.id}",
                    "pk": pk,
                    "docType": DOC_TYPE_VIEW,
                    "kind": str(ViewKind.DUE),
                    "tenantId": tenant,
                    "assignmentId": document.id,
                    "version": document.version,
                    "dueAt": format_timestamp(due_at),
                },
            )
        )
    return entries
