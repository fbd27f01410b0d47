"""The store: SDK errors become domain errors in one place, and the Cosmos adapter against the emulator."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosHttpResponseError

from core.aggregate import Decision
from core.bootstrap import Runtime
from core.cosmos.client import (
    SUBSTATUS_OWNER_MISSING,
    ensure_containers,
    make_cosmos_client,
    read_or_none,
    translate_cosmos_errors,
)
from core.errors import (
    ConcurrencyConflict,
    ConflictError,
    DuplicateId,
    LimitExceeded,
    ServiceUnavailable,
)
from core.models import AssignmentDocument, CompletionCriteria, TargetType, partition_key_of
from core.store import KeyClaim


def _cosmos_error(
    status: int, *, sub_status: int | None = None, headers: dict[str, str] | None = None
) -> CosmosHttpResponseError:
    error = CosmosHttpResponseError(status_code=status, message=f"status {status}", sub_status=sub_status)
    error.headers = headers or {}
    return error


def _batch_error(status: int, *, failed_at: int = 1) -> CosmosBatchOperationError:
    """A transactional batch refused as Cosmos reports it: the failing operation's status, 424 for the rest."""
    responses = [{"statusCode": 424} for _ in range(3)]
    responses[failed_at] = {"statusCode": status}
    return CosmosBatchOperationError(
        error_index=failed_at,
        headers={},
        status_code=status,
        message=f"batch failed with {status}",
        operation_responses=responses,
    )


def test_throttling_becomes_503_with_the_servers_retry_after() -> None:
    with pytest.raises(ServiceUnavailable) as raised, translate_cosmos_errors():
        raise _cosmos_error(429, headers={"x-ms-retry-after-ms": "2500"})
    assert raised.value.retry_after == 3


@pytest.mark.parametrize("status", [408, 503])
def test_timeouts_and_outages_become_503(status: int) -> None:
    with pytest.raises(ServiceUnavailable), translate_cosmos_errors():
        raise _cosmos_error(status)


def test_an_unreachable_account_becomes_503() -> None:
    with pytest.raises(ServiceUnavailable), translate_cosmos_errors():
        raise ServiceRequestError("connection refused")


def test_a_lost_etag_race_is_a_concurrency_conflict() -> None:
    with pytest.raises(ConcurrencyConflict), translate_cosmos_errors():
        raise _cosmos_error(412)


def test_a_conflict_becomes_the_callers_domain_error() -> None:
    with pytest.raises(DuplicateId), translate_cosmos_errors(on_conflict=DuplicateId("taken")):
        raise _cosmos_error(409)


def test_an_oversized_document_is_a_limit_exceeded_conflict() -> None:
    # docs/api-rules.md: a write Cosmos refuses as too large (413) gets 409 `limitExceeded`, never a 500.
    with pytest.raises(LimitExceeded) as raised, translate_cosmos_errors():
        raise _cosmos_error(413)
    assert isinstance(raised.value, ConflictError)
    assert raised.value.code == "limitExceeded"


def test_a_missing_database_or_container_is_an_outage_logged_with_its_name(caplog: pytest.LogCaptureFixture) -> None:
    # docs/api-rules.md: a missing database or container is 503, logged with the name, never a 404 or a 500.
    with (
        caplog.at_level(logging.ERROR, logger="assignments.cosmos"),
        pytest.raises(ServiceUnavailable) as raised,
        translate_cosmos_errors(container="assignments-x"),
    ):
        raise _cosmos_error(404, sub_status=SUBSTATUS_OWNER_MISSING)
    assert raised.value.retry_after is not None
    assert raised.value.retry_after >= 1
    assert any("assignments-x" in record.getMessage() for record in caplog.records)


def test_a_missing_item_is_left_to_the_caller() -> None:
    # A plain 404 is the operation's business (read_or_none answers None), not an outage.
    with pytest.raises(CosmosHttpResponseError) as raised, translate_cosmos_errors():
        raise _cosmos_error(404)
    assert raised.value.status_code == 404


