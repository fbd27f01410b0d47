"""The Cosmos DB client, provisioning, the round-trip counter, and the one place SDK errors become
domain errors (`translate_cosmos_errors`, driven by a status table)."""

from __future__ import annotations

import logging
import os
import threading
import urllib.request
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.transport import RequestsTransport
from azure.cosmos import ContainerProxy, CosmosClient, DatabaseProxy, PartitionKey
from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosClientTimeoutError, CosmosHttpResponseError
from requests.adapters import HTTPAdapter

from core.errors import (
    ConcurrencyConflict,
    DomainError,
    FieldError,
    LimitExceeded,
    ServiceUnavailable,
    ValidationFailed,
)

log = logging.getLogger("assignments.cosmos")

# Throttling is answered by telling the caller when to come back, not by holding the request open
# through the SDK's own long retry loop.
_MAX_THROTTLE_RETRIES = 2
# An account that accepts the connection and then says nothing (overloaded, partitioned, a frozen process) is an
# outage, answered as 503 with Retry-After within seconds, not a request held open. The SDK waits 65 s for a
# response and sends a read twice more, over three minutes, while Cosmos answers a point operation in
# milliseconds and a query page within a few seconds. A read or a query page is sent once more (which also
# recovers a pooled connection the server closed); a write never is, since one that timed out may still be
# applied (a client resends it with its Idempotency-Key). So one call waits at most 2 x 4 s, a write 4 s.
READ_TIMEOUT_SECONDS = 4
_READ_RETRIES = 1
# Cosmos's sub-status for "the owner resource (database or container) does not exist".
SUBSTATUS_OWNER_MISSING = 1003

# Partition key paths by container role; infra/main.bicep must agree (tests/test_infra.py checks it).
ASSIGNMENTS_PARTITION_KEY = "/pk"
USERS_PARTITION_KEY = "/pk"
LEASES_PARTITION_KEY = "/id"
VIEWS_PARTITION_KEY = "/pk"


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


