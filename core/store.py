"""The assignment store: a port (`AssignmentStore`) and its Cosmos DB adapter.

Every Cosmos SDK error is translated into a domain error in one place, `translate_cosmos_errors`.
Queries are always parameterized. Every update is conditional on the ETag that was read; a lost race
surfaces as `ConcurrencyConflict`, which use cases answer by re-reading and re-deciding.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ServiceRequestError, ServiceResponseError
from azure.core.pipeline import PipelineRequest
from azure.cosmos import ContainerProxy, CosmosClient, DatabaseProxy, PartitionKey
from azure.cosmos.exceptions import (
    CosmosBatchOperationError,
    CosmosClientTimeoutError,
    CosmosHttpResponseError,
)

from core.errors import (
    ConcurrencyConflict,
    DuplicateId,
    FieldError,
    PayloadTooLarge,
    ServiceUnavailable,
    ValidationFailed,
)
from core.models import AssignmentDocument, partition_key_of

# Throttling is answered by telling the caller when to come back, not by holding the request open
# through the SDK's own long retry loop.
_MAX_THROTTLE_RETRIES = 2


class RoundTripCounter:
    """Counts HTTP requests the Cosmos client sends. Installed as the client's azure-core
    `CustomHookPolicy` request hook, which runs once per transmission, retries included."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def __call__(self, request: PipelineRequest[Any]) -> None:
        with self._lock:
            self._count += 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count


@dataclass(frozen=True)
class KeyClaim:
    """Binds an Idempotency-Key on create to the request body and the assignment id it creates.

    It lives in its own partition (its id is longer than any assignment id can be, so the two never
    collide) and expires after `KEY_CLAIM_TTL_SECONDS`, after which the key may be used again.
    """

    key: str
    body_hash: str
    assignment_id: str

    @property
    def document_id(self) -> str:
        return f"idem-{self.key}"


KEY_CLAIM_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Marker:
    """A permanent record, in an assignment's partition, that something happened to it once (an event
    was applied). Written in the same batch as the change, so the two can never disagree. The `:` in its
    id cannot occur in an assignment id, so the two never collide."""

    assignment_id: str
    kind: str
    key: str

    @property
    def document_id(self) -> str:
        return f"{self.assignment_id}:{self.kind}:{self.key}"

    @property
    def partition_key(self) -> str:
        return partition_key_of(self.assignment_id)


DOC_TYPE_KEY_CLAIM = "idempotencyKeyClaim"


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    continuation_token: str | None


class AssignmentStore(Protocol):
    def create(self, document: AssignmentDocument) -> AssignmentDocument: ...

    def read(self, assignment_id: str) -> AssignmentDocument | None: ...

    def replace(self, document: AssignmentDocument, *, etag: str) -> AssignmentDocument: ...

    def replace_and_create(
        self, original: AssignmentDocument, *, etag: str, successor: AssignmentDocument
    ) -> tuple[AssignmentDocument, AssignmentDocument]: ...

    def query(
        self,
        sql: str,
        parameters: Mapping[str, object],
        *,
        page_size: int,
        continuation_token: str | None,
        partition_key: str | None = None,
    ) -> Page: ...

    def replace_and_mark(self, document: AssignmentDocument, *, etag: str, marker: Marker) -> AssignmentDocument: ...

    def has_marker(self, marker: Marker) -> bool: ...

    def claim_key(self, claim: KeyClaim) -> KeyClaim | None: ...

    def read_key_claim(self, claim: KeyClaim) -> KeyClaim | None: ...

    def ping(self) -> None: ...