def test_anything_else_is_not_translated() -> None:
    with pytest.raises(CosmosHttpResponseError), translate_cosmos_errors():
        raise _cosmos_error(400)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(412, ConcurrencyConflict), (413, LimitExceeded), (429, ServiceUnavailable), (409, DuplicateId)],
)
def test_a_refused_batch_is_judged_by_its_failing_operation(status: int, expected: type[Exception]) -> None:
    with pytest.raises(expected), translate_cosmos_errors(on_conflict=DuplicateId("taken")):
        raise _batch_error(status)


def _document(tenant_id: str, assignment_id: str, *, title: str) -> AssignmentDocument:
    now = datetime.now(UTC)
    return AssignmentDocument(
        id=assignment_id,
        pk=partition_key_of(tenant_id, assignment_id),
        tenant_id=tenant_id,
        target_type=TargetType.DOCUMENT,
        target_id="doc-1",
        target_title=title,
        originator_email="olga@contoso.com",
        originator_user_key="k-olga",
        completion_criteria=CompletionCriteria.MANUAL,
        created_at=now,
        updated_at=now,
        created_by="olga@contoso.com",
        updated_by="olga@contoso.com",
    )


def _new(document: AssignmentDocument) -> Decision:
    return Decision(shown=document, document=document)


class TestAssignmentsPerTenant:
    def test_ids_are_per_tenant(self, runtime: Runtime) -> None:
        tenant_a, tenant_b, tenant_c = (str(uuid.uuid4()) for _ in range(3))
        assignment_id = "demo-welcome"
        runtime.store.create(_new(_document(tenant_a, assignment_id, title="A")))
        # docs/api-rules.md: two tenants may both hold `demo-welcome`; never `duplicateId` across tenants.
        runtime.store.create(_new(_document(tenant_b, assignment_id, title="B")))
        in_a, in_b = runtime.store.read(tenant_a, assignment_id), runtime.store.read(tenant_b, assignment_id)
        assert in_a is not None
        assert in_b is not None
        assert (in_a.target_title, in_b.target_title) == ("A", "B")
        assert runtime.store.read(tenant_c, assignment_id) is None, "another tenant neither sees nor detects it"
        with pytest.raises(DuplicateId):
            runtime.store.create(_new(_document(tenant_a, assignment_id, title="again")))

    def test_reading_an_unknown_id_is_none_in_one_round_trip(self, runtime: Runtime) -> None:
        before = runtime.round_trips.count
        assert runtime.store.read(str(uuid.uuid4()), uuid.uuid4().hex) is None
        assert runtime.round_trips.count - before == 1


class TestKeyClaims:
    def test_the_first_claim_wins_and_later_ones_see_it(self, runtime: Runtime) -> None:
        key = uuid.uuid4().hex * 2
        first = KeyClaim(key=key, body_hash="a", assignment_id="first")
        assert runtime.store.claim_key(first, ttl_seconds=60) is None
        earlier = runtime.store.claim_key(KeyClaim(key=key, body_hash="b", assignment_id="second"), ttl_seconds=60)
        assert earlier == first
        assert runtime.store.read_key_claim(first) == first

    def test_a_claim_lives_for_the_ttl_it_is_given(self, runtime: Runtime) -> None:
        claim = KeyClaim(key=uuid.uuid4().hex * 2, body_hash="a", assignment_id="first")
        runtime.store.claim_key(claim, ttl_seconds=1234)
        stored: dict[str, Any] | None = read_or_none(
            runtime.assignments_container, claim.document_id, claim.document_id
        )
        assert stored is not None
        assert stored["ttl"] == 1234

    def test_an_expired_claim_frees_the_key(self, runtime: Runtime) -> None:
        key = uuid.uuid4().hex * 2
        runtime.store.claim_key(KeyClaim(key=key, body_hash="a", assignment_id="first"), ttl_seconds=1)
        time.sleep(1.5)
        second = KeyClaim(key=key, body_hash="b", assignment_id="second")
        assert runtime.store.read_key_claim(second) is None
        assert runtime.store.claim_key(second, ttl_seconds=60) is None
        assert runtime.store.read_key_claim(second) == second

    def test_a_claim_cannot_collide_with_an_assignment_id(self) -> None:
        claim = KeyClaim(key="0" * 64, body_hash="a", assignment_id="x")
        assert len(claim.document_id) > 64


