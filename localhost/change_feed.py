"""Cosmos DB trigger functions, fed from the change feed of the container their binding names.

Like the host's change feed processor, one listener per function:
- reads the monitored container's latest-version change feed in modification order, in pages of at most
  `maxItemsPerInvocation` documents, and calls the function with each page as a `func.DocumentList`;
- keeps its continuation in a lease document in the lease container, written after every batch, so a restart
  resumes after the last batch handed to the function;
- advances the lease even when the function raises: the batch is not retried (that is the real host's behaviour,
  see FACTS.md), so the failure is logged at ERROR with the exception;
- with a retry policy (`@app.retry`, `localhost.retry`), calls the function again with the same batch, up to
  `max_retry_count` more times with the policy's delays, before the lease advances; a stop during a retry's wait
  leaves the lease where it was, so the batch is delivered again after a restart;
- without a lease, starts from `startFromTime`, from the beginning with `startFromBeginning`, else from now;
- after draining the feed, waits `feedPollDelay` milliseconds (default 5000, as on the real host) before polling.

Local differences: one lease document per function and container (the real host keeps one per partition key
range, plus an owner record, and balances them across instances); a single listener thread per function.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import azure.functions as func
from azure.core import MatchConditions
from azure.cosmos import ContainerProxy, CosmosClient, PartitionKey
from azure.cosmos.exceptions import CosmosHttpResponseError, CosmosResourceNotFoundError

from core.clock import Clock, utc_now
from core.cosmos.client import LEASES_PARTITION_KEY, make_cosmos_client
from core.models import format_timestamp
from localhost.app_settings import AppSettings, BindingConfigError, CosmosConnection
from localhost.invocation import FunctionInvoker
from localhost.listener_thread import ListenerThread
from localhost.retry import RetryPolicy, RetryWaitInterrupted, call_with_retries

log = logging.getLogger("localhost.change_feed")

DEFAULT_FEED_POLL_DELAY_MS = 5000
DEFAULT_MAX_ITEMS_PER_INVOCATION = 100
DEFAULT_LEASE_CONTAINER = "leases"


@dataclass(frozen=True)
class CosmosTriggerBinding:
    """A `cosmosDBTrigger` binding with its settings resolved."""

    function_name: str
    connection: CosmosConnection
    database: str
    container: str
    lease_connection: CosmosConnection
    lease_database: str
    lease_container: str
    lease_prefix: str
    create_lease_container: bool
    max_items: int
    poll_delay_seconds: float
    start_from_beginning: bool
    start_from_time: datetime | None

    @property
    def lease_id(self) -> str:
        return f"{self.lease_prefix}{self.function_name}.{self.database}.{self.container}"

    @classmethod
    def from_raw(cls, function_name: str, raw: Mapping[str, Any], settings: AppSettings) -> CosmosTriggerBinding:
        where = f"function {function_name}, binding {raw['name']}"

        def text(name: str, default: str | None = None) -> str:
            value = raw.get(name, default)
            if value is None:
                raise BindingConfigError(f"{where}: {name} is required")
            return settings.resolve(str(value), where=where)

        connection = settings.cosmos_connection(text("connection"), where=where)
        database = text("databaseName")
        lease_connection_name = raw.get("leaseConnection")
        start_time = raw.get("startFromTime")
        return cls(
            function_name=function_name,
            connection=connection,
            database=database,
            container=text("containerName"),
            lease_connection=(
                settings.cosmos_connection(text("leaseConnection"), where=where)
                if lease_connection_name
                else connection
            ),
            lease_database=text("leaseDatabaseName", database),
            lease_container=text("leaseContainerName", DEFAULT_LEASE_CONTAINER),
            lease_prefix=text("leaseContainerPrefix", ""),
            create_lease_container=bool(raw.get("createLeaseContainerIfNotExists", False)),
            max_items=int(raw.get("maxItemsPerInvocation") or DEFAULT_MAX_ITEMS_PER_INVOCATION),
            poll_delay_seconds=int(raw.get("feedPollDelay") or DEFAULT_FEED_POLL_DELAY_MS) / 1000,
            start_from_beginning=bool(raw.get("startFromBeginning", False)),
            start_from_time=datetime.fromisoformat(settings.resolve(str(start_time), where=where))
            if start_time
            else None,
        )


def _client(connection: CosmosConnection) -> CosmosClient:
    return make_cosmos_client(connection.endpoint, connection.key)


class ChangeFeedListener:
    """Feeds one Cosmos DB trigger function. `start()` fixes the start position before returning, so a write
    made after it returns is delivered even when the listener starts from now."""

    def __init__(
        self,
        binding: CosmosTriggerBinding,
        invoker: FunctionInvoker,
        *,
        clock: Clock = utc_now,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.binding = binding
        self._invoker = invoker
        self._clock = clock
        self._retry = retry
        # A client of its own: the continuation is read from the client's last response headers, which only
        # this listener's thread touches.
        self._feed_client = _client(binding.connection)
        self._lease_client = (
            self._feed_client if binding.lease_connection == binding.connection else _client(binding.lease_connection)
        )
        self._stop = threading.Event()
        self._thread = ListenerThread(f"change-feed-{binding.function_name}", self._run, self._stop)
        self._continuation: str | None = None
        self._lease_etag: str | None = None
        self._monitored: ContainerProxy | None = None
        self._leases: ContainerProxy | None = None

    def open(self) -> None:
        """Check the containers, read the lease, and fix the start position; `poll_once()` may follow."""
        self._monitored = self._open_monitored()
        self._leases = self._open_leases()
        self._continuation = self._read_lease()
        if self._continuation is None and not self.binding.start_from_beginning and not self.binding.start_from_time:
            self.poll_once()  # "now": nothing is delivered, but the position is fixed and leased

    def start(self) -> None:
        """`open()`, then poll on a thread of its own until `stop()`."""
        self.open()
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except RetryWaitInterrupted:
                log.info("Change feed of %s: stopped waiting to retry; the lease stays", self.binding.function_name)
                return
            except Exception:  # a listener outlives a transient Cosmos error, as the host's does
                log.exception("Change feed of %s: polling failed; retrying", self.binding.function_name)
            self._stop.wait(self.binding.poll_delay_seconds)

    def poll_once(self) -> int:
        """Drain the change feed from the leased position; return how many documents were delivered."""
        assert self._monitored is not None, "open() first"
        delivered = 0
        pages = self._monitored.query_items_change_feed(
            max_item_count=self.binding.max_items, **self._position()
        ).by_page()
        for page in pages:
            documents = list(page)
            # Read on this thread right after the page arrived: the token for "after this page".
            continuation = self._feed_client.client_connection.last_response_headers.get("etag")
            for start in range(0, len(documents), self.binding.max_items):
                self._deliver(documents[start : start + self.binding.max_items])
            delivered += len(documents)
            self._checkpoint(continuation)
            if self._stop.is_set():
                break
        else:
            # A drained feed (304) still names the current position, which "now" needs.
            self._checkpoint(self._feed_client.client_connection.last_response_headers.get("etag"))
        return delivered

    def _position(self) -> dict[str, Any]:
        if self._continuation is not None:
            return {"continuation": self._continuation}
        if self.binding.start_from_time is not None:
            return {"start_time": self.binding.start_from_time}
        return {"start_time": "Beginning" if self.binding.start_from_beginning else "Now"}

    def _deliver(self, documents: list[dict[str, Any]]) -> None:
        """Hand one batch to the function (again, per its retry policy). RetryWaitInterrupted when stopped between
        tries: the caller then leaves the lease alone."""

        def batch() -> func.DocumentList:  # a fresh copy per call: one call's changes never reach the next
            return func.DocumentList([func.Document.from_dict(copy.deepcopy(document)) for document in documents])

        try:
            call_with_retries(
                self._invoker,
                batch,
                name=self.binding.function_name,
                reason=f"New changes on container {self.binding.container}",
                policy=self._retry,
                wait=self._stop.wait,
            )
        except RetryWaitInterrupted:
            raise
        except Exception:
            ids = [document.get("id") for document in documents]
            retried = f" and {self._retry.max_retry_count} retries" if self._retry is not None else ""
            # The real host advances the lease anyway, so this batch is never retried: say so, loudly.
            log.exception(
                "Cosmos DB trigger function %s FAILED on a batch of %d document(s) %s%s; the checkpoint advances "
                "and the batch will NOT be retried",
                self.binding.function_name,
                len(documents),
                ids,
                retried,
            )

    def _checkpoint(self, continuation: str | None) -> None:
        """Advance the lease, conditional on the version of it we last saw: a second host on the same lease
        then fails here instead of moving the lease backwards, and adopts the other's position."""
        if not continuation or continuation == self._continuation:
            return
        assert self._leases is not None
        lease = {
            "id": self.binding.lease_id,
            "ContinuationToken": continuation,
            "Owner": "localhost",
            "FeedDatabase": self.binding.database,
            "FeedContainer": self.binding.container,
            "timestamp": format_timestamp(self._clock()),
        }
        try:
            if self._lease_etag is None:
                written = self._leases.create_item(lease)
            else:
                written = self._leases.replace_item(
                    lease["id"], lease, etag=self._lease_etag, match_condition=MatchConditions.IfNotModified
                )
        except CosmosHttpResponseError as error:
            if error.status_code not in (409, 412):
                raise
            log.warning("Lease %s was advanced by another host; taking up its position", self.binding.lease_id)
            self._continuation = self._read_lease()
            return
        self._lease_etag = written["_etag"]
        self._continuation = continuation

    def _read_lease(self) -> str | None:
        assert self._leases is not None
        try:
            lease = self._leases.read_item(self.binding.lease_id, partition_key=self.binding.lease_id)
        except CosmosResourceNotFoundError:
            self._lease_etag = None
            return None
        self._lease_etag = lease["_etag"]
        token = lease.get("ContinuationToken")
        return str(token) if token else None

    def _open_monitored(self) -> ContainerProxy:
        container = self._feed_client.get_database_client(self.binding.database).get_container_client(
            self.binding.container
        )
        try:
            container.read()
        except CosmosResourceNotFoundError:
            raise BindingConfigError(
                f"function {self.binding.function_name}: the monitored container "
                f"{self.binding.database}/{self.binding.container} does not exist"
            ) from None
        return container

    def _open_leases(self) -> ContainerProxy:
        database = self._lease_client.get_database_client(self.binding.lease_database)
        if self.binding.create_lease_container:
            return database.create_container_if_not_exists(
                self.binding.lease_container, partition_key=PartitionKey(path=LEASES_PARTITION_KEY)
            )
        container = database.get_container_client(self.binding.lease_container)
        try:
            container.read()
        except CosmosResourceNotFoundError:
            raise BindingConfigError(
                f"function {self.binding.function_name}: the lease container {self.binding.lease_database}/"
                f"{self.binding.lease_container} does not exist; create it or set createLeaseContainerIfNotExists"
            ) from None
        return container