def _retry_after_seconds(headers: dict[str, Any] | None) -> int:
    try:
        millis = float((headers or {}).get("x-ms-retry-after-ms", "1000"))
    except ValueError:
        millis = 1000
    return max(1, int(-(-millis // 1000)))


def _owner_missing(container: str) -> DomainError:
    log.error("Cosmos DB reports the database or container of %r missing: provision it", container)
    # The name stays in the log: a caller learns only that the service is unavailable.
    return ServiceUnavailable(retry_after=5)


# What each Cosmos status means to a caller. 409 is the operation's own business (`on_conflict`), 404 is
# read_or_none's; what is not here is a bug or an outage we cannot name, and reaches the boundary as a 500.
_STATUS_ERRORS: dict[int, Callable[[dict[str, Any] | None], Exception]] = {
    412: lambda _h: ConcurrencyConflict("the document changed since it was read"),
    429: lambda headers: ServiceUnavailable(retry_after=_retry_after_seconds(headers)),
    408: lambda _h: ServiceUnavailable(retry_after=1),
    503: lambda _h: ServiceUnavailable(retry_after=1),
    # The change would push the document past Cosmos's item size limit; nothing was written.
    413: lambda _h: LimitExceeded("The change would make the assignment larger than the store allows"),
}


@contextmanager
def translate_cosmos_errors(*, container: str = "", on_conflict: Exception | None = None) -> Iterator[None]:
    """The one place where SDK errors become domain errors."""
    try:
        yield
    except CosmosBatchOperationError as error:
        failed = (error.operation_responses or [{}])[error.error_index or 0]
        status = int(failed.get("statusCode") or error.status_code or 0)
        if status == 409 and on_conflict is not None:
            raise on_conflict from error
        if status in _STATUS_ERRORS:
            raise _STATUS_ERRORS[status](error.headers) from error
        raise
    except CosmosHttpResponseError as error:
        status = int(error.status_code or 0)
        if status == 404 and error.sub_status == SUBSTATUS_OWNER_MISSING:
            raise _owner_missing(container) from error
        if status == 409 and on_conflict is not None:
            raise on_conflict from error
        if status in _STATUS_ERRORS:
            raise _STATUS_ERRORS[status](error.headers) from error
        raise
    except (CosmosClientTimeoutError, ServiceRequestError, ServiceResponseError) as error:
        raise ServiceUnavailable(retry_after=1) from error


def read_or_none(container: ContainerProxy, item_id: str, partition_key: str) -> dict[str, Any] | None:
    """A point read; None when the item does not exist. A missing container is an outage, not None."""
    with translate_cosmos_errors(container=container.id):
        try:
            body: dict[str, Any] = container.read_item(item_id, partition_key=partition_key)
        except CosmosHttpResponseError as error:
            if error.status_code == 404 and error.sub_status != SUBSTATUS_OWNER_MISSING:
                return None
            raise
    return body


def first_page(pages: Any, continuation_token: str | None) -> list[dict[str, Any]]:
    """The first page of a query's pages; a continuation token Cosmos refuses is the caller's mistake (422)."""
    try:
        return list(next(pages, []))
    except CosmosHttpResponseError as error:
        # The caller's token is the only part of a query the caller wrote; Cosmos refuses a bad one with 400.
        if error.status_code == 400 and continuation_token is not None:
            message = "is not a valid continuation token"
            field = [FieldError("continuationToken", message)]
            raise ValidationFailed(f"continuationToken {message}", field) from error
        raise


def query_parameters(parameters: Mapping[str, object]) -> list[dict[str, object]]:
    return [{"name": name, "value": value} for name, value in parameters.items()]


class ContainerStore:
    """What the stores over one container share: SDK errors translated with the container's name, and
    paged queries."""

    def __init__(self, container: ContainerProxy) -> None:
        self._container = container

    def _errors(self, *, on_conflict: Exception | None = None) -> Any:
        return translate_cosmos_errors(container=self._container.id, on_conflict=on_conflict)

    def _query_page(
        self,
        sql: str,
        parameters: Mapping[str, object],
        continuation_token: str | None,
        *,
        token_from_caller: bool,
        **options: Any,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the query and the token of the next, None after the last. Only a caller's token
        that Cosmos refuses is the caller's mistake (`first_page`); a refused token of our own previous
        page is our bug."""
        with self._errors():
            pages: Any = self._container.query_items(sql, parameters=query_parameters(parameters), **options).by_page(
                continuation_token
            )
            items = first_page(pages, continuation_token if token_from_caller else None)
            token = pages.continuation_token
        return items, token or None


class EnvironmentOnceSession(requests.Session):
    """A `requests` session that takes the environment's proxy and CA settings once, when it is built.

    With `trust_env`, `requests` reads them again on every request (`merge_environment_settings`), iterating
    the whole of `os.environ` twice, and looks for a `.netrc`: about 0.1 ms a round trip with a small
    environment, more with a Functions host's. This session applies the settings it took, as `requests`
    would: `HTTP(S)_PROXY`/`ALL_PROXY`, except for hosts `NO_PROXY` names (decided once per host, by
    `requests`' own rule), and `REQUESTS_CA_BUNDLE` or `CURL_CA_BUNDLE` wherever certificates are verified
    (`verify=True`). A request's own proxies and `verify` still win. `.netrc` is never read: the SDK signs
    every request itself, and a `.netrc` entry for the account would only replace that signature.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        # One client serves every concurrent request of the process: requests' default pool of 10
        # connections per host discarded connections under load (a new TLS handshake each, on Azure).
        for scheme in ("https://", "http://"):
            self.mount(scheme, HTTPAdapter(pool_connections=4, pool_maxsize=64))
        environment = urllib.request.getproxies()
        self.environment_no_proxy: str | None = environment.pop("no", None)
        self.environment_proxies: dict[str, str] = environment
        self.environment_ca_bundle: str | None = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None
        )
        self._proxies_by_origin: dict[tuple[str, str], dict[str, str]] = {}

    def _proxies_for(self, url: str) -> dict[str, str]:
        parts = urlsplit(url)
        origin = (parts.scheme, parts.netloc)
        proxies = self._proxies_by_origin.get(origin)
        if proxies is None:
            bypass = requests.utils.should_bypass_proxies(url, no_proxy=self.environment_no_proxy)
            proxies = {} if bypass else self.environment_proxies
            self._proxies_by_origin[origin] = proxies
        return proxies

    def merge_environment_settings(
        self, url: str | bytes | None, proxies: MutableMapping[str, str] | None, stream: Any, verify: Any, cert: Any
    ) -> Any:
        if self.environment_proxies and url is not None:
            text = url.decode() if isinstance(url, bytes) else url
            proxies = {**self._proxies_for(text), **(proxies or {})}
        if self.environment_ca_bundle and (verify is True or verify is None):
            verify = self.environment_ca_bundle
        return super().merge_environment_settings(url, proxies, stream, verify, cert)


def _transport() -> RequestsTransport:
    """The client's transport: proxies and CA bundle read from the environment once, here
    (`EnvironmentOnceSession`), not on every request."""
    return RequestsTransport(session=EnvironmentOnceSession(), session_owner=True)


def make_cosmos_client(
    endpoint: str, key: str | None, *, counter: RoundTripCounter | None = None, credential: Any = None
) -> CosmosClient:
    """A client for the settings' account: signed with the key when there is one (the emulator's,
    locally), else with the token credential (managed identity in production)."""
    options: dict[str, Any] = {
        "retry_total": _MAX_THROTTLE_RETRIES,
        "retry_backoff_max": 2,
        "connection_timeout": 5,
        "read_timeout": READ_TIMEOUT_SECONDS,
        "retry_read": _READ_RETRIES,
        "transport": _transport(),
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


@dataclass(frozen=True)
class ContainerNames:
    database: str
    assignments: str
    users: str
    leases: str
    views: str


def ensure_containers(client: CosmosClient, names: ContainerNames) -> DatabaseProxy:
    """Create the database and containers if missing. Idempotent; run once, at first use."""
    with translate_cosmos_errors(container=names.database):
        database = client.create_database_if_not_exists(names.database)
        # default_ttl=-1 turns TTL on without expiring anything by default: per-document `ttl` applies
        # (idempotency records and key claims).
        database.create_container_if_not_exists(
            names.assignments, partition_key=PartitionKey(path=ASSIGNMENTS_PARTITION_KEY), default_ttl=-1
        )
        database.create_container_if_not_exists(names.users, partition_key=PartitionKey(path=USERS_PARTITION_KEY))
        database.create_container_if_not_exists(names.leases, partition_key=PartitionKey(path=LEASES_PARTITION_KEY))
        database.create_container_if_not_exists(
            names.views, partition_key=PartitionKey(path=VIEWS_PARTITION_KEY), default_ttl=-1
        )
    return database