def _retry_after_seconds(error: CosmosHttpResponseError) -> int:
    headers = error.headers or {}
    try:
        millis = float(headers.get("x-ms-retry-after-ms", "1000"))
    except ValueError:
        millis = 1000
    return max(1, int(-(-millis // 1000)))


@contextmanager
def translate_cosmos_errors(*, on_conflict: Exception | None = None) -> Iterator[None]:
    """The one place where SDK errors become domain errors. What is not translated is a bug or an
    outage we cannot name, and reaches the boundary as a 500."""
    try:
        yield
    except CosmosBatchOperationError as error:
        status = error.status_code
        failed = (error.operation_responses or [{}])[error.error_index or 0]
        failed_status = int(failed.get("statusCode") or status or 0)
        if failed_status == 412:
            raise ConcurrencyConflict("a batch operation's ETag condition failed") from error
        if failed_status == 409 and on_conflict is not None:
            raise on_conflict from error
        if failed_status == 429:
            raise ServiceUnavailable(retry_after=1) from error
        raise
    except CosmosHttpResponseError as error:
        if error.status_code == 412:
            raise ConcurrencyConflict("the document changed since it was read") from error
        if error.status_code == 409 and on_conflict is not None:
            raise on_conflict from error
        if error.status_code == 429:
            raise ServiceUnavailable(retry_after=_retry_after_seconds(error)) from error
        if error.status_code in (408, 503):
            raise ServiceUnavailable(retry_after=1) from error
        if error.status_code == 413:
            # The change would push the document past Cosmos's item size limit; nothing was written.
            raise PayloadTooLarge("The change would make the assignment larger than the store allows") from error
        raise
    except (CosmosClientTimeoutError, ServiceRequestError, ServiceResponseError) as error:
        raise ServiceUnavailable(retry_after=1) from error
    except AzureError:
        raise


def make_cosmos_client(
    endpoint: str, key: str | None, *, counter: RoundTripCounter | None = None, credential: Any = None
) -> CosmosClient:
    """A client for the settings' account: signed with the key when there is one (the emulator's,
    locally), else with the token credential (managed identity in production)."""
    options: dict[str, Any] = {
        "retry_total": _MAX_THROTTLE_RETRIES,
        "retry_backoff_max": 2,
        "connection_timeout": 5,
    }
    if counter is not None:
        options["raw_request_hook"] = counter
    if endpoint.startswith("http://"):
        # The local emulator speaks plain HTTP but advertises https endpoints; discovery would follow them.
        options["enable_endpoint_discovery"] = False
    if not key and credential is None:
        raise ValueError("A Cosmos client needs COSMOS_KEY or a token credential")
    # The constructor already reads the account, so an unreachable account is an outage here too.
    with translate_cosmos_errors():
        return CosmosClient(endpoint, credential=key or credential, **options)


# Partition key paths by container role; infra/main.bicep must agree (tests/test_infra.py checks it).
ASSIGNMENTS_PARTITION_KEY = "/pk"
USERS_PARTITION_KEY = "/pk"
LEASES_PARTITION_KEY = "/id"


@dataclass(frozen=True)
class ContainerNames:
    database: str
    assignments: str
    users: str
    leases: str


def ensure_containers(client: CosmosClient, names: ContainerNames) -> DatabaseProxy:
    """Create the database and containers if missing. Idempotent; run once, at first use."""
    with translate_cosmos_errors():
        database = client.create_database_if_not_exists(names.database)
        # default_ttl=-1 turns TTL on without expiring anything by default: per-document `ttl` applies.
        database.create_container_if_not_exists(
            names.assignments, partition_key=PartitionKey(path=ASSIGNMENTS_PARTITION_KEY), default_ttl=-1
        )
        database.create_container_if_not_exists(names.users, partition_key=PartitionKey(path=USERS_PARTITION_KEY))
        database.create_container_if_not_exists(names.leases, partition_key=PartitionKey(path=LEASES_PARTITION_KEY))
    return database


class CosmosAssignmentStore:
    def __init__(self, container: ContainerProxy) -> None:
        self._container = container

    def create(self, document: AssignmentDocument) -> AssignmentDocument:
        with translate_cosmos_errors(on_conflict=DuplicateId(f"An assignment with id {document.id} exists")):
            body = self._container.create_item(document.to_cosmos())
        return AssignmentDocument.model_validate(body)

    def read(self, assignment_id: str) -> AssignmentDocument | None:
        with translate_cosmos_errors():
            try:
                body = self._container.read_item(assignment_id, partition_key=partition_key_of(assignment_id))
            except CosmosHttpResponseError as error:
                if error.status_code == 404:
                    return None
                raise
        return AssignmentDocument.model_validate(body)

    def replace(self, document: AssignmentDocument, *, etag: str) -> AssignmentDocument:
        with translate_cosmos_errors():
            body = self._container.replace_item(
                document.id, document.to_cosmos(), etag=etag, match_condition=MatchConditions.IfNotModified
            )
        return AssignmentDocument.model_validate(body)

    def replace_and_create(
        self, original: AssignmentDocument, *, etag: str, successor: AssignmentDocument
    ) -> tuple[AssignmentDocument, AssignmentDocument]:
        """One transactional batch: both documents are written, or neither."""
        operations: Sequence[Any] = [
            ("replace", (original.id, original.to_cosmos()), {"if_match_etag": etag}),
            ("create", (successor.to_cosmos(),)),
        ]
        conflict = DuplicateId(f"An assignment with id {successor.id} exists")
        with translate_cosmos_errors(on_conflict=conflict):
            results = self._container.execute_item_batch(operations, partition_key=original.pk)
        return (
            AssignmentDocument.model_validate(results[0]["resourceBody"]),
            AssignmentDocument.model_validate(results[1]["resourceBody"]),
        )

    def replace_and_mark(self, document: AssignmentDocument, *, etag: str, marker: Marker) -> AssignmentDocument:
        """One transactional batch: the change and its marker. A marker that exists already means a twin of
        this request won the race: that surfaces as a lost race, and the caller re-reads."""
        body = {"id": marker.document_id, "pk": marker.partition_key, "docType": marker.kind}
        operations: Sequence[Any] = [
            ("replace", (document.id, document.to_cosmos()), {"if_match_etag": etag}),
            ("create", (body,)),
        ]
        with translate_cosmos_errors(on_conflict=ConcurrencyConflict(f"marker {marker.document_id} exists")):
            results = self._container.execute_item_batch(operations, partition_key=marker.partition_key)
        return AssignmentDocument.model_validate(results[0]["resourceBody"])

    def has_marker(self, marker: Marker) -> bool:
        with translate_cosmos_errors():
            try:
                self._container.read_item(marker.document_id, partition_key=marker.partition_key)
            except CosmosHttpResponseError as error:
                if error.status_code == 404:
                    return False
                raise
        return True

    def query(
        self,
        sql: str,
        parameters: Mapping[str, object],
        *,
        page_size: int,
        continuation_token: str | None,
        partition_key: str | None = None,
    ) -> Page:
        params: list[dict[str, object]] = [{"name": name, "value": value} for name, value in parameters.items()]
        with translate_cosmos_errors():
            kwargs: dict[str, Any] = {"parameters": params, "max_item_count": page_size}
            if partition_key is not None:
                kwargs["partition_key"] = partition_key
            else:
                kwargs["enable_cross_partition_query"] = True
            pages: Any = self._container.query_items(sql, **kwargs).by_page(continuation_token)
            try:
                items = list(next(pages, []))
            except CosmosHttpResponseError as error:
                # The caller's token is the only part of a query the caller wrote; Cosmos refuses a bad one with 400.
                if error.status_code == 400 and continuation_token is not None:
                    message = "is not a valid continuation token"
                    raise ValidationFailed(
                        f"continuationToken {message}", [FieldError("continuationToken", message)]
                    ) from error
                raise
            token = pages.continuation_token
        return Page(items=items, continuation_token=token or None)

    def claim_key(self, claim: KeyClaim) -> KeyClaim | None:
        """Create the claim; when the key was claimed before, return that earlier claim instead."""
        body = {
            "id": claim.document_id,
            "pk": claim.document_id,
            "docType": DOC_TYPE_KEY_CLAIM,
            "bodyHash": claim.body_hash,
            "assignmentId": claim.assignment_id,
            "ttl": KEY_CLAIM_TTL_SECONDS,
        }
        while True:
            with translate_cosmos_errors():
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
        with translate_cosmos_errors():
            try:
                body = self._container.read_item(claim.document_id, partition_key=claim.document_id)
            except CosmosHttpResponseError as error:
                if error.status_code == 404:
                    return None
                raise
        return KeyClaim(key=claim.key, body_hash=body["bodyHash"], assignment_id=body["assignmentId"])

    def ping(self) -> None:
        with translate_cosmos_errors():
            self._container.read()
