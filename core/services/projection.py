"""Use cases of the change feed: keep the views, and send the notifications.

The feed delivers at least once, reorders across partitions and, in latest-version mode, collapses
intermediate versions (A → B → C may arrive as C alone). So the projector keeps, per assignment, which
entries it wrote and at which version (`Projection`): an older or repeated version is skipped, and a newer
one writes what it implies and removes what the last projected version implied and it does not. Entries it
is about to add are named in the record before they are written, so a projection that dies half-way leaves
nothing the next version cannot find and remove. The record is replaced conditionally on its ETag; when
another projector (a rebuild) got there first, this one re-reads the assignment and projects its current
version, so every view converges to the latest document.

A notification is sent once per event, then recorded as sent: a redelivered, reordered or collapsed feed
adds no message; only a crash between the send and the record repeats one, with the same `eventId`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.clock import Clock, utc_now
from core.errors import ConcurrencyConflict
from core.events import DOC_TYPE_EVENT, EventDocument
from core.models import DOC_TYPE_ASSIGNMENT, AssignmentDocument, root_id_of
from core.projections import DOC_TYPE_VIEW, ViewKey, ViewKind, projection_pk, view_entries
from core.queues import MessageQueue
from core.retry import retry_conflicts
from core.store import AssignmentStore, Projection, ViewStore
from core.timer_rules import ReminderPolicy

log = logging.getLogger("assignments.projection")


@dataclass(frozen=True)
class FeedDeps:
    store: AssignmentStore
    views: ViewStore
    queue: MessageQueue
    policy: ReminderPolicy = field(default_factory=ReminderPolicy)
    clock: Clock = utc_now


@dataclass(frozen=True)
class ChangeRef:
    """What to retry apart from its batch: a document by tenant, kind and id (it is re-read, current)."""

    tenant_id: str
    doc_type: str
    id: str
    pk: str

    def to_json(self) -> dict[str, str]:
        return {"tenantId": self.tenant_id, "docType": self.doc_type, "id": self.id, "pk": self.pk}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ChangeRef:
        return cls(str(body["tenantId"]), str(body["docType"]), str(body["id"]), str(body["pk"]))


@dataclass
class FeedResult:
    projected: int = 0
    skipped: int = 0
    notified: int = 0
    failed: list[ChangeRef] = field(default_factory=list)


# --- views ----------------------------------------------------------------------------------------------


def project(
    document: AssignmentDocument,
    deps: FeedDeps,
    *,
    force: bool = False,
    also_remove: frozenset[tuple[str, str]] = frozenset(),
    written: set[tuple[str, str]] | None = None,
) -> bool:
    """Bring the views to this version of the assignment; False when a newer or equal one is projected
    (`force` rewrites an equal one, for rebuilds and repairs). Removes what the last projected version implied
    and this one does not, and `also_remove` (what an earlier attempt wrote). Adds the keys it is about to
    write to `written`. `ConcurrencyConflict` when another projector saved first."""
    pk = projection_pk(document.tenant_id, document.id)
    record = deps.views.read_projection(pk, document.id)
    if record is not None and (record.version > document.version or (record.version == document.version and not force)):
        return False
    entries = view_entries(document, deps.policy, now=deps.clock())
    keys = frozenset((entry.key.pk, entry.key.id) for entry in entries)
    if written is not None:
        written.update(keys)
    known = record.keys if record else frozenset()
    etag = record.etag if record else None
    unrecorded = (keys | also_remove) - known
    if unrecorded:
        # Name the entries about to be written in the record first, at the version it had (0: none yet). A
        # projection that dies after writing them (a killed host, Cosmos failing mid-way) leaves them listed,
        # so whichever version comes next removes those it does not imply; unlisted, they would stay forever.
        etag = deps.views.save_projection(
            pk, document.id, Projection(record.version if record else 0, known | unrecorded, etag)
        )
    for entry in entries:
        deps.views.upsert(entry.key.pk, entry.body)
    for stale_pk, stale_id in sorted((known | also_remove) - keys):
        deps.views.delete(stale_pk, stale_id)
    deps.views.save_projection(pk, document.id, Projection(document.version, keys, etag))
    return True


def project_latest(
    tenant_id: str,
    assignment_id: str,
    deps: FeedDeps,
    first: AssignmentDocument | None = None,
    *,
    force: bool = False,
) -> bool:
    """Project the feed's document (or the assignment as it is now). A projector that loses the race for the
    record wrote while the winner did: its older entries may have overwritten the winner's, and it may have
    written entries the winner's version does not imply. So the loser re-reads the assignment and rewrites its
    current version even when that is the version projected (forced), removing whatever it wrote before."""
    attempt: dict[str, Any] = {"document": first, "force": force}
    written: set[tuple[str, str]] = set()

    def once() -> bool:
        document = attempt["document"] or deps.store.read(tenant_id, assignment_id)
        attempt["document"] = None
        if document is None:
            return False
        try:
            return project(document, deps, force=attempt["force"], also_remove=frozenset(written), written=written)
        except ConcurrencyConflict:
            attempt["force"] = True
            raise

    return retry_conflicts(once)


# --- notifications --------------------------------------------------------------------------------------


def sent_pk(event: EventDocument) -> str:
    return f"notified|{event.tenant_id}|{root_id_of(event.assignment_id)}"


def notify(event: EventDocument, deps: FeedDeps) -> bool:
    """Send the event's message once; False when it has no recipients or was sent before."""
    if not event.recipients or deps.views.was_sent(sent_pk(event), event.event_id):
        return False
    deps.queue.send(event.message())
    deps.views.mark_sent(sent_pk(event), event.event_id)
    return True


# --- the feed -------------------------------------------------------------------------------------------


