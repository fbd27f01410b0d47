"""Random sequences of every lifecycle operation, run through the use cases against the emulator, with the
invariants checked after each step:

- the status agrees with its timestamps (and `completed`/`failed` with the attempts and criterion);
- there are never more attempts than `maxAttempts`, and closed attempts never change;
- `failed` holds exactly when a `flow_passed` assignment has no attempt left to pass with;
- a terminal state never changes;
- a refused operation changes nothing, `_etag` included;
- `version` grows by one on every write.

Delegate runs among them (the machine follows the original, which it makes `delegated`); txn
assign/unassign have their own tests in tests/triggers/test_txn.py.

Every caller is a directory user whose key is their token's `oid`: who may do what follows those keys
(docs/api-rules.md, "Identity and tenancy"), never the UPNs.

Where the outcome is simple to predict (who may act, terminal, expired, the operation's own 409s) the
machine predicts it and checks the use case agrees.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from core import errors
from core.auth import ROLE_ADMIN, ROLE_REPORT, SCOPE_READ_WRITE, Principal
from core.bootstrap import Runtime
from core.directory import DirectoryUser
from core.models import AssignmentDocument, CompletionCriteria, EventType, Status
from core.rules import TERMINAL_STATUSES
from core.services import (
    Command,
    Outcome,
    cancel_assignment,
    complete_assignment,
    create_assignment,
    delegate_assignment,
    edit_assignment,
    reassign_assignment,
    record_event,
    reject_assignment,
)

TENANT = "sm-tenant"
# Any character free text may hold (docs/api-rules.md, "Input hygiene and limits"): not the control characters
# other than \t, \n and \r, nor the bidi overrides and isolates, nor lone surrogates. core/hygiene.py has its own tests.
FREE_TEXT = st.characters(
    codec="utf-8",
    exclude_characters="".join(
        chr(code)
        for code in [*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
        if chr(code) not in "\t\n\r"
    ),
)
COMPLETING_EVENT = {
    CompletionCriteria.CHAT_VISITED: EventType.VISITED,
    CompletionCriteria.CHAT_ENGAGED: EventType.ENGAGED,
    CompletionCriteria.FLOW_STARTED: EventType.FLOW_STARTED,
    CompletionCriteria.FLOW_COMPLETED: EventType.FLOW_COMPLETED,
    CompletionCriteria.FLOW_PASSED: EventType.FLOW_COMPLETED,
}


def user(person: DirectoryUser) -> Principal:
    """The token of a directory user: its `oid` is the user's key."""
    return Principal(oid=person.user_key, tid=TENANT, upn=person.upn, scopes=frozenset({SCOPE_READ_WRITE}))


def app(app_id: str, role: str) -> Principal:
    return Principal(oid=f"oid-{app_id}", tid=TENANT, app_id=app_id, is_app_only=True, roles=frozenset({role}))


ADMIN = app("sm-admin", ROLE_ADMIN)
REPORTER = app("sm-reporter", ROLE_REPORT)


@dataclass(frozen=True)
class World:
    runtime: Runtime
    originator: DirectoryUser
    first_assignee: DirectoryUser
    enabled_users: tuple[DirectoryUser, ...]
    disabled_user: DirectoryUser


Refusal = type[errors.DomainError]


