"""The composition root: the one place that reads settings and builds clients.

Everything is built lazily, once, on first use, and never at import: an import-time failure would
silently drop every function on the real Functions host. Tests and the local host install their own
`Runtime` with `set_runtime`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueServiceClient

from core import telemetry
from core.auth import JwksCache, Principal, TokenValidator, bearer_token
from core.clock import Clock, utc_now
from core.cosmos import (
    ContainerNames,
    CosmosAssignmentStore,
    CosmosDirectory,
    RoundTripCounter,
    ensure_containers,
    make_cosmos_client,
)
from core.cosmos.views import CosmosViewStore
from core.directory import CachedDirectory, Directory, DirectoryUser, GraphDirectory, UserRegistry
from core.health import Probe
from core.queues import MessageQueue, StorageQueue
from core.services import Deps
from core.services.projection import FeedDeps
from core.services.sweep import SweepDeps
from core.settings import Settings, get_settings
from core.timer_rules import ReminderPolicy

T = TypeVar("T")
STORAGE_PROBE_TIMEOUT_SECONDS = 3


class Runtime:
    """Holds the settings and the lazily built clients of one process."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = utc_now,
        cosmos_credential: Any = None,
        graph_credential: Any = None,
        jwks_min_refetch_interval: float = 5.0,
        directory: Directory | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.round_trips = RoundTripCounter()
        self._cosmos_credential = cosmos_credential
        self._graph_credential = graph_credential
        self._jwks_min_refetch_interval = jwks_min_refetch_interval
        self._lock = threading.RLock()
        self._built: dict[str, Any] = {}
        if directory is not None:
            self._built["directory"] = directory

    def _once(self, name: str, build: Callable[[], T]) -> T:
        with self._lock:
            if name not in self._built:
                self._built[name] = build()
            value: T = self._built[name]
            return value

    @property
    def container_names(self) -> ContainerNames:
        s = self.settings
        return ContainerNames(
            database=s.cosmos_database,
            assignments=s.cosmos_assignments_container,
            users=s.cosmos_users_container,
            leases=s.cosmos_leases_container,
            views=s.cosmos_views_container,
        )

    def _database(self) -> Any:
        def build() -> Any:
            client = make_cosmos_client(
                self.settings.cosmos_endpoint,
                self.settings.cosmos_key,
                counter=self.round_trips,
                credential=self._cosmos_credential or (None if self.settings.cosmos_key else self._azure_credential()),
            )
            return ensure_containers(client, self.container_names)

        return self._once("database", build)

    @property
    def assignments_container(self) -> Any:
        return self._once(
            "assignments", lambda: self._database().get_container_client(self.container_names.assignments)
        )

    @property
    def store(self) -> CosmosAssignmentStore:
        return self._once("store", lambda: CosmosAssignmentStore(self.assignments_container))

    @property
    def views_container(self) -> Any:
        return self._once("views_container", lambda: self._database().get_container_client(self.container_names.views))

    @property
    def views(self) -> CosmosViewStore:
        return self._once("views", lambda: CosmosViewStore(self.views_container))

    @property
    def notifications(self) -> MessageQueue:
        return self._once("notifications", lambda: self._queue(self.settings.notifications_queue))

    def _queue(self, name: str) -> StorageQueue:
        account = self.settings.azure_web_jobs_storage_account_name
        return StorageQueue.build(
            name,
            connection_string=self.settings.azure_web_jobs_storage,
            account_url=f"https://{account}.queue.core.windows.net" if account else None,
            credential=None if self.settings.azure_web_jobs_storage else self._azure_credential(),
        )

    @property
    def policy(self) -> ReminderPolicy:
        s = self.settings
        return ReminderPolicy(
            lead=timedelta(hours=s.reminder_lead_hours),
            repeat=timedelta(hours=s.reminder_repeat_hours),
            expiry_warning=timedelta(hours=s.expiry_warning_hours),
            max_reminders=s.reminder_max,
        )

    def feed_deps(self) -> FeedDeps:
        return FeedDeps(
            store=self.store, views=self.views, queue=self.notifications, policy=self.policy, clock=self.clock
        )

    def sweep_deps(self) -> SweepDeps:
        return SweepDeps(
            store=self.store,
            views=self.views,
            policy=self.policy,
            clock=self.clock,
            max_seconds=self.settings.sweep_max_seconds,
        )

    @property
    def users_container(self) -> Any:
        return self._once("users", lambda: self._database().get_container_client(self.container_names.users))

    @property
    def directory(self) -> Directory:
        return self._once("directory", self._build_directory)

    def _build_directory(self) -> Directory:
        inner: Directory
        if self.settings.directory == "graph":
            # Graph answers for the app's home tenant: the first allowed tenant.
            inner = GraphDirectory(
                self.settings.graph_base_url,
                self._graph_credential or self._azure_credential(),
                home_tenant_id=self.settings.auth_tenant_ids[0],
            )
        else:
            inner = CosmosDirectory(self.users_container)
        cache = CachedDirectory(inner, ttl_seconds=self.settings.directory_cache_ttl_seconds)
        self._built["directory_cache"] = cache
        return cache

    @property
    def user_registry(self) -> UserRegistry:
        """The Cosmos `users` container, which `PUT /users/{userKey}` writes whatever DIRECTORY says."""
        return self._once("user_registry", lambda: CosmosDirectory(self.users_container))

    def forget_user(self, tenant_id: str, user: DirectoryUser) -> None:
        """Drop a changed user from this process's directory cache, if it has one."""
        cache: CachedDirectory | None = self._built.get("directory_cache")
        if cache is not None:
            cache.forget(tenant_id, user)

    @property
    def token_validator(self) -> TokenValidator:
        def build() -> TokenValidator:
            s = self.settings
            jwks = JwksCache(s.auth_jwks_uri, min_refetch_interval=self._jwks_min_refetch_interval)
            return TokenValidator(
                tenant_ids=s.auth_tenant_ids, audiences=s.auth_audiences, jwks=jwks, issuers=s.auth_issuers
            )

        return self._once("validator", build)

    def authenticate(self, authorization: str | None) -> Principal:
        return self.token_validator.validate(bearer_token(authorization))

    def deps(self) -> Deps:
        return Deps(
            store=self.store,
            clock=self.clock,
            directory=self.directory,
            delegation_max_depth=self.settings.delegation_max_depth,
            attempts_limit=self.settings.attempts_limit,
            views=self.views,
            idempotency_ttl_seconds=self.settings.idempotency_ttl_hours * 3600,
        )

    def health_probes(self) -> dict[str, Probe]:
        return {"cosmos": self._probe_cosmos, "storage": self._probe_storage}

    def _probe_cosmos(self) -> None:
        self.store.ping()

    def _probe_storage(self) -> None:
        """A queue-level call the granted data role allows (Storage Queue Data Contributor may refuse the
        account-level service properties): the notifications queue's properties. A queue not created yet
        still proves Storage answered and took our credentials."""
        queue = self._once("queue_service", self._build_queue_service).get_queue_client(
            self.settings.notifications_queue
        )
        try:
            queue.get_queue_properties(timeout=STORAGE_PROBE_TIMEOUT_SECONDS)
        except ResourceNotFoundError:
            return

    def _build_queue_service(self) -> QueueServiceClient:
        options: dict[str, Any] = {"connection_timeout": STORAGE_PROBE_TIMEOUT_SECONDS, "retry_total": 0}
        connection = self.settings.azure_web_jobs_storage
        account = self.settings.azure_web_jobs_storage_account_name
        if connection:
            return QueueServiceClient.from_connection_string(connection, **options)
        if account:
            return QueueServiceClient(
                f"https://{account}.queue.core.windows.net", credential=self._azure_credential(), **options
            )
        raise RuntimeError("Neither AzureWebJobsStorage nor AzureWebJobsStorage__accountName is set")

    def configure_telemetry(self) -> bool:
        """Application Insights for this process's own dependencies and logs (core/telemetry.py), when the
        settings name a resource; once per process, and never raises."""
        return telemetry.configure(self.settings.applicationinsights_connection_string, self._azure_credential)

    def _azure_credential(self) -> Any:
        """The managed identity in Azure (DefaultAzureCredential), built once and shared by clients."""

        def build() -> Any:
            from azure.identity import DefaultAzureCredential

            return DefaultAzureCredential()

        return self._once("azure_credential", build)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime(get_settings())
            _runtime.configure_telemetry()
        return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Install a runtime built elsewhere (tests, the local host); None goes back to the environment's."""
    global _runtime
    with _runtime_lock:
        _runtime = runtime
