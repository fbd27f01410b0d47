"""The timer's rules (docs/api-rules.md, "Timer: expiry and reminders"), pure: what is due for an assignment
at a given time, and when its next due action falls (for the due index).

With D = `dueAt`, E = `expiresAt`, n = `remindersSent`, l = `lastReminderAt`, for an active assignment
(warnings and reminders only when it has an assignee):
1. expiry when now >= E (it wins over any reminder in the same sweep);
2. one expiry warning when E - warning <= now < E;
3. at most one reminder per sweep, never when n >= max or D is null:
   before due (D - lead <= now < D, l null or l < D - lead), at due (now >= D, l null or l < D),
   repeat (now >= D, l >= D, now >= l + repeat).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from core.models import AssignmentDocument
from core.rules import is_active


@dataclass(frozen=True)
class ReminderPolicy:
    lead: timedelta = timedelta(hours=24)
    repeat: timedelta = timedelta(hours=24)
    expiry_warning: timedelta = timedelta(hours=24)
    max_reminders: int = 5


class Action(StrEnum):
    EXPIRE = "expire"
    WARN = "expiring"
    REMIND = "remind"


def _reminder_times(document: AssignmentDocument, policy: ReminderPolicy) -> list[datetime]:
    """When reminders may next be sent, earliest first; empty when no reminder can come."""
    due, last = document.due_at, document.last_reminder_at
    if due is None or document.reminders_sent >= policy.max_reminders:
        return []
    before = due - policy.lead
    if last is None or last < before:
        return [before]
    if last < due:
        return [due]
    return [last + policy.repeat]


def _warning_time(document: AssignmentDocument, policy: ReminderPolicy) -> datetime | None:
    if document.expires_at is None or document.expiry_warned_at is not None:
        return None
    return document.expires_at - policy.expiry_warning


def due_action(document: AssignmentDocument, policy: ReminderPolicy, now: datetime) -> Action | None:
    """What a sweep at `now` must do to this assignment, if anything."""
    if not is_active(document):
        return None
    expires = document.expires_at
    if expires is not None and now >= expires:
        return Action.EXPIRE
    if document.is_unassigned:
        return None
    warning = _warning_time(document, policy)
    if warning is not None and expires is not None and warning <= now < expires:
        return Action.WARN
    times = _reminder_times(document, policy)
    if times and now >= times[0]:
        return Action.REMIND
    return None


def next_action_at(document: AssignmentDocument, policy: ReminderPolicy) -> datetime | None:
    """When the next due action falls; None for a terminal assignment, or one with nothing ever due."""
    if not is_active(document):
        return None
    candidates: list[datetime] = []
    if document.expires_at is not None:
        candidates.append(document.expires_at)
    if not document.is_unassigned:
        warning = _warning_time(document, policy)
        if warning is not None:
            candidates.append(warning)
        candidates += _reminder_times(document, policy)
    return min(candidates, default=None)