def _ref(body: Mapping[str, Any]) -> ChangeRef:
    return ChangeRef(str(body.get("tenantId", "")), str(body.get("docType", "")), str(body["id"]), str(body["pk"]))


def handle_change(body: Mapping[str, Any], deps: FeedDeps, result: FeedResult) -> None:
    doc_type = body.get("docType")
    if doc_type == DOC_TYPE_ASSIGNMENT:
        document = AssignmentDocument.model_validate(body)
        if project_latest(document.tenant_id, document.id, deps, first=document):
            result.projected += 1
        else:
            result.skipped += 1
    elif doc_type == DOC_TYPE_EVENT:
        if notify(EventDocument.model_validate(body), deps):
            result.notified += 1
    else:
        result.skipped += 1


def handle_changes(bodies: Iterable[Mapping[str, Any]], deps: FeedDeps) -> FeedResult:
    """One feed batch. A document that fails is not retried here but handed back (`failed`), to be retried
    apart from its batch; the rest of the batch goes on, so a poison document blocks nothing behind it."""
    result = FeedResult()
    for body in bodies:
        try:
            handle_change(body, deps, result)
        except Exception:
            log.exception(
                "Projecting %s %s failed; it will be retried apart from its batch", body.get("docType"), body.get("id")
            )
            result.failed.append(_ref(body))
    return result


def retry_change(ref: ChangeRef, deps: FeedDeps) -> FeedResult:
    """A retried document, read as it is now: an assignment is projected at its current version; an event
    (immutable) is sent if it was not. Raises on failure, so the queue retries it, then poisons it."""
    result = FeedResult()
    if ref.doc_type == DOC_TYPE_ASSIGNMENT:
        if project_latest(ref.tenant_id, ref.id, deps):
            result.projected += 1
        return result
    if ref.doc_type == DOC_TYPE_EVENT:
        event = deps.store.read_event(ref.pk, ref.id)
        if event is not None and notify(event, deps):
            result.notified += 1
    return result


# --- operators ------------------------------------------------------------------------------------------


@dataclass
class RebuildResult:
    assignments: int = 0
    written: int = 0
    removed: int = 0


def rebuild(deps: FeedDeps) -> RebuildResult:
    """Rewrite every view from the assignments, while the projector keeps running: each assignment is
    projected at its current version (an equal version is rewritten, a newer projected one is left), then
    every entry no assignment implies any more is removed, unless a newer version wrote it since."""
    result = RebuildResult()
    token: str | None = None
    while True:
        documents, token = deps.store.scan_assignments(continuation_token=token)
        for document in documents:
            result.assignments += 1
            if project_latest(document.tenant_id, document.id, deps, first=document, force=True):
                result.written += 1
        if token is None:
            break
    result.removed = _remove_stale(deps)
    return result


def _remove_stale(deps: FeedDeps) -> int:
    entries: list[dict[str, Any]] = []
    records: dict[tuple[str, str], Projection] = {}
    token: str | None = None
    while True:
        items, token = deps.views.scan(continuation_token=token)
        for item in items:
            if item.get("docType") == DOC_TYPE_VIEW:
                entries.append(item)
            else:
                keys = frozenset((str(key[0]), str(key[1])) for key in item.get("entries", []))
                tenant = str(item["pk"]).split("|")[1]
                records[(tenant, str(item["id"]))] = Projection(int(item["version"]), keys)
        if token is None:
            break
    removed = 0
    for entry in entries:
        record = records.get((str(entry["tenantId"]), str(entry["assignmentId"])))
        key = ViewKey(str(entry["pk"]), str(entry["id"]))
        if record is not None and ((key.pk, key.id) in record.keys or int(entry["version"]) > record.version):
            continue
        if record is None and _implied_now(entry, deps, key):
            continue
        deps.views.delete(key.pk, key.id)
        removed += 1
    return removed


def _implied_now(entry: Mapping[str, Any], deps: FeedDeps, key: ViewKey) -> bool:
    """An entry with no record yet may be a projector's work in progress: keep it if the assignment, as
    it is now, implies it. A due entry is matched by its due time, not its hourly bucket: a projector files
    an action already past in the hour it projects, which may be an hour before this clock's."""
    document = deps.store.read(str(entry["tenantId"]), str(entry["assignmentId"]))
    if document is None:
        return False
    for candidate in view_entries(document, deps.policy, now=deps.clock()):
        if candidate.key == key:
            return True
        if (
            entry.get("kind") == ViewKind.DUE
            and candidate.body["kind"] == ViewKind.DUE
            and candidate.key.id == key.id
            and candidate.body["dueAt"] == entry.get("dueAt")
        ):
            return True
    return False


@dataclass(frozen=True)
class Lag:
    behind: int
    oldest_change: datetime | None
    assignments: int


def projection_lag(deps: FeedDeps) -> Lag:
    """How far the views are behind: assignments whose projected version is older than the stored one,
    and the time of the oldest such change (a full scan: an operators' command, not a probe)."""
    behind, oldest, total = 0, None, 0
    token: str | None = None
    while True:
        documents, token = deps.store.scan_assignments(continuation_token=token)
        for document in documents:
            total += 1
            record = deps.views.read_projection(projection_pk(document.tenant_id, document.id), document.id)
            if record is None or record.version < document.version:
                behind += 1
                oldest = document.updated_at if oldest is None else min(oldest, document.updated_at)
        if token is None:
            return Lag(behind=behind, oldest_change=oldest, assignments=total)


__all__ = [
    "ChangeRef",
    "FeedDeps",
    "FeedResult",
    "Lag",
    "handle_changes",
    "project",
    "projection_lag",
    "rebuild",
    "retry_change",
]
