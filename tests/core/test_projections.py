"""Which view entries an assignment implies (`core.projections.view_entries`), pure: no Cosmos. The projector
that writes them against the emulator is tested in test_projection.py, where an oracle of its own restates
these rules independently."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest

from core.models import AssignmentDocument, Status
from core.projections import (
    DOC_TYPE_VIEW,
    NO_DUE_DATE,
    ViewEntry,
    ViewKind,
    candidates_pk,
    due_bucket,
    due_pk,
    inbox_pk,
    readers_of,
    sent_pk,
    target_pk,
    view_entries,
)
from core.rules import ACTIVE_STATUSES, TERMINAL_STATUSES
from core.timer_rules import ReminderPolicy, next_action_at
from tests.support.documents import ADAM, CARL, DORA, NOW, OLIVIA, OTHER_TENANT, TENANT, assignment, task

POLICY = ReminderPolicy()
LIST_KINDS = (ViewKind.INBOX, ViewKind.SENT, ViewKind.CANDIDATES, ViewKind.TARGET)
# What Cosmos refuses in an id, and (by the same rule, kept here) in a partition key value.
COSMOS_FORBIDDEN = re.compile(r"[/\\?#]")


def kinds(entries: list[ViewEntry]) -> dict[str, list[ViewEntry]]:
    found: dict[str, list[ViewEntry]] = {}
    for entry in entries:
        found.setdefault(entry.body["kind"], []).append(entry)
    return found


def pks(document: AssignmentDocument) -> dict[str, str]:
    """Each kind's partition, for an assignment that has one entry per kind."""
    found = kinds(view_entries(document, POLICY))
    assert all(len(listed) == 1 for listed in found.values()), found
    return {kind: listed[0].key.pk for kind, listed in found.items()}


class TestWhichLists:
    def test_an_assigned_assignment_is_in_the_inbox_the_sent_list_and_the_roster(self) -> None:
        assert pks(assignment()) == {
            "inbox": inbox_pk(TENANT, ADAM.key),
            "sent": sent_pk(TENANT, OLIVIA.key),
            "target": target_pk(TENANT, "chat", "chat-1"),
        }

    def test_an_unassigned_task_is_offered_to_its_candidates_and_in_no_inbox(self) -> None:
        assert pks(task()) == {
            "candidates": candidates_pk(TENANT),
            "sent": sent_pk(TENANT, OLIVIA.key),
            "target": target_pk(TENANT, "chat", "chat-1"),
        }

    def test_an_assigned_task_is_no_longer_offered(self) -> None:
        assigned = task(assignee_email=ADAM.upn, assignee_user_key=ADAM.key)
        assert set(pks(assigned)) == {"inbox", "sent", "target"}

    def test_an_unassigned_assignment_that_is_not_a_task_is_offered_to_no_one(self) -> None:
        # Only tasks are claimed through candidate groups (txn assign); without a taskKey nobody may claim it.
        plain = task(task_key=None)
        assert set(pks(plain)) == {"sent", "target"}

    @pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
    def test_a_finished_assignment_stays_listed_with_its_status(self, status: Status) -> None:
        entries = kinds(view_entries(assignment(status=status, due_at=NOW, expires_at=NOW + timedelta(days=1)), POLICY))
        assert set(entries) == {"inbox", "sent", "target"}, "no due action for a finished assignment"
        for listed in entries.values():
            assert listed[0].body["status"] == status
            assert listed[0].body["active"] is False

    @pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
    def test_a_finished_task_leaves_the_candidates(self, status: Status) -> None:
        assert set(pks(task(status=status))) == {"sent", "target"}

    def test_the_originators_own_assignment_is_in_their_inbox_and_sent_list(self) -> None:
        own = assignment(assignee_email=OLIVIA.upn, assignee_user_key=OLIVIA.key)
        assert pks(own)["inbox"] == inbox_pk(TENANT, OLIVIA.key)
        assert pks(own)["sent"] == sent_pk(TENANT, OLIVIA.key)

    def test_a_delegated_original_stays_in_the_delegators_inbox_as_delegated(self) -> None:
        original = assignment(status=Status.DELEGATED, delegated_to="a1.1")
        inbox = kinds(view_entries(original, POLICY))["inbox"][0]
        assert inbox.key.pk == inbox_pk(TENANT, ADAM.key)
        assert (inbox.body["status"], inbox.body["active"]) == ("delegated", False)


