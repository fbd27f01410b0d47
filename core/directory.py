"""The user directory port. Create, delegate, reassign and assign resolve users through it, by UPN or
by key, always within the caller's tenant.

Adapters (`DIRECTORY=cosmos|graph` chooses one; the composition root wraps it in `CachedDirectory`):
- `core.cosmos.users.CosmosDirectory`: the `users` container, partitioned by tenant, for local runs and
  tenants that sync their users; admins write it with `PUT /users/{userKey}`.
- `GraphDirectory`: Microsoft Graph, `GET /users/{id|upn}`, with an injected azure-identity credential.
  Graph serves the app's home tenant only; in any other tenant it knows nobody.

A disabled account is still returned by the adapters (it still owns its UPN); `enabled_user_by_upn` and
`enabled_user_by_key` are what the use cases use, and they treat it as not found.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol
from urllib.parse import quote, urlsplit

import requests
from azure.core.credentials import TokenCredential

from core.errors import ServiceUnavailable

log = logging.getLogger("assignments.directory")


@dataclass(frozen=True)
class DirectoryUser:
    user_key: str
    upn: str
    display_name: str | None
    account_enabled: bool


class Directory(Protocol):
    def find_by_upn(self, tenant_id: str, upn: str) -> DirectoryUser | None: ...

    def find_by_key(self, tenant_id: str, user_key: str) -> DirectoryUser | None: ...


class UserRegistry(Protocol):
    """The writable side: only the Cosmos `users` container can be written by this service."""

    def put(self, tenant_id: str, user: DirectoryUser) -> DirectoryUser | None:
        """Store `user` in the tenant; return the entry it replaced (None when the key is new).
        `DuplicateUpn` when another key of the tenant holds the UPN."""
        ...

    def get(self, tenant_id: str, user_key: str) -> DirectoryUser | None: ...


def enabled_user_by_upn(directory: Directory, tenant_id: str, upn: str) -> DirectoryUser | None:
    """The enabled user with this UPN in the tenant, or None: a disabled account counts as not found."""
    user = directory.find_by_upn(tenant_id, upn)
    return user if user is not None and user.account_enabled else None


def enabled_user_by_key(directory: Directory, tenant_id: str, user_key: str) -> DirectoryUser | None:
    user = directory.find_by_key(tenant_id, user_key)
    return user if user is not None and user.account_enabled else None


# --- Microsoft Graph ---------------------------------------------------------------------------------

# `accountEnabled` is not among Graph's default user properties: it is returned only when selected.
GRAPH_USER_SELECT = "id,userPrincipalName,accountEnabled,displayName"
GRAPH_TIMEOUT_SECONDS = 5.0
_THROTTLED = (429, 503, 504)


def graph_scope(base_url: str) -> str:
    """The `.default` scope of the Graph instance at `base_url` (national clouds have their own hosts)."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}/.default"


