"""The aggregate's operations on their own (`core.aggregate`): pure functions of a stored document, a
`Context` and a request, so every check and every field they stamp is tested here without Cosmos. The
use cases that run them against the emulator are tested in test_lifecycle_state_machine.py and through
the routes in tests/triggers/."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from core import aggregate, errors
from core.auth import Principal
from core.directory import DirectoryUser
from core.events import EventType
from core.models import (
    AssignmentDocument,
    AssignmentFields,
    Attempt,
    CompleteRequest,
    CompletionCriteria,
    CreateRequest,
    DelegateRequest,
    EventRequest,
    PatchRequest,
    Status,
    partition_key_of,
)
from core.services.pipeline import ASSIGNMENT_ID_PATTERN, parse_model
from tests.support.documents import ADAM, CARL, DORA, NOW, OLIVIA, TENANT, Person, admin_app, assignment, context, task


def written(decision: aggregate.Decision) -> AssignmentDocument:
    assert decision.document is not None, "the operation decided to write nothing"
    return decision.document


# --- create ---------------------------------------------------------------------------------------------


class TestCreate:
    def request(self, **overrides: Any) -> CreateRequest:
        body = {"targetType": "chat", "targetId": "chat-1", "assigneeEmail": ADAM.upn, "completionCriteria": "manual"}
        return parse_model(CreateRequest, body | overrides)

    def decide(self, request: CreateRequest, user: DirectoryUser | None) -> aggregate.Decision:
        return aggregate.create(
            request,
            context(OLIVIA.principal(), user=user),
            assignment_id="a1",
            originator_email=OLIVIA.upn,
            originator_user_key=OLIVIA.key,
        )

    def create(self, request: CreateRequest, user: DirectoryUser | None) -> AssignmentDocument:
        return written(self.decide(request, user))

    def test_the_keys_of_everyone_it_names_are_stored_in_the_callers_tenant(self) -> None:
        decision = self.decide(self.request(), ADAM.directory_user())
        document = written(decision)
        assert decision.created
        assert (document.tenant_id, document.pk) == (TENANT, partition_key_of(TENANT, "a1"))
        assert (document.assignee_email, document.assignee_user_key) == (ADAM.upn, ADAM.key)
        assert (document.originator_email, document.originator_user_key) == (OLIVIA.upn, OLIVIA.key)
        assert (document.assigned_by, document.assigned_by_user_key) == (OLIVIA.upn, OLIVIA.key)
        assert [event.type for event in decision.events] == [EventType.CREATED, EventType.ASSIGNED]
        # The assignee hears of it by key.
        assert [r.user_key for r in decision.events[1].recipients] == [ADAM.key]

    def test_the_internal_fields_never_reach_the_public_model(self) -> None:
        document = self.create(self.request(), ADAM.directory_user())
        public = document.to_public().to_json()
        for internal in ("pk", "tenantId", "originatorUserKey", "assignedByUserKey", "delegationChainUserKeys"):
            assert internal in document.to_cosmos()
            assert internal not in public
        assert public["assigneeUserKey"] == ADAM.key

    def test_an_assignee_the_directory_does_not_know_is_user_not_found(self) -> None:
        with pytest.raises(errors.UserNotFound):
            self.create(self.request(), None)

    def test_an_expires_at_not_in_the_future_is_a_validation_error_before_the_directory_is(self) -> None:
        """docs/api-rules.md, "Order of checks": validating the body (422) comes before the checks
        that need a lookup, such as `userNotFound`."""
        with pytest.raises(errors.ValidationFailed):
            self.create(self.request(expiresAt=NOW.isoformat()), ADAM.directory_user())
        with pytest.raises(errors.ValidationFailed):
            self.create(self.request(expiresAt=NOW.isoformat()), None)

    def test_an_unassigned_task_has_no_assignee_and_no_assigner(self) -> None:
        request = self.request(assigneeEmail=None, taskKey="t", candidateGroups=["g"])
        decision = self.decide(request, None)
        document = written(decision)
        assert document.is_unassigned
        assert (document.assigned_by, document.assigned_by_user_key) == (None, None)
        # An unassigned task notifies no one until it is assigned.
        assert [event.type for event in decision.events] == [EventType.CREATED]


# --- complete -------------------------------------------------------------------------------------------


class TestComplete:
    """`complete` (manual only): the assignee attests it is done, or the originator declares it
    (docs/api-rules.md, "Who may do what")."""

    def manual(self, **overrides: Any) -> AssignmentDocument:
        return assignment(completion_criteria=CompletionCriteria.MANUAL, **overrides)

    @pytest.mark.parametrize(
        "caller",
        [ADAM.principal(), ADAM.renamed("adam.new@contoso.com").principal(), OLIVIA.principal(), admin_app()],
        ids=["assignee", "assignee-renamed", "originator", "admin"],
    )
    def test_the_assignee_the_originator_or_an_admin_completes(self, caller: Principal) -> None:
        document = written(aggregate.complete(self.manual(), context(caller), CompleteRequest()))
        assert document.status == Status.COMPLETED
        assert document.updated_by == caller.actor
        assert document.version == 2

    def test_a_reader_with_another_role_may_not(self) -> None:
        subject = self.manual(assigned_by=DORA.upn, assigned_by_user_key=DORA.key)
        with pytest.raises(errors.Forbidden):
            aggregate.complete(subject, context(DORA.principal()), CompleteRequest())

    @pytest.mark.parametrize("person", [ADAM, OLIVIA])
    def test_someone_else_with_their_upn_does_not_see_it(self, person: Person) -> None:
        with pytest.raises(errors.NotVisible):
            aggregate.complete(self.manual(), context(person.impostor().principal()), CompleteRequest())

    def test_only_manual_assignments_are_completed_by_request(self) -> None:
        with pytest.raises(errors.CriteriaNotManual):
            aggregate.complete(assignment(), context(ADAM.principal()), CompleteRequest())

    def test_if_match_comes_before_the_state(self) -> None:
        subject = self.manual(status=Status.CANCELLED, cancelled_at=NOW, cancelled_by=OLIVIA.upn, etag='"v1"')
        with pytest.raises(errors.PreconditionFailed):
            aggregate.complete(subject, context(ADAM.principal(), if_match='"v0"'), CompleteRequest())
        with pytest.raises(errors.InvalidTransition):
            aggregate.complete(subject, context(ADAM.principal(), if_match='"v1"'), CompleteRequest())


# --- edit -----------------------------------------------------------------------------------------------


def patch(**fields: Any) -> PatchRequest:
    return parse_model(PatchRequest, fields)


class TestEdit:
    def test_the_originator_edits_with_if_match(self) -> None:
        subject = assignment(etag='"v1"')
        edited = written(aggregate.edit(subject, context(OLIVIA.principal(), if_match='"v1"'), patch(targetTitle="T")))
        assert (edited.target_title, edited.version, edited.updated_by) == ("T", 2, OLIVIA.upn)
        with pytest.raises(errors.PreconditionRequired):
            aggregate.edit(subject, context(OLIVIA.principal()), patch(targetTitle="T"))
        with pytest.raises(errors.Forbidden):
            aggregate.edit(subject, context(ADAM.principal(), if_match='"v1"'), patch(targetTitle="T"))
        with pytest.raises(errors.NotVisible):
            aggregate.edit(subject, context(OLIVIA.impostor().principal(), if_match='"v1"'), patch(targetTitle="T"))

    def test_a_patch_that_changes_nothing_writes_nothing(self) -> None:
        subject = assignment(etag='"v1"', target_title="T")
        decision = aggregate.edit(subject, context(OLIVIA.principal(), if_match='"v1"'), patch(targetTitle="T"))
        assert not decision.writes
        assert decision.shown == subject

    @pytest.mark.parametrize(
        ("caller", "if_match", "overrides"),
        [
            pytest.param(ADAM, '"v1"', {}, id="forbidden"),
            pytest.param(OLIVIA, None, {}, id="preconditionRequired"),
            pytest.param(OLIVIA, '"v0"', {}, id="preconditionFailed"),
            pytest.param(
                OLIVIA,
                '"v1"',
                {"status": Status.CANCELLED, "cancelled_at": NOW, "cancelled_by": OLIVIA.upn},
                id="state",
            ),
        ],
    )
    def test_an_expires_at_not_in_the_future_is_a_validation_error_before_anything_else(
        self, caller: Person, if_match: str | None, overrides: dict[str, Any]
    ) -> None:
        """docs/api-rules.md, "Order of checks": validating the body (422) comes before permission,
        If-Match and state; an `expiresAt` that is not in the future is a validation error."""
        subject = assignment(etag='"v1"', **overrides)
        with pytest.raises(errors.ValidationFailed):
            aggregate.edit(subject, context(caller.principal(), if_match=if_match), patch(expiresAt=NOW.isoformat()))


# --- progress events ------------------------------------------------------------------------------------


def event(event_id: str, kind: str = "visited", *, minutes_ahead: float = 0) -> EventRequest:
    occurred_at = (NOW + timedelta(minutes=minutes_ahead)).isoformat()
    return parse_model(EventRequest, {"eventId": event_id, "type": kind, "occurredAt": occurred_at})


def marker_of(event_id: str) -> str:
    return aggregate.event_marker_id("a1", f"digest-{event_id}")


class TestEventMarkers:
    """An applied event is remembered by a permanent marker the decision carries, written beside the
    assignment in the same batch; nothing about it is kept inside the assignment, which never grows with
    the events it gets (docs/api-rules.md, "Input hygiene and limits")."""

    def test_an_applied_event_leaves_a_marker_and_nothing_in_the_document(self) -> None:
        document, sizes = assignment(), []
        for number in range(120):
            decision = aggregate.record_event(
                document, context(ADAM.principal()), event(f"e{number}"), marker_id=marker_of(f"e{number}")
            )
            assert decision.marker_id == marker_of(f"e{number}")
            document = written(decision)
            sizes.append(len(json.dumps(document.to_cosmos())))
        assert document.status == Status.IN_PROGRESS
        assert set(document.to_cosmos()) == set(assignment().to_cosmos())
        # Only the counters' digits grow (version, event sequence): nothing is kept per event.
        assert sizes[-1] - sizes[0] <= 4
        stored, public = json.dumps(document.to_cosmos()), json.dumps(document.to_public().to_json())
        for number in range(120):
            assert f'"e{number}"' not in stored
            assert f'"e{number}"' not in public

    def test_a_marker_id_is_never_an_assignment_id(self) -> None:
        assert not ASSIGNMENT_ID_PATTERN.match(marker_of("e1"))

    @pytest.mark.parametrize("caller", [ADAM.principal(), admin_app()], ids=["assignee", "admin"])
    def test_an_applied_event_answers_with_the_assignment_as_it_is(self, caller: Principal) -> None:
        # Whatever its status or If-Match: the first delivery already did what the event asked.
        finished = assignment(status=Status.COMPLETED, etag='"v2"')
        ctx = context(caller, event_applied=True, if_match='"v1"')
        decision = aggregate.record_event(finished, ctx, event("e1"), marker_id=marker_of("e1"))
        assert not decision.writes
        assert decision.shown == finished
        assert decision.marker_id is None
        assert decision.events == ()

    def test_an_applied_event_still_needs_a_caller_who_may_report(self) -> None:
        with pytest.raises(errors.Forbidden):
            aggregate.record_event(
                assignment(), context(OLIVIA.principal(), event_applied=True), event("e1"), marker_id=marker_of("e1")
            )

    @pytest.mark.parametrize(
        ("caller", "applied"),
        [(OLIVIA.principal(), False), (ADAM.principal(), True)],
        ids=["not-permitted", "applied-before"],
    )
    def test_a_far_future_event_is_a_validation_error_before_anything_else(
        self, caller: Principal, applied: bool
    ) -> None:
        """docs/api-rules.md, "Order of checks": validating the body (422) comes before permission
        (403) and state; `occurredAt` more than 5 minutes ahead is a validation error."""
        ctx = context(caller, event_applied=applied)
        with pytest.raises(errors.ValidationFailed):
            aggregate.record_event(assignment(), ctx, event("e1", minutes_ahead=6), marker_id=marker_of("e1"))


# --- delegate -------------------------------------------------------------------------------------------

# Everyone who ever held the assignment before Adam, and who else there is.
EARLIER = [Person(f"u{i}@contoso.com", f"key-u{i}") for i in range(10)]


def chain(*people: Person) -> dict[str, Any]:
    return {"delegation_chain": [p.upn for p in people], "delegation_chain_user_keys": [p.key for p in people]}


def delegate(
    original: AssignmentDocument,
    to: Person = DORA,
    *,
    caller: Principal | None = None,
    known: bool = True,
    **fields: Any,
) -> aggregate.Decision:
    """Delegate `original` to `to`, by Adam unless another caller is given, with the directory already
    asked; `known=False` is a delegate the directory does not know (or knows as disabled)."""
    user = to.directory_user() if known else None
    ctx = context(caller or ADAM.principal(), user=user, user_resolved=True, **fields)
    return aggregate.delegate(original, ctx, delegate_request(to))


def delegate_request(to: Person) -> DelegateRequest:
    return parse_model(DelegateRequest, {"toUpn": to.upn})


CALLERS = {"carl": CARL.principal(), "olivia": OLIVIA.principal(), "adam": ADAM.principal(), "admin": admin_app()}
# Breaks every state rule at once.
HOPELESS = {
    "status": Status.DELEGATED,
    "delegated_to": "a1.1",
    "expires_at": NOW,
    "allow_delegation": False,
    "etag": '"v1"',
    **chain(ADAM, *EARLIER[:9]),
}
UNASSIGNED = {"task_key": "t", "assignee_email": None, "assignee_user_key": None}


class TestDelegate:
    def test_the_original_becomes_delegated_and_shows_the_successor(self) -> None:
        decision = delegate(assignment())
        original, successor = written(decision), decision.successor
        assert successor is not None
        assert decision.shown is successor
        assert decision.created
        assert (original.status, original.delegated_to, original.version) == (Status.DELEGATED, "a1.1", 2)
        assert (successor.assignee_email, successor.assignee_user_key) == (DORA.upn, DORA.key)
        # `delegated` on the original, `created` on the successor, both in the one batch.
        events = [(event.type, event.assignment_id) for event in decision.events]
        assert events == [(EventType.DELEGATED, "a1"), (EventType.CREATED, "a1.1")]
        assert successor.event_sequence == 1

    def test_the_directory_is_asked_for_only_once_every_earlier_check_passed(self) -> None:
        unresolved = context(ADAM.principal())
        asks = aggregate.delegate(assignment(), unresolved, delegate_request(DORA))
        assert asks.needs_user
        assert not asks.writes
        # A refusal that needs no directory comes without asking it.
        with pytest.raises(errors.DelegationNotAllowed):
            aggregate.delegate(assignment(allow_delegation=False), unresolved, delegate_request(DORA))
        # Self-delegation and cycles are judged by key: a UPN alone proves nothing, so the directory is asked.
        assert aggregate.delegate(assignment(), unresolved, delegate_request(ADAM)).needs_user
        assert aggregate.delegate(assignment(**chain(CARL)), unresolved, delegate_request(CARL)).needs_user

    def test_the_resolved_delegate_is_checked_by_key(self) -> None:
        # Under a UPN of their own, the assignee and an earlier holder are still themselves.
        with pytest.raises(errors.SelfDelegation):
            delegate(assignment(), ADAM.renamed("adam.alias@contoso.com"))
        with pytest.raises(errors.DelegationCycle):
            delegate(assignment(**chain(CARL)), CARL.renamed("carl.alias@contoso.com"))

    def test_depth_is_bounded_by_the_setting(self) -> None:
        # With DELEGATION_MAX_DEPTH 10 the 10th delegation succeeds and the 11th fails.
        ninth = assignment(**chain(*EARLIER[:9]))
        assert written(delegate(ninth, delegation_max_depth=10)).status == Status.DELEGATED
        with pytest.raises(errors.DelegationTooDeep):
            delegate(assignment(**chain(*EARLIER)), delegation_max_depth=10)
        with pytest.raises(errors.DelegationTooDeep):
            delegate(assignment(**chain(*EARLIER[:2])), delegation_max_depth=2)

    def test_a_delegate_the_directory_does_not_know_is_user_not_found(self) -> None:
        with pytest.raises(errors.UserNotFound):
            delegate(assignment(), known=False)

    @pytest.mark.parametrize(
        ("caller", "if_match", "overrides", "to", "expected"),
        [
            # Each row breaks every later rule too, so only the order decides which error wins. No row's
            # delegate is in the directory, so the self and cycle checks go by the UPN asked for.
            pytest.param("carl", '"v0"', HOPELESS, ADAM, errors.NotVisible, id="notFound"),
            pytest.param("olivia", '"v0"', HOPELESS, ADAM, errors.Forbidden, id="forbidden"),
            pytest.param("adam", '"v0"', HOPELESS, ADAM, errors.PreconditionFailed, id="preconditionFailed"),
            pytest.param("adam", None, HOPELESS, ADAM, errors.AlreadyDelegated, id="alreadyDelegated"),
            pytest.param(
                "adam",
                None,
                {**HOPELESS, "status": Status.CANCELLED, "delegated_to": None},
                ADAM,
                errors.InvalidTransition,
                id="invalidTransition",
            ),
            pytest.param(
                "admin",
                None,
                {"expires_at": NOW, "allow_delegation": False, **UNASSIGNED, **chain(*EARLIER)},
                EARLIER[0],
                errors.Expired,
                id="expired",
            ),
            pytest.param(
                "admin",
                None,
                {"allow_delegation": False, **UNASSIGNED, **chain(*EARLIER)},
                EARLIER[0],
                errors.NotAssigned,
                id="notAssigned",
            ),
            pytest.param(
                "adam",
                None,
                {"allow_delegation": False, **chain(ADAM, *EARLIER[:9])},
                ADAM,
                errors.DelegationNotAllowed,
                id="delegationNotAllowed",
            ),
            pytest.param("adam", None, chain(ADAM, *EARLIER[:9]), ADAM, errors.SelfDelegation, id="selfDelegation"),
            pytest.param("adam", None, chain(*EARLIER), EARLIER[0], errors.DelegationCycle, id="delegationCycle"),
            pytest.param("adam", None, chain(*EARLIER), DORA, errors.DelegationTooDeep, id="delegationTooDeep"),
            pytest.param("adam", None, {}, DORA, errors.UserNotFound, id="userNotFound"),
        ],
    )
    def test_the_contracts_order(
        self, caller: str, if_match: str | None, overrides: dict[str, Any], to: Person, expected: type[Exception]
    ) -> None:
        # Self-delegation and cycles need the delegate's key: the directory knows them in those cases.
        known = expected in (errors.SelfDelegation, errors.DelegationCycle)
        with pytest.raises(expected):
            delegate(assignment(**overrides), to, caller=CALLERS[caller], known=known, if_match=if_match)

    def test_the_same_caller_asking_again_gets_the_successor_whatever_if_match_says(self) -> None:
        first = delegate(assignment(etag='"v1"'))
        original, successor = written(first), first.successor
        assert successor is not None
        # The same caller is the same key, under whatever UPN they now sign in with.
        for caller in (ADAM.principal(), ADAM.renamed("adam.new@contoso.com").principal()):
            again = delegate(original, caller=caller, successor=successor, if_match='"stale"')
            assert not again.writes
            assert again.shown == successor
        # Another caller, or another user holding the UPN, is told it was already delegated.
        with pytest.raises(errors.AlreadyDelegated):
            delegate(original, caller=admin_app(), successor=successor)
        with pytest.raises(errors.NotVisible):
            delegate(original, caller=ADAM.impostor().principal(), successor=successor)
        with pytest.raises(errors.AlreadyDelegated):
            delegate(original, CARL, successor=successor)


class TestSuccessor:
    def test_copies_every_field_except_the_listed_ones(self) -> None:
        first, second = Person("first@contoso.com", "key-first"), Person("second@contoso.com", "key-second")
        source = assignment(
            id="root1.2",
            status=Status.IN_PROGRESS,
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
            version=7,
            event_sequence=9,
            expiry_warned_at=NOW,
            created_with_key="claimed-key",
            **chain(first, second),
        )
        later = NOW + timedelta(minutes=5)
        successor = aggregate.build_successor(
            source, DORA.directory_user(), context(ADAM.principal(), now=later), reason="on leave"
        )
        changed = {
            "id": "root1.3",
            "assignee_email": DORA.upn,
            "assignee_user_key": DORA.key,
            "assigned_by": ADAM.upn,
            "status": Status.PENDING,
            "attempts": [],
            "reminders_sent": 0,
            "last_reminder_at": None,
            "delegated_from": "root1.2",
            "delegated_to": None,
            "delegation_chain": [first.upn, second.upn, ADAM.upn],
            "delegation_reason": "on leave",
            "created_at": later,
            "created_by": ADAM.upn,
            "updated_at": later,
            "updated_by": ADAM.upn,
        }
        for name in AssignmentFields.model_fields:
            expected = changed.get(name, getattr(source, name))
            assert getattr(successor, name) == expected, name
        # The internal fields: same tenant and partition, the keys beside the UPNs, its own bookkeeping.
        assert (successor.tenant_id, successor.pk) == (TENANT, partition_key_of(TENANT, "root1"))
        assert successor.pk == source.pk
        assert successor.originator_user_key == OLIVIA.key
        assert successor.assigned_by_user_key == ADAM.key
        assert successor.delegation_chain_user_keys == [first.key, second.key, ADAM.key]
        assert successor.version == 1
        assert successor.event_sequence == 0
        assert successor.expiry_warned_at is None
        assert successor.created_with_key is None

    def test_cancellation_and_rejection_fields_are_cleared(self) -> None:
        source = assignment(
            cancelled_at=NOW,
            cancelled_by=OLIVIA.upn,
            cancellation_reason="stale",
            rejected_at=NOW,
            rejected_by=ADAM.upn,
            rejection_reason="stale",
        )
        successor = aggregate.build_successor(source, DORA.directory_user(), context(ADAM.principal()), reason=None)
        assert successor.cancellation_reason is None
        assert successor.rejection_reason is None
        assert successor.cancelled_at is None
        assert successor.rejected_by is None
        assert successor.cancelled_by is None
        assert successor.rejected_at is None

    @pytest.mark.parametrize(("source_id", "depth", "expected"), [("r", 0, "r.1"), ("r.4", 4, "r.5")])
    def test_successor_id_is_root_dot_depth(self, source_id: str, depth: int, expected: str) -> None:
        assert aggregate.successor_id(assignment(id=source_id, **chain(*EARLIER[:depth]))) == expected

    def test_an_unassigned_task_is_never_delegated(self) -> None:
        with pytest.raises(errors.NotAssigned):
            delegate(task(), caller=admin_app())
