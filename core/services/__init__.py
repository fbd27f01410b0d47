"""The use cases: one function each. Writes to an assignment take a `Command` and `Deps` and return an
`Outcome`; every one of them runs the one loop of `core.services.pipeline`."""

from core.services.assignments import create_assignment, get_assignment
from core.services.history import get_history
from core.services.lifecycle import (
    cancel_assignment,
    complete_assignment,
    delegate_assignment,
    edit_assignment,
    reassign_assignment,
    record_event,
    reject_assignment,
)
from core.services.listing import list_assignments, list_roster, summarize_assignments, summarize_roster
from core.services.pipeline import Command, Deps, Outcome, UseCase
from core.services.txn import assign_task, unassign_task
from core.services.users import UserOutcome, get_user, put_user

__all__ = [
    "Command",
    "Deps",
    "Outcome",
    "UseCase",
    "UserOutcome",
    "assign_task",
    "cancel_assignment",
    "complete_assignment",
    "create_assignment",
    "delegate_assignment",
    "edit_assignment",
    "get_assignment",
    "get_history",
    "get_user",
    "list_assignments",
    "list_roster",
    "put_user",
    "reassign_assignment",
    "record_event",
    "reject_assignment",
    "summarize_assignments",
    "summarize_roster",
    "unassign_task",
]
