"""Stored assignments and the people they name, built in memory for the pure tests of `core.rules` and
`core.aggregate` (no emulator, no routes).

Every person's user key differs from their UPN on purpose: rights follow keys (docs/api-rules.md, "Identity and
tenancy"), so a test that passed only because a UPN matched would fail here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.aggregate import Context
from core.auth import ROLE_ADMIN, ROLE_REPORT, SCOPE_READ_WRITE, Principal
from core.directory import DirectoryUser
from core.models import AssignmentDocument, CompletionCriteria, partition_key_of

TENANT = "tenant-a"
OTHER_TENANT = "tenant-b"
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Person:
    """A user: the UPN shown in actor fields, and the key (`oid`) that decides what they may do."""

    upn: str
    key: str

    def principal(self, *, tenant: str = TENANT, groups: frozenset[str] = frozenset()) -> Principal:
        """A delegated user token with the route's scope."""
        return Principal(oid=self.key, tid=tenant, upn=self.upn, scopes=frozenset({SCOPE_READ_WRITE}), groups=groups)

    def directory_user(self, *, enabled: bool = True) -> DirectoryUser:
        return DirectoryUser(user_key=self.key, upn=self.upn, display_name=None, account_enabled=enabled)

    def renamed(self, upn: str) -> Person:
        """The same user under another UPN."""
        return Person(upn=upn, key=self.key)

    def impostor(self) -> Person:
        """Another user holding this one's UPN (recycled, or in another tenant): same UPN, another key."""
        return Person(upn=self.upn, key=f"{self.key}-impostor")


OLIVIA = Person("olivia@contoso.com", "key-olivia")  # the originator, and the assigner
ADAM = Person("adam@contoso.com", "key-adam")  # the assignee
DORA = Person("dora@contoso.com", "key-dora")  # a delegate
CARL = Person("carl@contoso.com", "key-carl")  # someone else


def admin_app(*, tenant: str = TENANT) -> Principal:
    return Principal(
        oid="key-admin-app", tid=tenant, app_id="admin-app", is_app_only=True, roles=frozenset({ROLE_ADMIN})
    )


def reporter_app(*, tenant: str = TENANT) -> Principal:
    return Principal(
        oid="key-reporter-app", tid=tenant, app_id="reporter-app", is_app_only=True, roles=frozenset({ROLE_REPORT})
    )


def context(principal: Principal, **fields: Any) -> Context:
    """What an operation of `core.aggregate` is decided with: `principal` acting at NOW unless `now` is given."""
    return Context(principal=principal, now=fields.pop("now", NOW), **fields)


def assignment(**overrides: Any) -> AssignmentDocument:
    """Olivia's assignment `a1` for Adam, as create stores it; `pk` follows the tenant and id given."""
    fields: dict[str, Any] = {
        "id": "a1",
        "tenant_id": TENANT,
        "target_type": "chat",
        "target_id": "chat-1",
        "assignee_email": ADAM.upn,
        "assignee_user_key": ADAM.key,
        "assigned_by": OLIVIA.upn,
        "assigned_by_user_key": OLIVIA.key,
        "originator_email": OLIVIA.upn,
        "originator_user_key": OLIVIA.key,
        "completion_criteria": CompletionCriteria.FLOW_COMPLETED,
        "created_at": NOW,
        "updated_at": NOW,
        "created_by": OLIVIA.upn,
        "updated_by": OLIVIA.upn,
    }
    fields.update(overrides)
    fields.setdefault("pk", partition_key_of(fields["tenant_id"], fields["id"]))
    return AssignmentDocument(**fields)


def task(**overrides: Any) -> AssignmentDocument:
    """Olivia's unassigned task, offered to the candidate group `g`."""
    fields: dict[str, Any] = {
        "task_key": "t",
        "candidate_groups": ["g"],
        "assignee_email": None,
        "assignee_user_key": None,
        "assigned_by": None,
        "assigned_by_user_key": None,
    }
    return assignment(**(fields | overrides))
