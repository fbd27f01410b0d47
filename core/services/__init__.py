"""The use cases: one function each, taking (command, principal, deps) and returning an `Outcome`."""

from core.services.assignments import create_assignment, get_assignment
from core.services.common import Deps, Outcome
from core.services.delegation import delegate_assignment
from core.services.lifecycle import (
    cancel_assignment,
    complete_assignment,
    edit_assignment,
    reassign_assignment,
    record_event,
    reject_assignment,
)
from core.services.listing import list_assignments
from core.services.txn import assign_task, unassign_task
from core.services.users import UserOutcome, put_user

__all__ = [
    "Deps",
    "Outcome",
    "UserOutcome",
    "assign_task",
    "cancel_assignment",
    "complete_assignment",
    "create_assignment",
    "delegate_assignment",
    "edit_assignment",
    "get_assignment",
    "list_assignments",
    "put_user",
    "reassign_assignment",
    "record_event",
    "reject_assignment",
    "unassign_task",
]