class TestDueIndex:
    def due_entries(self, document: AssignmentDocument) -> list[ViewEntry]:
        return kinds(view_entries(document, POLICY)).get("due", [])

    @pytest.mark.parametrize(
        "fields",
        [
            {"due_at": NOW + timedelta(days=3)},
            {"expires_at": NOW + timedelta(days=3)},
            {"due_at": NOW + timedelta(days=3), "expires_at": NOW + timedelta(days=5)},
        ],
        ids=["due", "expires", "both"],
    )
    @pytest.mark.parametrize("status", sorted(ACTIVE_STATUSES))
    def test_an_active_assignment_with_a_date_is_in_the_bucket_of_its_next_action(
        self, fields: dict[str, Any], status: Status
    ) -> None:
        document = assignment(status=status, **fields)
        (entry,) = self.due_entries(document)
        when = next_action_at(document, POLICY)
        assert when is not None
        assert entry.key == type(entry.key)(due_pk(due_bucket(when)), f"{TENANT}|a1")
        assert entry.body["version"] == document.version
        assert entry.body["assignmentId"] == "a1"
        assert entry.body["tenantId"] == TENANT

    def test_without_dates_nothing_is_ever_due(self) -> None:
        assert self.due_entries(assignment()) == []

    def test_an_unassigned_task_is_due_only_for_its_expiry(self) -> None:
        # Reminders and warnings need an assignee; expiry does not.
        assert self.due_entries(task(due_at=NOW + timedelta(days=3))) == []
        (entry,) = self.due_entries(task(due_at=NOW + timedelta(days=3), expires_at=NOW + timedelta(days=9)))
        assert entry.body["dueAt"] == "2030-01-10T12:00:00.000Z"

    def test_reminders_used_up_leave_only_the_expiry(self) -> None:
        spent = {"due_at": NOW - timedelta(days=1), "reminders_sent": POLICY.max_reminders}
        assert self.due_entries(assignment(**spent)) == []
        assert len(self.due_entries(assignment(**spent, expires_at=NOW + timedelta(days=1)))) == 1

    def test_the_next_action_moves_the_entry_to_another_bucket(self) -> None:
        before = self.due_entries(assignment(due_at=NOW + timedelta(days=3)))[0]
        reminded = assignment(
            due_at=NOW + timedelta(days=3), reminders_sent=1, last_reminder_at=NOW + timedelta(days=2)
        )
        after = self.due_entries(reminded)[0]
        assert before.key.id == after.key.id
        assert before.key.pk != after.key.pk


