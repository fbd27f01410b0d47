"""The delegation rules on their own: the order of the state checks, and the successor's fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core import errors
from core.directory import DirectoryUser
from core.models import AssignmentDocument, AssignmentFields, Attempt, Status
from core.rules import check_delegate, check_delegation
from core.services.common import parse_model
from core.services.delegation import DelegateCommand, build_successor, successor_id

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
ASSIGNEE = "adam@contoso.com"
DELEGATE = DirectoryUser(user_key="oid-dora", upn="dora@contoso.com", display_name="Dora", account_enabled=True)


def original(**overrides: Any) -> AssignmentDocument:
    fields: dict[str, Any] = {
        "id": "root1",
        "pk": "root1",
        "target_type": "chat",
        "target_id": "chat-1",
        "assignee_email": ASSIGNEE,
        "assigned_by": "olivia@contoso.com",
        "originator_email": "olivia@contoso.com",
        "completion_criteria": "chat_visited",
        "created_at": NOW - timedelta(days=1),
        "updated_at": NOW - timedelta(hours=1),
        "created_by": "olivia@contoso.com",
        "updated_by": "olivia@contoso.com",
    }
    fields.update(overrides)
    return AssignmentDocument(**fields)


def check(assignment: AssignmentFields, to_upn: str = DELEGATE.upn, max_depth: int = 10) -> Status:
    return check_delegation(assignment, to_upn, NOW, max_depth=max_depth)


class TestStateChecks:
    @pytest.mark.parametrize("status", [Status.PENDING, Status.IN_PROGRESS])
    def test_an_active_assignment_becomes_delegated(self, status: Status) -> None:
        assert check(original(status=status)) == Status.DELEGATED

    def test_delegated_is_already_delegated(self) -> None:
        with pytest.raises(errors.AlreadyDelegated):
            check(original(status=Status.DELEGATED, delegated_to="root1.1"))

    @pytest.mark.parametrize(
        "status", [Status.COMPLETED, Status.FAILED, Status.EXPIRED, Status.CANCELLED, Status.REJECTED]
    )
    def test_another_inactive_status_is_an_invalid_transition(self, status: Status) -> None:
        with pytest.raises(errors.InvalidTransition) as caught:
            check(original(status=status))
        assert caught.value.current_status == status.value

    def test_past_expires_at_is_expired(self) -> None:
        with pytest.raises(errors.Expired):
            check(original(expires_at=NOW))
        assert check(original(expires_at=NOW + timedelta(milliseconds=1))) == Status.DELEGATED

    def test_an_unassigned_task_is_not_assigned(self) -> None:
        with pytest.raises(errors.NotAssigned):
            check(original(assignee_email=None, assigned_by=None, task_key="t", candidate_groups=["g"]))

    def test_allow_delegation_false_is_refused(self) -> None:
        with pytest.raises(errors.DelegationNotAllowed):
            check(original(allow_delegation=False))

    def test_the_current_assignee_is_self_delegation(self) -> None:
        with pytest.raises(errors.SelfDelegation):
            check(original(assignee_email="Adam@Contoso.com"), ASSIGNEE)

    def test_the_same_user_key_is_self_delegation(self) -> None:
        with pytest.raises(errors.SelfDelegation):
            check_delegate(original(assignee_user_key="oid-adam"), upn="adam.alias@contoso.com", user_key="oid-adam")

    def test_anyone_in_the_chain_is_a_cycle(self) -> None:
        with pytest.raises(errors.DelegationCycle):
            check(original(delegation_chain=["Carl@contoso.com", "bea@contoso.com"]), "carl@contoso.com")

    def test_depth_is_bounded_by_the_setting(self) -> None:
        chain = [f"u{i}@contoso.com" for i in range(9)]
        assert check(original(delegation_chain=chain), max_depth=10) == Status.DELEGATED
        with pytest.raises(errors.DelegationTooDeep):
            check(original(delegation_chain=[*chain, "u9@contoso.com"]), max_depth=10)

    @pytest.mark.parametrize(
        ("overrides", "to_upn", "expected"),
        [
            # Each row breaks every later rule too, so only the order decides which error wins.
            (
                {"status": Status.DELEGATED, "delegated_to": "root1.1", "expires_at": NOW, "allow_delegation": False},
                ASSIGNEE,
                errors.AlreadyDelegated,
            ),
            (
                {"status": Status.CANCELLED, "expires_at": NOW, "allow_delegation": False},
                ASSIGNEE,
                errors.InvalidTransition,
            ),
            ({"expires_at": NOW, "assignee_email": None, "task_key": "t"}, ASSIGNEE, errors.Expired),
            ({"assignee_email": None, "task_key": "t", "allow_delegation": False}, ASSIGNEE, errors.NotAssigned),
            ({"allow_delegation": False, "delegation_chain": [ASSIGNEE]}, ASSIGNEE, errors.DelegationNotAllowed),
            ({"delegation_chain": [ASSIGNEE] * 10}, ASSIGNEE, errors.SelfDelegation),
            ({"delegation_chain": [DELEGATE.upn] * 10}, DELEGATE.upn, errors.DelegationCycle),
        ],
    )
    def test_the_contracts_order(self, overrides: dict[str, Any], to_upn: str, expected: type[Exception]) -> None:
        with pytest.raises(expected):
            check(original(**overrides), to_upn, max_depth=10)


class TestSuccessor:
    def test_copies_every_field_except_the_listed_ones(self) -> None:
        source = original(
            id="root1.2",
            status=Status.IN_PROGRESS,
            delegation_chain=["first@contoso.com", "second@contoso.com"],
            delegated_from="root1.1",
            attempts=[Attempt(started_at=NOW, chat_log_id="c1")],
            reminders_sent=3,
            last_reminder_at=NOW,
            target_title="Title",
            due_at=NOW + timedelta(days=2),
            expires_at=NOW + timedelta(days=3),
            max_attempts=4,
            allow_rejection=True,
            pass_score=80,
            task_key="t",
            candidate_groups=["g"],
            schedule_id="s",
            reassigned_from="other",
            originator_message="please",
            assignee_user_key="oid-adam",
        )
        later = NOW + timedelta(minutes=5)
        successor = build_successor(source, DELEGATE, actor="adam@contoso.com", reason="on leave", now=later)
        changed = {
            "id": "root1.3",
            "assignee_email": DELEGATE.upn,
            "assignee_user_key": DELEGATE.user_key,
            "assigned_by": "adam@contoso.com",
            "status": Status.PENDING,
            "attempts": [],
            "reminders_sent": 0,
            "last_reminder_at": None,
            "delegated_from": "root1.2",
            "delegated_to": None,
            "delegation_chain": ["first@contoso.com", "second@contoso.com", ASSIGNEE],
            "delegation_reason": "on leave",
            "created_at": later,
            "created_by": "adam@contoso.com",
            "updated_at": later,
            "updated_by": "adam@contoso.com",
        }
        for name in AssignmentFields.model_fields:
            expected = changed.get(name, getattr(source, name))
            assert getattr(successor, name) == expected, name
        assert successor.pk == "root1"
        assert successor.version == 1
        assert successor.outbox == []
        assert successor.idempotency == []

    def test_cancellation_and_rejection_fields_are_cleared(self) -> None:
        source = original(cancellation_reason="stale", rejection_reason="stale")
        successor = build_successor(source, DELEGATE, actor="a@contoso.com", reason=None, now=NOW)
        assert successor.cancellation_reason is None
        assert successor.rejection_reason is None
        assert successor.cancelled_at is None
        assert successor.rejected_by is None

    @pytest.mark.parametrize(("source_id", "chain", "expected"), [("r", [], "r.1"), ("r.4", ["a"] * 4, "r.5")])
    def test_successor_id_is_root_dot_depth(self, source_id: str, chain: list[str], expected: str) -> None:
        assert successor_id(original(id=source_id, delegation_chain=chain)) == expected


class TestCommand:
    def test_to_upn_is_normalized(self) -> None:
        assert parse_model(DelegateCommand, {"toUpn": " Dora@Contoso.COM "}).to_upn == "dora@contoso.com"

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"toUpn": "not a upn"},
            {"toUpn": 5},
            {"toUpn": DELEGATE.upn, "reason": "x" * 2001},
            {"toUpn": DELEGATE.upn, "extra": True},
        ],
    )
    def test_invalid_bodies(self, body: dict[str, Any]) -> None:
        with pytest.raises(errors.ValidationFailed):
            parse_model(DelegateCommand, body)