def test_creating_the_containers_is_idempotent(runtime: Runtime) -> None:
    client = make_cosmos_client(runtime.settings.cosmos_endpoint, runtime.settings.cosmos_key)
    names = runtime.container_names
    ensure_containers(client, names)
    database = ensure_containers(client, names)
    assert {c["id"] for c in database.list_containers()} >= {names.assignments, names.users, names.leases}
    assert database.get_container_client(names.assignments).read()["partitionKey"]["paths"] == ["/pk"]
    assert database.get_container_client(names.users).read()["partitionKey"]["paths"] == ["/pk"]


class TestAWriteAnswersWhatAReadGives:
    """A write answers with the document a read would give: the body as stored (timestamps in milliseconds,
    not the microseconds the caller held), with the ETag and timestamp Cosmos set."""

    HELD = datetime(2030, 1, 31, 17, 0, 0, 123456, tzinfo=UTC)
    STORED = datetime(2030, 1, 31, 17, 0, 0, 123000, tzinfo=UTC)

    def _held(self, document: AssignmentDocument, **changes: Any) -> AssignmentDocument:
        return document.model_copy(update={"updated_at": self.HELD, **changes})

    def test_create(self, runtime: Runtime) -> None:
        tenant = str(uuid.uuid4())
        document = self._held(_document(tenant, uuid.uuid4().hex, title="created"))
        created = runtime.store.create(_new(document))
        assert created == runtime.store.read(tenant, document.id)
        assert created.updated_at == self.STORED
        assert created.etag
        assert created.ts

    def test_a_replace(self, runtime: Runtime) -> None:
        tenant = str(uuid.uuid4())
        created = runtime.store.create(_new(_document(tenant, uuid.uuid4().hex, title="first")))
        new = self._held(created, target_title="second", version=2)
        replaced = runtime.store.write(Decision(shown=new, document=new), etag=created.etag or "")
        assert replaced == runtime.store.read(tenant, created.id)
        assert replaced.updated_at == self.STORED
        assert replaced.etag != created.etag

    def test_a_batch_that_shows_the_assignment(self, runtime: Runtime) -> None:
        tenant = str(uuid.uuid4())
        created = runtime.store.create(_new(_document(tenant, uuid.uuid4().hex, title="first")))
        new = self._held(created, target_title="second", version=2)
        decision = Decision(shown=new, document=new, marker_id=f"{created.id}:event:{uuid.uuid4().hex}")
        answered = runtime.store.write(decision, etag=created.etag or "")
        assert answered == runtime.store.read(tenant, created.id)
        assert answered.updated_at == self.STORED

    def test_a_batch_that_shows_the_successor_it_creates(self, runtime: Runtime) -> None:
        tenant = str(uuid.uuid4())
        created = runtime.store.create(_new(_document(tenant, uuid.uuid4().hex, title="first")))
        original = self._held(created, status="delegated", version=2, delegated_to=f"{created.id}.1")
        successor = self._held(_document(tenant, f"{created.id}.1", title="successor"), pk=created.pk)
        decision = Decision(shown=successor, document=original, successor=successor, created=True)
        shown = runtime.store.write(decision, etag=created.etag or "")
        assert shown == runtime.store.read(tenant, successor.id)
        assert shown.id == successor.id
        assert shown.updated_at == self.STORED
