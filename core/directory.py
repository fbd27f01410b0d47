"""The user directory port. Delegate, reassign and assign resolve users through it, by UPN or by key.

Adapters (`DIRECTORY=cosmos|graph` chooses one; the composition root wraps it in `CachedDirectory`):
- `CosmosDirectory`: the `users` container, for local runs and tenants that sync their users. Each user
  is stored twice in one container: under `key:{userKey}` and under `upn:{upn}`, so either lookup is one
  point read. Admins write it with `PUT /users/{userKey}` (`put`).
- `GraphDirectory`: Microsoft Graph, `GET /users/{id|upn}`, with an injected azure-identity credential.

A disabled account is still returned by the adapters (it still owns its UPN); `enabled_user_by_upn` and
`enabled_user_by_key` are what delegate and assign use, and they treat it as not found.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import requests
from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.cosmos import ContainerProxy
from azure.cosmos.exceptions import CosmosHttpResponseError

from core.errors import ConcurrencyConflict, DuplicateUpn, ServiceUnavailable, UserNotFound
from core.store import translate_cosmos_errors


@dataclass(frozen=True)
class DirectoryUser:
    user_key: str
    upn: str
    display_name: str | None
    account_enabled: bool


class Directory(Protocol):
    def find_by_upn(self, upn: str) -> DirectoryUser | None: ...

    def find_by_key(self, user_key: str) -> DirectoryUser | None: ...


class UserRegistry(Protocol):
    """The writable side: only the Cosmos `users` container can be written by this service."""

    def put(self, user: DirectoryUser) -> DirectoryUser | None:
        """Store `user`; return the entry it replaced (None when the key is new)."""
        ...


def enabled_user_by_upn(directory: Directory, upn: str) -> DirectoryUser:
    return _enabled(directory.find_by_upn(upn), f"No enabled user {upn} is in the directory")


def enabled_user_by_key(directory: Directory, user_key: str) -> DirectoryUser:
    return _enabled(directory.find_by_key(user_key), f"No enabled user with key {user_key} is in the directory")


def _enabled(user: DirectoryUser | None, detail: str) -> DirectoryUser:
    if user is None or not user.account_enabled:
        raise UserNotFound(detail)
    return user


# --- Cosmos ------------------------------------------------------------------------------------------

# Concurrent PUTs of the same user key lose ETag races; each loser re-reads and re-decides.
MAX_PUT_RETRIES = 8


def _key_pk(user_key: str) -> str:
    return f"key:{user_key}"


def _upn_pk(upn: str) -> str:
    return f"upn:{upn.lower()}"


def _user_from(body: dict[str, Any]) -> DirectoryUser:
    return DirectoryUser(
        user_key=body["userKey"],
        upn=body["upn"],
        display_name=body.get("displayName"),
        account_enabled=bool(body.get("accountEnabled", True)),
    )


def _body_of(user: DirectoryUser, pk: str) -> dict[str, Any]:
    return {
        "id": "user",
        "pk": pk,
        "userKey": user.user_key,
        "upn": user.upn,
        "displayName": user.display_name,
        "accountEnabled": user.account_enabled,
    }


class CosmosDirectory:
    def __init__(self, container: ContainerProxy) -> None:
        self._container = container

    def _read_body(self, pk: str) -> dict[str, Any] | None:
        with translate_cosmos_errors():
            try:
                body: dict[str, Any] = self._container.read_item("user", partition_key=pk)
            except CosmosHttpResponseError as error:
                if error.status_code == 404:
                    return None
                raise
        return body

    def _read(self, pk: str) -> DirectoryUser | None:
        body = self._read_body(pk)
        return None if body is None else _user_from(body)

    def find_by_upn(self, upn: str) -> DirectoryUser | None:
        return self._read(_upn_pk(upn))

    def find_by_key(self, user_key: str) -> DirectoryUser | None:
        return self._read(_key_pk(user_key))

    def put(self, user: DirectoryUser) -> DirectoryUser | None:
        """Write both entries of a user, refusing a UPN another key holds.

        The entries live in two partitions, so no batch can write them together. The order makes every
        intermediate state safe and a retried PUT repairs any interrupted one: first the UPN entry is
        claimed (a create, so of two keys racing for one UPN exactly one wins), then the key entry is
        written conditionally on the ETag read, and last the old UPN entry of a renamed user is removed.
        """
        user = replace(user, upn=user.upn.lower())
        for _ in range(MAX_PUT_RETRIES):
            current = self._read_body(_key_pk(user.user_key))
            try:
                self._claim_upn(user)
                self._write(_key_pk(user.user_key), user, current)
            except ConcurrencyConflict:
                continue
            previous = None if current is None else _user_from(current)
            if previous is not None and previous.upn != user.upn:
                self._release_upn(previous)
            return previous
        raise ServiceUnavailable("The user is being changed by many requests at once; retry", retry_after=1)

    def _claim_upn(self, user: DirectoryUser) -> None:
        pk = _upn_pk(user.upn)
        holder = self._read_body(pk)
        if holder is not None and holder["userKey"] != user.user_key:
            raise DuplicateUpn(f"The UPN {user.upn} belongs to another user key")
        self._write(pk, user, holder)

    def _write(self, pk: str, user: DirectoryUser, current: dict[str, Any] | None) -> None:
        body = _body_of(user, pk)
        with translate_cosmos_errors(on_conflict=ConcurrencyConflict(f"{pk} was created concurrently")):
            if current is None:
                self._container.create_item(body)
            else:
                self._container.replace_item(
                    "user", body, etag=current["_etag"], match_condition=MatchConditions.IfNotModified
                )

    def _release_upn(self, previous: DirectoryUser) -> None:
        pk = _upn_pk(previous.upn)
        holder = self._read_body(pk)
        # Only remove the entry while it is still ours: another key may have claimed the UPN since.
        if holder is None or holder["userKey"] != previous.user_key:
            return
        with translate_cosmos_errors():
            try:
                self._container.delete_item(
                    "user", partition_key=pk, etag=holder["_etag"], match_condition=MatchConditions.IfNotModified
                )
            except CosmosHttpResponseError as error:
                # Gone already, or just changed hands: either way it no longer names this user.
                if error.status_code not in (404, 412):
                    raise


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
    """Users from Microsoft Graph. Needs the `User.Read.All` application permission: with less, Graph
    omits `accountEnabled`, and such a user counts as disabled (this adapter fails closed)."""

    def __init__(
        self,
        base_url: str,
        credential: TokenCredential,
        *,
        session: requests.Session | None = None,
        timeout: float = GRAPH_TIMEOUT_SECONDS,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._scope = graph_scope(base_url)
        self._credential = credential
        self._session = session or requests.Session()
        self._timeout = timeout

    def find_by_upn(self, upn: str) -> DirectoryUser | None:
        return self._get(upn.lower())

    def find_by_key(self, user_key: str) -> DirectoryUser | None:
        return self._get(user_key)

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
        # Anything else (401/403: a missing permission) is a deployment error, reported as a 500.
        response.raise_for_status()
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
        self._entries: dict[str, tuple[float, DirectoryUser]] = {}

    def find_by_upn(self, upn: str) -> DirectoryUser | None:
        return self._lookup(_upn_pk(upn), lambda: self._inner.find_by_upn(upn))

    def find_by_key(self, user_key: str) -> DirectoryUser | None:
        return self._lookup(_key_pk(user_key), lambda: self._inner.find_by_key(user_key))

    def forget(self, *users: DirectoryUser) -> None:
        with self._lock:
            for user in users:
                self._entries.pop(_key_pk(user.user_key), None)
                self._entries.pop(_upn_pk(user.upn), None)

    def _lookup(self, cache_key: str, load: Callable[[], DirectoryUser | None]) -> DirectoryUser | None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(cache_key)
            if entry is not None and now < entry[0]:
                return entry[1]
        user = load()
        if user is not None and self._ttl > 0:
            self._store(user, now + self._ttl)
        return user

    def _store(self, user: DirectoryUser, expires_at: float) -> None:
        with self._lock:
            for cache_key in (_key_pk(user.user_key), _upn_pk(user.upn)):
                self._entries.pop(cache_key, None)
                self._entries[cache_key] = (expires_at, user)
            while len(self._entries) > self._max_entries:
                # Insertion order is expiry order, since every entry lives for the same TTL.
                del self._entries[next(iter(self._entries))]
