"""The use cases: one function each, taking (command, principal, deps) and returning an `Outcome`."""

from core.services.assignments import create_assignment, get_assignment
from core.services.common import Deps, Outcome
from core.services.delegation import delegate_assignment
from core.services.txn import assign_task, unassign_task
from core.services.users import UserOutcome, put_user

__all__ = [
    "Deps",
    "Outcome",
    "UserOutcome",
    "assign_task",
    "create_assignment",
    "delegate_assignment",
    "get_assignment",
    "put_user",
    "unassign_task",
]
