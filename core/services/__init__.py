"""The use cases: one function each, taking (command, principal, deps) and returning an `Outcome`."""

from core.services.assignments import create_assignment, get_assignment
from core.services.common import Deps, Outcome

__all__ = ["Deps", "Outcome", "create_assignment", "get_assignment"]