class LifecycleMachine(RuleBasedStateMachine):
    world: ClassVar[World]

    def __init__(self) -> None:
        super().__init__()
        self.now = datetime.now(UTC).replace(microsecond=0)
        runtime = self.world.runtime
        # The runtime's own Deps (its directory cache and limits), on the machine's clock.
        self.deps = replace(runtime.deps(), clock=lambda: self.now)
        self.assignment_id = ""
        self.assignee = user(self.world.first_assignee)
        self.document: AssignmentDocument | None = None
        self.terminal_snapshot: AssignmentDocument | None = None
        self.completed_by: str | None = None
        # Who delegated (their user key) and to which UPN: delegate's "same caller" is the same key.
        self.delegated_by: tuple[str, str] | None = None
        # The ids of the events applied, in order: what the markers the use case writes must remember.
        self.event_ids: list[str] = []
        # The passScore in force when each attempt closed: the `failed` rule judges an attempt by it.
        self.pass_score_at_close: dict[int, float | None] = {}

    # --- helpers ---------------------------------------------------------------------------------------

    @property
    def current(self) -> AssignmentDocument:
        assert self.document is not None
        return self.document

    def read(self) -> AssignmentDocument:
        document = self.deps.store.read(TENANT, self.assignment_id)
        assert document is not None
        return document

    def actor(self, name: str) -> Principal:
        return {"originator": user(self.world.originator), "assignee": self.assignee, "admin": ADMIN,
                "reporter": REPORTER}[name]  # fmt: skip

    def command(self, principal: Principal, body: object, *, if_match: str | None = None) -> Command:
        return Command(principal=principal, body=body, assignment_id=self.assignment_id, if_match=if_match)

    def state_refusal(self) -> Refusal | None:
        """What every write meets first once who and If-Match pass: the table, then expiry."""
        if self.current.status in TERMINAL_STATUSES:
            return errors.InvalidTransition
        if self.current.expires_at is not None and self.now >= self.current.expires_at:
            return errors.Expired
        return None

    def run(
        self,
        operation: Callable[[], Outcome],
        expected: Refusal | None,
        *,
        or_refused: tuple[Refusal, ...] = (),
        answers_with_this_assignment: bool = True,
    ) -> bool:
        """Run one operation and check what it did to the stored document. `expected` is the refusal the
        machine predicts, or None for success; when it predicts success, `or_refused` names refusals it
        cannot tell apart from success without restating the rule under test. True when it wrote.
        Delegate answers with the successor, not this assignment: `answers_with_this_assignment=False`."""
        before = self.read()
        refusal: errors.DomainError | None = None
        try:
            outcome = operation()
        except errors.DomainError as error:
            refusal = error
        if refusal is not None:
            assert self.read() == before, f"{type(refusal).__name__} changed the document"
            allowed = (expected,) if expected is not None else or_refused
            assert type(refusal) in allowed, f"{type(refusal).__name__} ({refusal.detail}); expected {allowed}"
            return False
        assert expected is None, f"succeeded; expected {expected.__name__}"
        after = self.read()
        if answers_with_this_assignment:
            assert outcome.assignment == after.to_public().to_json()
        wrote = after.etag != before.etag
        if wrote:
            assert after.version == before.version + 1
            assert before.status not in TERMINAL_STATUSES, "a terminal assignment was written"
            self.note_closed_attempts(before, after)
        else:
            assert after == before
        self.document = after
        return wrote

    def note_closed_attempts(self, before: AssignmentDocument, after: AssignmentDocument) -> None:
        for index, attempt in enumerate(after.attempts):
            if index < len(before.attempts) and before.attempts[index].completed_at is not None:
                assert attempt == before.attempts[index], "a closed attempt changed"
            elif attempt.completed_at is not None:
                self.pass_score_at_close[index] = after.pass_score

    # --- operations --------------------------------------------------------------------------------------

    @initialize(
        # flow_passed twice as often: it alone can fail, and failing takes the longest sequences.
        criterion=st.sampled_from([*CompletionCriteria, CompletionCriteria.FLOW_PASSED]),
        max_attempts=st.none() | st.integers(1, 3),
        allow_rejection=st.booleans(),
        pass_score=st.sampled_from([20, 50, 80]),
        expires_in_minutes=st.none() | st.integers(10, 120),
    )
    def create(
        self,
        criterion: CompletionCriteria,
        max_attempts: int | None,
        allow_rejection: bool,
        pass_score: int,
        expires_in_minutes: int | None,
    ) -> None:
        body: dict[str, Any] = {
            "id": f"sm-{uuid.uuid4().hex}",
            "targetType": "survey",
            "targetId": "survey-1",
            "assigneeEmail": self.world.first_assignee.upn,
            "completionCriteria": criterion.value,
            "maxAttempts": max_attempts,
            "allowRejection": allow_rejection,
            "passScore": pass_score,
        }
        if expires_in_minutes is not None:
            body["expiresAt"] = (self.now + timedelta(minutes=expires_in_minutes)).isoformat()
        outcome = create_assignment(Command(principal=self.actor("originator"), body=body), self.deps)
        self.assignment_id = outcome.id
        self.document = self.read()
        assert self.current.originator_user_key == self.world.originator.user_key
        assert self.current.assignee_user_key == self.world.first_assignee.user_key

    @rule(
        kind=st.sampled_from(EventType),
        chat_log_id=st.sampled_from([None, None, "c1", "c2", "c3"]),
        score=st.none() | st.integers(0, 100),
        actor=st.sampled_from(["assignee", "assignee", "reporter", "admin", "originator"]),
        repeat=st.booleans(),
        minutes_ahead=st.sampled_from([-1, 0, 0, 6]),
    )
    def post_event(
        self,
        kind: EventType,
        chat_log_id: str | None,
        score: int | None,
        actor: str,
        repeat: bool,
        minutes_ahead: int,
    ) -> None:
        event_id = self.event_ids[-1] if repeat and self.event_ids else uuid.uuid4().hex
        self.post(event_id, kind, chat_log_id, score, actor, minutes_ahead)

    @rule(
        kind=st.sampled_from([EventType.FLOW_STARTED, EventType.FLOW_COMPLETED]),
        chat_log_id=st.sampled_from([None, "c1", "c2", "c3", "c4"]),
        score=st.integers(0, 100),
    )
    def post_flow_event(self, kind: EventType, chat_log_id: str | None, score: int) -> None:
        """The events that open and close attempts, as the reporter usually sends them."""
        self.post(uuid.uuid4().hex, kind, chat_log_id, score, "reporter", 0)

    def post(
        self, event_id: str, kind: EventType, chat_log_id: str | None, score: int | None, actor: str, minutes_ahead: int
    ) -> None:
        body: dict[str, Any] = {
            "eventId": event_id,
            "type": kind.value,
            "occurredAt": (self.now + timedelta(minutes=minutes_ahead)).isoformat(),
            "chatLogId": chat_log_id,
        }
        if kind == EventType.FLOW_COMPLETED:
            body["score"] = score
        expected: Refusal | None = None
        # Opening beyond maxAttempts is an invalidTransition too; predicting it would restate the rule.
        or_refused: tuple[Refusal, ...] = ()
        applied_before = event_id in self.event_ids
        if minutes_ahead > 5:
            expected = errors.ValidationFailed
        elif actor == "originator":
            expected = errors.Forbidden
        elif not applied_before:
            expected, or_refused = self.state_refusal(), (errors.InvalidTransition,)
        command = self.command(self.actor(actor), body)
        if self.run(lambda: record_event(command, self.deps), expected, or_refused=or_refused):
            # A redelivered eventId answers with the assignment as it is, however much later it comes.
            assert not applied_before, "an event applied before was applied again"
            self.event_ids.append(event_id)
            assert self.current.status != Status.PENDING, "the first event starts the assignment"
            if self.current.status == Status.COMPLETED:
                self.completed_by = kind.value

    @rule(
        ending=st.sampled_from(["complete", "reject", "cancel"]),
        actor=st.sampled_from(["originator", "admin", "assignee"]),
        stale=st.booleans(),
        reason=st.none() | st.text(FREE_TEXT, max_size=20),
    )
    def end(self, ending: str, actor: str, stale: bool, reason: str | None) -> None:
        """complete, reject or cancel; one rule, so that the runs that end early are not most of them."""
        permitted = {
            "complete": ("assignee", "originator", "admin"),  # the assignee attests it, or the originator
            "reject": ("assignee", "admin"),
            "cancel": ("originator", "admin"),
        }[ending]
        expected: Refusal | None = errors.Forbidden
        if actor in permitted:
            expected = errors.PreconditionFailed if stale else self.state_refusal()
        if expected is None and ending == "complete" and self.current.completion_criteria != CompletionCriteria.MANUAL:
            expected = errors.CriteriaNotManual
        if expected is None and ending == "reject" and not self.current.allow_rejection:
            expected = errors.RejectionNotAllowed
        use_case = {"complete": complete_assignment, "reject": reject_assignment, "cancel": cancel_assignment}[ending]
        body = None if ending == "complete" else {"reason": reason}
        command = self.command(self.actor(actor), body, if_match='"stale"' if stale else None)
        wrote = self.run(lambda: use_case(command, self.deps), expected)
        if wrote and ending == "complete":
            self.completed_by = ending

    @rule(
        to_whom=st.sampled_from(["user0", "user1", "disabled", "unknown"]),
        actor=st.sampled_from(["originator", "admin", "assignee"]),
    )
    def reassign(self, to_whom: str, actor: str) -> None:
        users = {f"user{i}": u for i, u in enumerate(self.world.enabled_users)}
        to = users.get(to_whom) or (self.world.disabled_user if to_whom == "disabled" else None)
        to_upn = to.upn if to is not None else f"nobody-{uuid.uuid4().hex[:8]}@contoso.com"
        expected: Refusal | None = errors.Forbidden if actor == "assignee" else self.state_refusal()
        if expected is None:
            is_current = to is not None and to.user_key == self.current.assignee_user_key
            expected = errors.ValidationFailed if is_current else None
            if expected is None and to_whom in ("disabled", "unknown"):
                expected = errors.UserNotFound
        command = self.command(self.actor(actor), {"toUpn": to_upn, "reason": "rebalancing"})
        if self.run(lambda: reassign_assignment(command, self.deps), expected):
            assert to is not None
            assert self.current.assignee_user_key == to.user_key
            self.assignee = user(to)

    @rule(
        changes=st.fixed_dictionaries(
            {},
            optional={
                "targetTitle": st.none() | st.sampled_from(["A", "B"]),
                "dueAt": st.none() | st.integers(-30, 300),
                "expiresAt": st.none() | st.integers(-5, 300),
                "maxAttempts": st.none() | st.integers(1, 4),
                "passScore": st.none() | st.integers(0, 100),
            },
        ),
        if_match=st.sampled_from(["current", "current", "stale", "missing"]),
        actor=st.sampled_from(["originator", "originator", "admin", "assignee"]),
    )
    def edit(self, changes: dict[str, Any], if_match: str, actor: str) -> None:
        body = {
            name: (self.now + timedelta(minutes=value)).isoformat()
            if name in ("dueAt", "expiresAt") and value is not None
            else value
            for name, value in changes.items()
        }
        etag = {"current": self.current.etag, "stale": '"stale"', "missing": None}[if_match]
        expected: Refusal | None = None
        # The edited assignment may still break create's rules, which the machine does not restate.
        or_refused: tuple[Refusal, ...] = ()
        if changes.get("expiresAt") is not None and changes["expiresAt"] <= 0:
            expected = errors.ValidationFailed
        elif actor == "assignee":
            expected = errors.Forbidden
        elif if_match == "missing":
            expected = errors.PreconditionRequired
        elif if_match == "stale":
            expected = errors.PreconditionFailed
        else:
            expected, or_refused = self.state_refusal(), (errors.ValidationFailed,)
        command = self.command(self.actor(actor), body, if_match=etag)
        self.run(lambda: edit_assignment(command, self.deps), expected, or_refused=or_refused)

    @rule(
        to_whom=st.sampled_from(["user0", "user1", "disabled", "unknown", "current"]),
        actor=st.sampled_from(["assignee", "assignee", "admin", "originator"]),
    )
    def delegate(self, to_whom: str, actor: str) -> None:
        """Delegate, in the contract's order of checks; the machine keeps following the original."""
        users = {f"user{i}": u for i, u in enumerate(self.world.enabled_users)}
        to = users.get(to_whom) or (self.world.disabled_user if to_whom == "disabled" else None)
        to_upn = {
            "current": self.assignee.upn or "",
            "unknown": f"nobody-{uuid.uuid4().hex[:8]}@contoso.com",
        }.get(to_whom) or (to.upn if to is not None else "")
        principal = self.actor(actor)
        expected: Refusal | None = None
        if actor == "originator":
            expected = errors.Forbidden
        elif self.current.status == Status.DELEGATED:
            # Natural idempotency: the same caller (by key), to the same user, gets the successor again.
            expected = None if self.delegated_by == (principal.oid, to_upn) else errors.AlreadyDelegated
        else:
            expected = self.state_refusal()
            if expected is None and to_upn == (self.current.assignee_email or "").lower():
                expected = errors.SelfDelegation
            if expected is None and to_whom in ("disabled", "unknown"):
                expected = errors.UserNotFound
        command = self.command(principal, {"toUpn": to_upn})
        if self.run(lambda: delegate_assignment(command, self.deps), expected, answers_with_this_assignment=False):
            self.delegated_by = (principal.oid, to_upn)

    @rule(minutes=st.sampled_from([1, 20, 90]))
    def advance_clock(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    # --- invariants --------------------------------------------------------------------------------------

    @invariant()
    def status_agrees_with_its_timestamps(self) -> None:
        if self.document is None:
            return
        d = self.document
        assert (d.status == Status.CANCELLED) == (d.cancelled_at is not None and d.cancelled_by is not None)
        assert (d.status == Status.REJECTED) == (d.rejected_at is not None and d.rejected_by is not None)
        assert (d.status == Status.DELEGATED) == (d.delegated_to is not None)
        if d.status == Status.EXPIRED:
            assert d.expires_at is not None
            assert d.expires_at <= d.updated_at

    @invariant()
    def completed_means_the_criterion_was_met(self) -> None:
        if self.document is None or self.document.status != Status.COMPLETED:
            return
        d = self.document
        criterion = CompletionCriteria(d.completion_criteria)
        if criterion == CompletionCriteria.MANUAL:
            assert self.completed_by == "complete"
            return
        assert self.completed_by == COMPLETING_EVENT[criterion].value
        if criterion in (CompletionCriteria.FLOW_COMPLETED, CompletionCriteria.FLOW_PASSED):
            last = d.attempts[-1]
            assert last.completed_at is not None
        if criterion == CompletionCriteria.FLOW_PASSED:
            assert d.pass_score is not None
            assert d.attempts[-1].score is not None
            assert d.attempts[-1].score >= d.pass_score

    @invariant()
    def failed_means_every_allowed_attempt_closed_without_passing(self) -> None:
        if self.document is None or self.document.status != Status.FAILED:
            return
        d = self.document
        assert d.completion_criteria == CompletionCriteria.FLOW_PASSED
        assert d.max_attempts is not None
        assert len(d.attempts) == d.max_attempts
        for index, attempt in enumerate(d.attempts):
            assert attempt.completed_at is not None
            threshold = self.pass_score_at_close[index]
            assert attempt.score is None or threshold is None or attempt.score < threshold

    @invariant()
    def an_active_flow_passed_assignment_can_still_pass_or_fail(self) -> None:
        """The converse of `failed`: once the last allowed attempt closes without passing, it is failed."""
        d = self.document
        if d is None or d.status in TERMINAL_STATUSES or d.max_attempts is None:
            return
        if d.completion_criteria == CompletionCriteria.FLOW_PASSED:
            assert sum(1 for attempt in d.attempts if attempt.completed_at is not None) < d.max_attempts

    @invariant()
    def never_more_attempts_than_max_attempts(self) -> None:
        if self.document is not None and self.document.max_attempts is not None:
            assert len(self.document.attempts) <= self.document.max_attempts

    @invariant()
    def a_terminal_state_never_changes(self) -> None:
        if self.document is None or self.document.status not in TERMINAL_STATUSES:
            return
        if self.terminal_snapshot is None:
            self.terminal_snapshot = self.document
        assert self.document == self.terminal_snapshot


def test_the_lifecycle_state_machine(runtime: Runtime) -> None:
    suffix = uuid.uuid4().hex[:8]

    def person(name: str, *, enabled: bool = True) -> DirectoryUser:
        # Keys unlike the UPNs, so nothing passes by matching a UPN.
        return DirectoryUser(f"sm-key-{name}-{suffix}", f"sm-{name}-{suffix}@contoso.com", None, enabled)

    originator, first_assignee = person("originator"), person("assignee")
    people = [person(f"user{i}") for i in range(2)]
    disabled = person("off", enabled=False)
    for entry in [originator, first_assignee, *people, disabled]:
        runtime.user_registry.put(TENANT, entry)
    LifecycleMachine.world = World(
        runtime=runtime,
        originator=originator,
        first_assignee=first_assignee,
        enabled_users=tuple(people),
        disabled_user=disabled,
    )
    run_state_machine_as_test(
        LifecycleMachine,
        settings=settings(
            max_examples=200,
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