class TestEntryBodies:
    def test_every_list_entry_carries_the_version_status_and_public_assignment(self) -> None:
        document = assignment(version=7, status=Status.IN_PROGRESS, etag='"e7"', ts=1700000000)
        for entry in view_entries(document, POLICY):
            body = entry.body
            assert (body["id"], body["pk"]) == (entry.key.id, entry.key.pk)
            assert body["docType"] == DOC_TYPE_VIEW
            assert body["version"] == 7
            if body["kind"] == "due":
                continue
            assert body["status"] == "in_progress"
            assert body["active"] is True
            assert body["assignment"] == document.public_json()
            assert body["assignment"]["_etag"] == '"e7"'
            assert body["createdAt"] == body["assignment"]["createdAt"]
            json.dumps(body)  # what is upserted is plain JSON

    def test_internal_fields_never_reach_the_listed_assignment(self) -> None:
        for entry in view_entries(assignment(), POLICY):
            if entry.body["kind"] != "due":
                shown = entry.body["assignment"]
                assert not {"pk", "tenantId", "version", "originatorUserKey", "eventSequence"} & set(shown)

    def test_readers_are_user_keys_of_everyone_who_may_read_it(self) -> None:
        chained = assignment(
            assignee_email=DORA.upn,
            assignee_user_key=DORA.key,
            assigned_by=ADAM.upn,
            assigned_by_user_key=ADAM.key,
            delegation_chain=[CARL.upn, ADAM.upn],
            delegation_chain_user_keys=[CARL.key, ADAM.key],
        )
        assert readers_of(chained) == sorted({OLIVIA.key, DORA.key, ADAM.key, CARL.key})
        for entry in view_entries(chained, POLICY):
            if entry.body["kind"] != "due":
                assert entry.body["readers"] == readers_of(chained)
                assert not any("@" in reader for reader in entry.body["readers"]), "keys, never UPNs"

    def test_groups_are_kept_only_while_the_task_is_offered(self) -> None:
        offered = task(candidate_groups=["g2", "g1"])
        assert {entry.body["kind"]: entry.body["groups"] for entry in view_entries(offered, POLICY)} == {
            "candidates": ["g1", "g2"],
            "sent": ["g1", "g2"],
            "target": ["g1", "g2"],
        }
        claimed = task(assignee_email=ADAM.upn, assignee_user_key=ADAM.key)
        assert all(entry.body["groups"] == [] for entry in view_entries(claimed, POLICY))

    def test_due_sort_orders_by_due_date_then_id_with_undated_last(self) -> None:
        dated = [assignment(id=i, due_at=NOW + timedelta(hours=h)) for i, h in (("b", 1), ("a", 1), ("c", 0))]
        undated = [assignment(id="a0"), assignment(id="zz")]
        sort_keys = {
            entry.body["dueSort"]: entry.key.id
            for document in dated + undated
            for entry in view_entries(document, POLICY)
            if entry.body["kind"] == "sent"
        }
        assert [sort_keys[key] for key in sorted(sort_keys)] == ["c", "a", "b", "a0", "zz"]
        assert NO_DUE_DATE > "9999"

    def test_entries_of_one_assignment_have_distinct_keys(self) -> None:
        document = task(due_at=NOW + timedelta(days=1), expires_at=NOW + timedelta(days=2))
        keys = [entry.key for entry in view_entries(document, POLICY)]
        assert len(keys) == len(set(keys)) == 4


class TestPartitionKeys:
    @pytest.mark.parametrize("user_key", ["plain", "with/slash", "a\\b?c#d", "ü" * 300, "x|y"])
    def test_user_keys_and_target_ids_are_hashed_into_safe_fixed_width_keys(self, user_key: str) -> None:
        for pk in (inbox_pk(TENANT, user_key), sent_pk(TENANT, user_key), target_pk(TENANT, "chat", user_key)):
            assert not COSMOS_FORBIDDEN.search(pk)
            assert len(pk) <= 255
            assert re.fullmatch(r"[0-9a-f]{40}", pk.rsplit("|", 1)[-1]), pk

    def test_inbox_and_sent_of_the_same_user_are_different_lists(self) -> None:
        assert inbox_pk(TENANT, ADAM.key) != sent_pk(TENANT, ADAM.key)

    def test_tenants_never_share_a_list(self) -> None:
        for make in (inbox_pk, sent_pk):
            assert make(TENANT, ADAM.key) != make(OTHER_TENANT, ADAM.key)
        assert candidates_pk(TENANT) != candidates_pk(OTHER_TENANT)
        assert target_pk(TENANT, "chat", "c") != target_pk(OTHER_TENANT, "chat", "c")

    def test_a_target_roster_is_per_type(self) -> None:
        assert target_pk(TENANT, "chat", "x") != target_pk(TENANT, "survey", "x")

    def test_the_due_index_is_shared_by_tenants_but_its_ids_are_not(self) -> None:
        mine = kinds(view_entries(assignment(due_at=NOW + timedelta(days=3)), POLICY))["due"][0]
        other = assignment(tenant_id=OTHER_TENANT, due_at=NOW + timedelta(days=3))
        theirs = kinds(view_entries(other, POLICY))["due"][0]
        assert mine.key.pk == theirs.key.pk
        assert mine.key.id != theirs.key.id

    def test_list_kinds_are_all_covered(self) -> None:
        seen = {entry.body["kind"] for entry in view_entries(assignment(), POLICY) + view_entries(task(), POLICY)}
        assert seen == {str(kind) for kind in LIST_KINDS}
