"""The Cosmos DB adapter of `core.store.AssignmentStore`: the only place that knows documents' Cosmos
shape, writes transactional batches and holds SQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosHttpResponseError

from core.cosmos.client import ContainerStore, read_or_none
from core.errors import ConcurrencyConflict, DuplicateId
from core.events import DOC_TYPE_EVENT, EventDocument
from core.models import (
    DOC_TYPE_ASSIGNMENT,
    AssignmentDocument,
    IdempotencyRecord,
    partition_key_of,
)
from core.store import KeyClaim

if TYPE_CHECKING:
    from core.aggregate import Decision

DOC_TYPE_KEY_CLAIM = "idempotencyKeyClaim"
DOC_TYPE_MARKER = "marker"


def _as_stored(stored: AssignmentDocument, echo: dict[str, Any]) -> AssignmentDocument:
    """The written document as a read would give it. Cosmos stores a body as it was sent and echoes it with
    its system properties, so the validation of the body before the write (`to_cosmos_and_back`) stands for
    the echo's: only the ETag and the timestamp are Cosmos's to add."""
    stored.etag = echo.get("_etag")
    stored.ts = echo.get("_ts")
    return stored


class CosmosAssignmentStore(ContainerStore):
    def read(self, tenant_id: str, assignment_id: str) -> AssignmentDocument | None:
        body = read_or_none(self._container, assignment_id, partition_key_of(tenant_id, assignment_id))
        return None if body is None else AssignmentDocument.model_validate(body)

    def create(self, decision: Decision) -> AssignmentDocument:
        document = decision.document
        assert document is not None, "a create always writes its document"
        body, stored = document.to_cosmos_and_back()
        operations: Sequence[Any] = [
            ("create", (body,)),
            *(("create", (event.to_cosmos(),)) for event in decision.events),
        ]
        with self._errors(on_conflict=DuplicateId(f"An assignment with id {document.id} exists")):
            results = self._container.execute_item_batch(operations, partition_key=document.pk)
        return _as_stored(stored, results[0]["resourceBody"])

    def write(self, decision: Decision, *, etag: str, record: IdempotencyRecord | None = None) -> AssignmentDocument:
        document = decision.document
        assert document is not None, "a decision that writes nothing is not written"
        creates: list[dict[str, Any]] = []
        successor: AssignmentDocument | None = None
        if decision.successor is not None:
            successor_body, successor = decision.successor.to_cosmos_and_back()
            creates.append(successor_body)
        creates.extend(event.to_cosmos() for event in decision.events)
        if decision.marker_id is not None:
            creates.append({"id": decision.marker_id, "pk": document.pk, "docType": DOC_TYPE_MARKER})
        if record is not None:
            creates.append(record.model_dump(mode="json", by_alias=True))
        body, stored = document.to_cosmos_and_back()
        if not creates:
            with self._errors():
                echo = self._container.replace_item(
                    document.id, body, etag=etag, match_condition=MatchConditions.IfNotModified
                )
            return _as_stored(stored, echo)
        operations: Sequence[Any] = [
            ("replace", (document.id, body), {"if_match_etag": etag}),
            *(("create", (item,)) for item in creates),
        ]
        # A marker or record that exists means a twin of this request committed first: re-read and
        # re-decide. A successor id that is taken while the original's ETag still held is not a race.
        try:
            with self._errors(on_conflict=ConcurrencyConflict("a document of this write exists already")):
                results = self._container.execute_item_batch(operations, partition_key=document.pk)
        except ConcurrencyConflict as conflict:
            cause = conflict.__cause__
            if (
                decision.successor is not None
                and isinstance(cause, CosmosBatchOperationError)
                and cause.error_index == 1
            ):
                raise DuplicateId(f"An assignment with id {decision.successor.id} exists") from cause
            raise
        if successor is not None and decision.shown is decision.successor:
            return _as_stored(successor, results[1]["resourceBody"])
        return _as_stored(stored, results[0]["resourceBody"])

    def read_record(self, document_pk: str, record_id: str) -> IdempotencyRecord | None:
        body = read_or_none(self._container, record_id, document_pk)
        return None if body is None else IdempotencyRecord.model_validate(body)

    def has_marker(self, document: AssignmentDocument, marker_id: str) -> bool:
        return read_or_none(self._container, marker_id, document.pk) is not None

    def claim_key(self, claim: KeyClaim, *, ttl_seconds: int) -> KeyClaim | None:
        body = {
            "id": claim.document_id,
            "pk": claim.document_id,
            "docType": DOC_TYPE_KEY_CLAIM,
            "bodyHash": claim.body_hash,
            "assignmentId": claim.assignment_id,
            "ttl": ttl_seconds,
        }
        while True:
            with self._errors():
                try:
                    self._container.create_item(body)
                    return None
                except CosmosHttpResponseError as error:
                    if error.status_code != 409:
                        raise
            earlier = self.read_key_claim(claim)
            if earlier is not None:
                return earlier
            # The earlier claim expired between our create and our read: the key is free again.

    def read_key_claim(self, claim: KeyClaim) -> KeyClaim | None:
        body = read_or_none(self._container, claim.document_id, claim.document_id)
        if body is None:
            return None
        return KeyClaim(key=claim.key, body_hash=body["bodyHash"], assignment_id=body["assignmentId"])

    def history_page(
        self, tenant_id: str, assignment_id: str, *, page_size: int, continuation_token: str | None
    ) -> tuple[list[EventDocument], str | None]:
        sql = "SELECT * FROM c WHERE c.docType = @docType AND c.assignmentId = @id ORDER BY c.sequence ASC"
        items, token = self._query_page(
            sql,
            {"@docType": DOC_TYPE_EVENT, "@id": assignment_id},
            continuation_token,
            token_from_caller=True,
            partition_key=partition_key_of(tenant_id, assignment_id),
            max_item_count=page_size,
        )
        return [EventDocument.model_validate(item) for item in items], token

    def read_event(self, pk: str, event_document_id: str) -> EventDocument | None:
        body = read_or_none(self._container, event_document_id, pk)
        return None if body is None else EventDocument.model_validate(body)

    def scan_assignments(self, *, continuation_token: str | None) -> tuple[list[AssignmentDocument], str | None]:
        sql = "SELECT * FROM c WHERE c.docType = @docType"
        items, token = self._query_page(
            sql,
            {"@docType": DOC_TYPE_ASSIGNMENT},
            continuation_token,
            token_from_caller=False,
            enable_cross_partition_query=True,
            max_item_count=200,
        )
        return [AssignmentDocument.model_validate(item) for item in items], token

    def ping(self) -> None:
        with self._errors():
            self._container.read()