def _graph_retry_after(response: requests.Response) -> int:
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            seconds = 1
    return max(1, int(-(-seconds // 1)))


class GraphDirectory:
    """Users of the home tenant from Microsoft Graph. Needs the `User.Read.All` application permission:
    with less, Graph omits `accountEnabled`, and such a user counts as disabled (this adapter fails closed);
    without any, Graph answers 403, which is an outage of this deployment (503), logged with the fix."""

    def __init__(
        self,
        base_url: str,
        credential: TokenCredential,
        *,
        home_tenant_id: str | None = None,
        session: requests.Session | None = None,
        timeout: float = GRAPH_TIMEOUT_SECONDS,
    ) -> None:
        self._home_tenant_id = home_tenant_id.lower() if home_tenant_id else None
        self._base_url = base_url.rstrip("/")
        self._scope = graph_scope(base_url)
        self._credential = credential
        self._session = session or requests.Session()
        self._timeout = timeout

    def _serves(self, tenant_id: str) -> bool:
        return self._home_tenant_id is None or tenant_id.lower() == self._home_tenant_id

    def find_by_upn(self, tenant_id: str, upn: str) -> DirectoryUser | None:
        return self._get(upn.lower()) if self._serves(tenant_id) else None

    def find_by_key(self, tenant_id: str, user_key: str) -> DirectoryUser | None:
        return self._get(user_key) if self._serves(tenant_id) else None

    def _url(self, id_or_upn: str) -> str:
        quoted = quote(id_or_upn, safe="@")
        # Graph's documented form for a UPN starting with `$`, which would otherwise read as a system query option.
        path = f"users('{quoted}')" if id_or_upn.startswith("$") else f"users/{quoted}"
        return f"{self._base_url}/{path}?$select={GRAPH_USER_SELECT}"

    def _get(self, id_or_upn: str) -> DirectoryUser | None:
        token = self._credential.get_token(self._scope).token
        try:
            response = self._session.get(
                self._url(id_or_upn),
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                timeout=self._timeout,
            )
        except requests.RequestException as error:
            raise ServiceUnavailable("The directory did not answer", retry_after=1) from error
        if response.status_code == 404:
            return None
        if response.status_code in _THROTTLED:
            raise ServiceUnavailable("The directory is busy; retry", retry_after=_graph_retry_after(response))
        if response.status_code in (401, 403):
            log.error(
                "Microsoft Graph refused the directory lookup (%d): grant the app's identity the Graph "
                "application permission User.Read.All (docs/deploy.md)",
                response.status_code,
            )
            raise ServiceUnavailable("The directory is not available to this service", retry_after=30)
        if response.status_code >= 400:
            log.error("Microsoft Graph answered %d to a directory lookup", response.status_code)
            raise ServiceUnavailable("The directory did not answer", retry_after=1)
        body = response.json()
        return DirectoryUser(
            user_key=body["id"],
            upn=str(body["userPrincipalName"]).lower(),
            display_name=body.get("displayName"),
            account_enabled=body.get("accountEnabled") is True,
        )


# --- cache -------------------------------------------------------------------------------------------

DEFAULT_CACHE_ENTRIES = 10_000


class CachedDirectory:
    """Serves repeated lookups from memory for `ttl_seconds` (0 turns caching off).

    Only users that were found are cached: a user an admin has just added is found at once, while a
    change to an existing user (disabled, renamed) shows after at most the TTL, or at once in the process
    that made it (`forget`). A lookup by UPN also answers the lookup by key, and vice versa.
    """

    def __init__(
        self,
        inner: Directory,
        *,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = DEFAULT_CACHE_ENTRIES,
    ) -> None:
        self._inner = inner
        self._ttl = ttl_seconds
        self._clock = clock
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str], tuple[float, DirectoryUser]] = {}

    def find_by_upn(self, tenant_id: str, upn: str) -> DirectoryUser | None:
        return self._lookup(tenant_id, ("upn", tenant_id, upn.lower()), lambda: self._inner.find_by_upn(tenant_id, upn))

    def find_by_key(self, tenant_id: str, user_key: str) -> DirectoryUser | None:
        return self._lookup(
            tenant_id, ("key", tenant_id, user_key), lambda: self._inner.find_by_key(tenant_id, user_key)
        )

    def forget(self, tenant_id: str, *users: DirectoryUser) -> None:
        with self._lock:
            for user in users:
                self._entries.pop(("key", tenant_id, user.user_key), None)
                self._entries.pop(("upn", tenant_id, user.upn.lower()), None)

    def _lookup(
        self, tenant_id: str, cache_key: tuple[str, str, str], load: Callable[[], DirectoryUser | None]
    ) -> DirectoryUser | None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(cache_key)
            if entry is not None and now < entry[0]:
                return entry[1]
        user = load()
        if user is not None and self._ttl > 0:
            self._store(tenant_id, user, now + self._ttl)
        return user

    def _store(self, tenant_id: str, user: DirectoryUser, expires_at: float) -> None:
        with self._lock:
            for cache_key in (("key", tenant_id, user.user_key), ("upn", tenant_id, user.upn.lower())):
                self._entries.pop(cache_key, None)
                self._entries[cache_key] = (expires_at, user)
            while len(self._entries) > self._max_entries:
                # Insertion order is expiry order, since every entry lives for the same TTL.
                del self._entries[next(iter(self._entries))]
