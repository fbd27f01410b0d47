"""The stored document's bounds and its round trip: whatever the write path accepts reads back equal, and
the largest document the rules allow stays under Cosmos DB's 2 MB item limit; and its deep copy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from core.hygiene import MAX_OUTCOME_BYTES, MAX_SAFE_INTEGER, MAX_TIMESTAMP, MIN_TIMESTAMP, format_timestamp
from core.models import MAX_ATTEMPTS, MAX_REASON_LENGTH, AssignmentDocument, CreateRequest, EventRequest, deep_copy
from core.settings import Settings

# Cosmos DB's largest item: 2 MB less its padding, as UTF-8 JSON (the emulator enforces the same).
COSMOS_MAX_ITEM_BYTES = 2 * 1024 * 1024 - 1
WIDE = "\U0001f469"  # four UTF-8 bytes: the widest character text may hold


def wide(length: int) -> str:
    return WIDE * length


def outcome_of_exactly(max_bytes: int) -> dict[str, Any]:
    overhead = len(json.dumps({"a": ""}, separators=(",", ":")).encode())
    return {"a": "x" * (max_bytes - overhead)}


def worst_case_document() -> dict[str, Any]:
    """Every field at its limit: the longest texts in four-byte characters, the most attempts, each with
    the largest outcome and note, the deepest chain, every candidate group."""
    depth = Settings.model_fields["delegation_max_depth"].metadata
    max_depth = next(rule.le for rule in depth if hasattr(rule, "le"))
    now = format_timestamp(datetime(2030, 1, 1, tzinfo=UTC))
    upn = "a" * 64 + "@" + "b" * 44 + ".com"
    key = wide(255)
    outcome = outcome_of_exactly(MAX_OUTCOME_BYTES)
    assert len(json.dumps(outcome, separators=(",", ":"), ensure_ascii=False).encode()) == MAX_OUTCOME_BYTES
    attempt = {
        "startedAt": now,
        "chatLogId": wide(128),
        "completedAt": now,
        "score": 99.5,
        "outcomeData": outcome,
        "note": wide(MAX_REASON_LENGTH),
    }
    document: dict[str, Any] = {
        "id": "r" * 64 + ".50",
        "pk": "t" * 36 + ":" + "r" * 64,
        "tenantId": "t" * 36,
        "targetType": "document",
        "targetId": wide(256),
        "assigneeEmail": upn,
        "assigneeUserKey": key,
        "assignedBy": upn,
        "assignedByUserKey": key,
        "originatorEmail": upn,
        "originatorUserKey": key,
        "completionCriteria": "flow_passed",
        "passScore": 99.5,
        "attempts": [attempt] * MAX_ATTEMPTS,
        "status": "in_progress",
        "delegationChain": [upn] * max_depth,
        "delegationChainUserKeys": [key] * max_depth,
        "targetVersion": wide(512),
        "targetTitle": wide(512),
        "originatorName": wide(512),
        "originatorMessage": wide(MAX_REASON_LENGTH),
        "dueAt": now,
        "expiresAt": now,
        "maxAttempts": MAX_ATTEMPTS,
        "cancellationReason": wide(MAX_REASON_LENGTH),
        "rejectionReason": wide(MAX_REASON_LENGTH),
        "delegationReason": wide(MAX_REASON_LENGTH),
        "delegatedFrom": "r" * 64 + ".49",
        "reassignedFrom": upn,
        "scheduleId": wide(128),
        "taskKey": wide(128),
        "candidateGroups": [wide(128)] * 100,
        "lastReminderAt": now,
        "remindersSent": MAX_SAFE_INTEGER,
        "createdAt": now,
        "updatedAt": now,
        "createdBy": "app:" + "c" * 316,
        "updatedBy": "app:" + "c" * 316,
        "version": MAX_SAFE_INTEGER,
        "eventSequence": MAX_SAFE_INTEGER,
        "expiryWarnedAt": now,
        "createdWithKey": "k" * 64,
    }
    return document


def test_the_worst_case_document_stays_under_cosmos_item_limit() -> None:
    body = AssignmentDocument.model_validate(worst_case_document()).to_cosmos()
    size = len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
    print(f"\nworst-case assignment: {size:,} bytes of {COSMOS_MAX_ITEM_BYTES:,} ({size / COSMOS_MAX_ITEM_BYTES:.0%})")
    assert size < COSMOS_MAX_ITEM_BYTES


# --- round trip -------------------------------------------------------------------------------------------

_times = st.datetimes(
    min_value=MIN_TIMESTAMP.replace(tzinfo=None) + timedelta(days=1),
    max_value=MAX_TIMESTAMP.replace(tzinfo=None) - timedelta(days=1),
    timezones=st.just(UTC),
).map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000))
# Free text may hold \t \n \r, but no other control character, no bidi override and no lone surrogate.
_REFUSED_IN_TEXT = "".join(
    chr(code) for code in [*range(9), 11, 12, *range(14, 32), *range(0x7F, 0xA0), *range(0x202A, 0x202F)]
) + "".join(chr(code) for code in range(0x2066, 0x206A))
_free_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters=_REFUSED_IN_TEXT), min_size=1, max_size=60
)
_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _free_text
)
_json = st.recursive(
    _json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_free_text, children, max_size=4),
    max_leaves=20,
)


def _accepted(model: type[CreateRequest] | type[EventRequest], body: dict[str, Any]) -> bool:
    try:
        model.model_validate(body)
    except ValueError:
        return False
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    title=_free_text,
    message=_free_text,
    due=_times,
    outcome=st.dictionaries(_free_text, _json, max_size=5),
    note=_free_text,
)
def test_whatever_the_write_path_accepts_reads_back_equal(
    title: str, message: str, due: datetime, outcome: dict[str, Any], note: str
) -> None:
    create = {
        "targetType": "chat",
        "targetId": "t",
        "assigneeEmail": "a@contoso.com",
        "completionCriteria": "flow_completed",
        "targetTitle": title,
        "originatorMessage": message,
        "dueAt": format_timestamp(due),
    }
    event = {
        "eventId": "e",
        "type": "flow_completed",
        "occurredAt": format_timestamp(due),
        "outcomeData": outcome,
        "note": note,
    }
    if not (_accepted(CreateRequest, create) and _accepted(EventRequest, event)):
        return
    request, progress = CreateRequest.model_validate(create), EventRequest.model_validate(event)
    document = AssignmentDocument(
        **request.model_dump(exclude={"assignee_email", "originator_email", "id"}),
        id="x",
        pk="t:x",
        tenant_id="t",
        originator_email="o@contoso.com",
        originator_user_key="k",
        created_at=due,
        updated_at=due,
        created_by="o@contoso.com",
        updated_by="o@contoso.com",
        attempts=[{"started_at": progress.occurred_at, "outcome_data": progress.outcome_data, "note": progress.note}],
    )
    # What the store sends, as the SDK serializes it, read back as the store reads it.
    wire = json.dumps(document.to_cosmos(), separators=(",", ":"), ensure_ascii=False)
    again = AssignmentDocument.model_validate(json.loads(wire))
    assert again == document
    assert again.to_public().to_json() == document.to_public().to_json()


def test_the_one_pass_public_json_equals_the_public_model() -> None:
    document = AssignmentDocument.model_validate(worst_case_document())
    assert document.public_json() == document.to_public().to_json()
    assert set(document.public_json()) == set(document.to_public().to_json())


def _containers(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every list, dict and model in a value, with its path."""
    if isinstance(value, BaseModel):
        yield path, value
        for name, field_value in value.__dict__.items():
            yield from _containers(field_value, f"{path}.{name}")
    elif isinstance(value, list):
        yield path, value
        for index, item in enumerate(value):
            yield from _containers(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        yield path, value
        for key, item in value.items():
            yield from _containers(item, f"{path}[{key!r}]")


def test_deep_copy_is_model_copy_deep_sharing_nothing_that_can_change() -> None:
    document = AssignmentDocument.model_validate(worst_case_document())
    snapshot = document.model_dump()
    copied = deep_copy(document)
    assert copied == document.model_copy(deep=True)
    assert copied.model_fields_set == document.model_fields_set
    originals = dict(_containers(document))
    copies = dict(_containers(copied))
    assert originals.keys() == copies.keys()
    assert len(originals) > 200  # the lists, 100 attempts and their outcomes
    assert all(copies[path] is not originals[path] for path in originals)
    # Changing the copy everywhere an operation could leaves the original as it was.
    copied.attempts[0].outcome_data["a"] = "changed"
    copied.attempts[1].score = 1.0
    copied.attempts.append(copied.attempts[0])
    copied.delegation_chain_user_keys.append("someone-else")
    copied.delegation_chain.append("someone@contoso.com")
    copied.candidate_groups.clear()
    assert document.model_dump() == snapshot
