"""Use case: the timer's sweep (docs/api-rules.md, "Timer: expiry and reminders").

The projector files every active assignment's next due action in the due index, an hourly bucket of the
views container. A sweep reads only the buckets from its cursor up to now, and in each only the entries
due by now, so its cost grows with what is due (and the hours crossed), never with what is stored; it never
scans the assignments container. For each due entry it reads the assignment and runs the aggregate's
`timer` operation, which re-decides from that document and writes conditionally on its ETag: two sweeps at
once, a sweep re-run after a crash, or a sweep racing a user's write, act once. The cursor moves past a
bucket only once the bucket is empty (the projector empties it as it moves each entry on) and its hour ended
more than `CURSOR_GRACE` ago (a projector may still be writing into it), so nothing due is ever skipped. A
sweep stops after `SWEEP_MAX_SECONDS` and leaves the rest, counted as `remaining`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core import aggregate
from core.aggregate import SYSTEM_ACTOR, Context, Decision
from core.auth import Principal
from core.clock import Clock, utc_now
from core.errors import DomainError
from core.events import EventType
from core.projections import due_bucket, due_pk
from core.retry import retry_conflicts
from core.store import AssignmentStore, SweepState, ViewStore
from core.timer_rules import ReminderPolicy

log = logging.getLogger("assignments.sweep")

# A first sweep looks this far back for due actions filed before it ever ran.
FIRST_LOOKBACK = timedelta(days=7)
# Entries read from one bucket at a time.
BATCH = 200
# The cursor passes an hour only once it ended this long ago. The projector files an action already past in the
# hour its own clock reads, and writes a moment later: one that read 09:59:59 may write after a sweep at 10:00:01
# found 09 empty. Within this margin (its latency, and clock skew between instances) the entry is still read.
CURSOR_GRACE = timedelta(minutes=10)


@dataclass(frozen=True)
class SweepDeps:
    store: AssignmentStore
    views: ViewStore
    policy: ReminderPolicy = field(default_factory=ReminderPolicy)
    clock: Clock = utc_now
    max_seconds: float = 50
    monotonic: Callable[[], float] = time.monotonic


@dataclass
class SweepResult:
    expired: int = 0
    expiring: int = 0
    reminded: int = 0
    remaining: int = 0
    buckets: int = 0
    read: int = 0

    def to_json(self) -> dict[str, int]:
        counts = (self.expired, self.expiring, self.reminded, self.remaining)
        return dict(zip(("expired", "expiring", "reminded", "remaining"), counts, strict=True))


def _hours(start: str, end: str) -> list[str]:
    """Every hourly bucket from `start` to `end`, inclusive."""
    moment = datetime.strptime(start, "%Y%m%d%H").replace(tzinfo=UTC)
    last = datetime.strptime(end, "%Y%m%d%H").replace(tzinfo=UTC)
    buckets = []
    while moment <= last:
        buckets.append(due_bucket(moment))
        moment += timedelta(hours=1)
    return buckets


def _system(tenant_id: str) -> Principal:
    return Principal(oid=SYSTEM_ACTOR, tid=tenant_id, app_id=SYSTEM_ACTOR, is_app_only=True)


def _act(entry: dict[str, Any], deps: SweepDeps, now: datetime) -> Decision | None:
    """Run the timer operation on one due assignment; the written decision, or None when nothing was due."""
    tenant, assignment_id = str(entry["tenantId"]), str(entry["assignmentId"])

    def attempt() -> Decision | None:
        document = deps.store.read(tenant, assignment_id)
        if document is None:
            return None
        decision = aggregate.timer(document, Context(principal=_system(tenant), now=now), deps.policy)
        if not decision.writes:
            return None
        deps.store.write(decision, etag=document.etag or "")
        return decision

    return retry_conflicts(attempt)


def _count(result: SweepResult, decision: Decision) -> None:
    for event in decision.events:
        if event.type == EventType.EXPIRED:
            result.expired += 1
        elif event.type == EventType.EXPIRING:
            result.expiring += 1
        elif event.type == EventType.REMINDER:
            result.reminded += 1


def _act_on_page(
    entries: list[dict[str, Any]], deps: SweepDeps, now: datetime, deadline: float, result: SweepResult
) -> bool:
    """Act on each entry of one page until the deadline; True when time ran out (the rest is `remaining`)."""
    for number, entry in enumerate(entries):
        if deps.monotonic() >= deadline:
            result.remaining += len(entries) - number
            return True
        try:
            decision = _act(entry, deps, now)
        except DomainError as error:
            # One assignment that cannot be swept now (an outage, a lost race storm) waits for the next.
            log.warning("sweep: %s %s not swept: %s", entry.get("tenantId"), entry.get("assignmentId"), error)
            result.remaining += 1
            continue
        if decision is not None:
            _count(result, decision)
    return False


def _not_reached(deps: SweepDeps, now: datetime, unread_pages_of: str | None, read: int, later: list[str]) -> int:
    """What time ran out for beyond the page at hand: the unread pages of that bucket (all its due entries but
    the `read` ones), and every later bucket up to now. A count, not a read: it costs one query per bucket."""
    left = 0
    if unread_pages_of is not None:
        left += max(0, deps.views.count(due_pk(unread_pages_of), due_by=now) - read)
    return left + sum(deps.views.count(due_pk(bucket), due_by=now) for bucket in later)


def sweep(deps: SweepDeps) -> SweepResult:
    now = deps.clock()
    deadline = deps.monotonic() + deps.max_seconds
    result = SweepResult()
    state = deps.views.read_sweep_state()
    current, settled = due_bucket(now), due_bucket(now - CURSOR_GRACE)
    start = state.cursor if state is not None and state.cursor else due_bucket(now - FIRST_LOOKBACK)
    cursor, empty_so_far = start, True
    buckets = _hours(start, current)
    for index, bucket in enumerate(buckets):
        result.buckets += 1
        out_of_time, read_here = False, 0
        token: str | None = None
        # Page by page: a bucket may hold more due entries than a page, and the ones acted on stay in it until
        # the projector moves them, so reading the first page again would only find those again.
        while not out_of_time:
            entries, token = deps.views.due(due_pk(bucket), now, BATCH, token)
            result.read += len(entries)
            read_here += len(entries)
            out_of_time = _act_on_page(entries, deps, now, deadline, result)
            if token is None:
                break
        if out_of_time:
            result.remaining += _not_reached(deps, now, bucket if token else None, read_here, buckets[index + 1 :])
            break
        # Only a bucket left empty, and past by more than the grace, lets the cursor pass it: the current hour may
        # still fill, and so may the last one, by a projector that read its clock just before it ended.
        if empty_so_far and bucket < settled and deps.views.count(due_pk(bucket)) == 0:
            cursor = _hours(bucket, current)[1]
        else:
            empty_so_far = False
    if state is None or cursor != state.cursor:
        deps.views.save_sweep_state(SweepState(cursor=cursor, etag=state.etag if state else None))
    log.info(
        "sweep: expired %d, expiring %d, reminded %d, remaining %d; %d buckets, %d entries read",
        result.expired,
        result.expiring,
        result.reminded,
        result.remaining,
        result.buckets,
        result.read,
    )
    return result
