"""The assignment store's port: what the use cases need from storage, in the domain's words.

The one adapter is `core.cosmos.assignments.CosmosAssignmentStore`; everything Cosmos (clients, SQL,
provisioning, SDK error translation) lives under `core/cosmos/`. Every write is conditional on the ETag
that was read: a lost race surfaces as `ConcurrencyConflict`, which the pipeline answers by re-reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from core.models import AssignmentDocument, IdempotencyRecord, Status

if TYPE_CHECKING:
    from core.aggregate import Decision
    from core.events import EventDocument


@dataclass(frozen=True)
class KeyClaim:
    """Binds an Idempotency-Key on create to the request body and the assignment id it creates.

    `key` is a digest of the tenant, the caller's key, the route and the header's value, so nobody else
    can name (or pre-create) a claim of another caller. It lives in a partition of its own and expires
    after the idempotency TTL, after which the key may be used again.
    """

    key: str
    body_hash: str
    assignment_id: str

    @property
    def document_id(self) -> str:
        # Longer than any assignment id may be, so the two never collide.
        return f"claim:{self.key}"


class AssignmentStore(Protocol):
    def read(self, tenant_id: str, assignment_id: str) -> AssignmentDocument | None:
        """The assignment with this id in the tenant, or None. One point read."""
        ...

    def create(self, decision: Decision) -> AssignmentDocument:
        """Store a new assignment with its events, in one transactional batch; `DuplicateId` when its id is
        taken in its tenant."""
        ...

    def write(self, decision: Decision, *, etag: str, record: IdempotencyRecord | None = None) -> AssignmentDocument:
        """Store a decision in one atomic step: the changed assignment (conditional on `etag`), and with it,
        in the same transactional batch, the successor, the events, the event marker and the idempotency
        record it carries. Returns the stored document the decision shows. `ConcurrencyConflict` when the assignment
        changed since it was read (or a twin request wrote the same marker or record first)."""
        ...

    def read_record(self, document_pk: str, record_id: str) -> IdempotencyRecord | None:
        """An idempotency record kept in an assignment's partition, or None (never written, or expired)."""
        ...

    def has_marker(self, document: AssignmentDocument, marker_id: str) -> bool:
        """Whether a marker (an applied event) exists in the assignment's partition."""
        ...

    def claim_key(self, claim: KeyClaim, *, ttl_seconds: int) -> KeyClaim | None:
        """Create the claim; when the key was claimed before, return that earlier claim instead."""
        ...

    def read_key_claim(self, claim: KeyClaim) -> KeyClaim | None: ...

    def history_page(
        self, tenant_id: str, assignment_id: str, *, page_size: int, continuation_token: str | None
    ) -> tuple[list[EventDocument], str | None]:
        """One page of the assignment's events, oldest first: one single-partition query."""
        ...

    def read_event(self, pk: str, event_document_id: str) -> EventDocument | None: ...

    def scan_assignments(self, *, continuation_token: str | None) -> tuple[list[AssignmentDocument], str | None]:
        """Every assignment of every tenant, a page at a time (operators' rebuilds; cross-partition)."""
        ...

    def ping(self) -> None:
        """Raise `ServiceUnavailable` unless the store answers."""
        ...


@dataclass(frozen=True)
class Projection:
    """What the projector last wrote for one assignment: the version, and the view entries (pk, id)."""

    version: int
    keys: frozenset[tuple[str, str]]
    etag: str | None = None


@dataclass(frozen=True)
class ViewQuery:
    """One list in one view partition, with the filters every list takes."""

    pk: str
    statuses: tuple[Status, ...] = ()
    due_before: datetime | None = None
    # Active assignments due before this time (`overdue=true`).
    overdue_at: datetime | None = None
    order_by_due: bool = False
    # Candidates: entries offered to any of these groups. Rosters: entries these keys or groups may read.
    groups: tuple[str, ...] = ()
    reader: str | None = None


@dataclass(frozen=True)
class SweepState:
    """The sweep's cursor: the oldest due bucket that may still hold entries."""

    cursor: str | None
    etag: str | None = None


class ViewStore(Protocol):
    """The views container: denormalized lists the change feed keeps, each partition one list."""

    def read_projection(self, pk: str, assignment_id: str) -> Projection | None: ...

    def save_projection(self, pk: str, assignment_id: str, projection: Projection) -> str:
        """Create or replace the record, conditional on the ETag it was read with (`ConcurrencyConflict`);
        returns the record's new ETag."""
        ...

    def upsert(self, pk: str, body: dict[str, Any]) -> None: ...

    def delete(self, pk: str, item_id: str) -> None:
        """Remove an entry; one already gone is fine."""
        ...

    def page(
        self, query: ViewQuery, *, page_size: int, continuation_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a list: the entries' public assignments, newest first (or soonest due)."""
        ...

    def statuses(self, query: ViewQuery) -> list[str]:
        """The status of every entry of a list, for counting."""
        ...

    def due(
        self, bucket_pk: str, now: datetime, limit: int, continuation_token: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page (at most `limit`) of the due-index entries of one bucket whose action time is at or before
        `now`, soonest first, and the token of the next page (None after the last)."""
        ...

    def count(self, pk: str, *, due_by: datetime | None = None) -> int:
        """The entries of one partition; with `due_by`, only due-index entries due at or before it."""
        ...

    def scan(self, *, continuation_token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """Every view entry and record, a page at a time (for rebuilds and audits; cross-partition)."""
        ...

    def read_sweep_state(self) -> SweepState | None: ...

    def save_sweep_state(self, state: SweepState) -> None:
        """Conditional on the ETag read; a sweep that lost the race leaves the other's cursor."""
        ...

    def was_sent(self, pk: str, event_id: str) -> bool: ...

    def mark_sent(self, pk: str, event_id: str) -> None: ...
