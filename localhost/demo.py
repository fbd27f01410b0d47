"""Demo data for the run command: three directory users, two assignments and one unassigned task.

Seeding goes through the same code the API uses (the user registry and the create use case), with fixed ids,
so running it again against a persistent account changes nothing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import timedelta

from core.auth import Principal
from core.bootstrap import Runtime
from core.directory import DirectoryUser
from core.errors import DuplicateId
from core.models import format_timestamp
from core.services import Command, create_assignment

SCOPE = "Assignments.ReadWrite"


@dataclass(frozen=True)
class DemoUser:
    user_key: str  # the Entra object id (`oid`) their tokens carry
    upn: str
    display_name: str
    groups: tuple[str, ...] = ()


REVIEWERS_GROUP = "7d0e4f1a-5c2b-4a8e-9f3d-6b1c2a0e9d01"
ADA = DemoUser("2f6a7c1e-8b4d-4e0a-9c3b-5d1e7f2a0001", "ada@contoso.com", "Ada Lovelace")
GRACE = DemoUser("2f6a7c1e-8b4d-4e0a-9c3b-5d1e7f2a0002", "grace@contoso.com", "Grace Hopper", (REVIEWERS_GROUP,))
ALAN = DemoUser("2f6a7c1e-8b4d-4e0a-9c3b-5d1e7f2a0003", "alan@contoso.com", "Alan Turing", (REVIEWERS_GROUP,))
DEMO_USERS = (ADA, GRACE, ALAN)

WELCOME_ID = "demo-welcome"
REVIEW_ID = "demo-review"
TASK_ID = "demo-task"


@dataclass(frozen=True)
class DemoData:
    users: tuple[DemoUser, ...]
    assignment_ids: tuple[str, ...]
    task_id: str
    candidate_group: str


def _principal(user: DemoUser, tenant_id: str) -> Principal:
    return Principal(oid=user.user_key, tid=tenant_id, upn=user.upn, scopes=frozenset({SCOPE}), groups=frozenset())


def seed_demo_data(runtime: Runtime) -> DemoData:
    tenant_id = runtime.settings.auth_tenant_ids[0]
    for user in DEMO_USERS:
        user_entry = DirectoryUser(user.user_key, user.upn, user.display_name, account_enabled=True)
        runtime.user_registry.put(tenant_id, user_entry)
    now = runtime.clock()

    def due_in(days: int) -> str:
        return format_timestamp(now + timedelta(days=days))

    bodies = [
        {
            "id": WELCOME_ID,
            "targetType": "chat",
            "targetId": "onboarding-chat",
            "targetTitle": "Say hello to the onboarding assistant",
            "assigneeEmail": GRACE.upn,
            "completionCriteria": "chat_visited",
            "originatorMessage": "Welcome aboard! Start here.",
            "dueAt": due_in(7),
        },
        {
            "id": REVIEW_ID,
            "targetType": "document",
            "targetId": "security-policy-2026",
            "targetTitle": "Read the security policy",
            "assigneeEmail": ALAN.upn,
            "completionCriteria": "manual",
            "dueAt": due_in(3),
            "allowRejection": True,
        },
        {
            "id": TASK_ID,
            "taskKey": "TASK-1001",
            "targetType": "survey",
            "targetId": "quarterly-review",
            "targetTitle": "Review the quarterly survey",
            "completionCriteria": "flow_completed",
            "candidateGroups": [REVIEWERS_GROUP],
        },
    ]
    deps = runtime.deps()
    for body in bodies:
        with contextlib.suppress(DuplicateId):  # seeded by an earlier run against the same account
            create_assignment(Command(principal=_principal(ADA, tenant_id), body=body), deps)
    return DemoData(
        users=DEMO_USERS,
        assignment_ids=(WELCOME_ID, REVIEW_ID),
        task_id=TASK_ID,
        candidate_group=REVIEWERS_GROUP,
    )
