"""The directory adapters: Graph against a local server that answers as Graph does, the Cosmos `users`
container against the emulator, and the TTL cache with a controlled clock. Every lookup is within a
tenant: the same UPN in two tenants is two users, and a lookup in one tenant never finds another's."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from azure.core.credentials import AccessToken

from core.bootstrap import Runtime
from core.cosmos.users import CosmosDirectory
from core.directory import (
    CachedDirectory,
    DirectoryUser,
    GraphDirectory,
    enabled_user_by_key,
    enabled_user_by_upn,
    graph_scope,
)
from core.errors import DuplicateUpn, ServiceUnavailable
from core.settings import Settings
from tests.support.local_http import LocalHttpServer

# Graph's default property set for a user: what `GET /users/{id}` returns without `$select`.
GRAPH_DEFAULT_PROPERTIES = (
    "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone", "officeLocation",
    "preferredLanguage", "surname", "userPrincipalName", "id",
)  # fmt: skip
STATIC_TOKEN = "static-graph-token"
# The tenant GraphDirectory serves (the app's home tenant), and another allowed tenant it does not.
HOME_TENANT = "0c5f8c2e-6a4b-4d1e-9f3a-1b2c3d4e5f60"
OTHER_TENANT = "9e8d7c6b-5a49-4837-a625-14f3e2d1c0b9"


class StaticCredential:
    """A TokenCredential that hands out a fixed token, and records the scopes it was asked for."""

    def __init__(self, token: str = STATIC_TOKEN) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


@dataclass
class SeenRequest:
    path: str
    query: dict[str, list[str]]
    authorization: str | None


@dataclass
class FakeGraph(LocalHttpServer):
    """A local HTTP server that answers `GET /v1.0/users/{id|upn}` as Microsoft Graph does."""

    users: list[dict[str, Any]] = field(default_factory=list)
    seen: list[SeenRequest] = field(default_factory=list)
    throttle_with: str | None = None  # a Retry-After value: answer 429 with it
    refuse: bool = False  # answer 403, as Graph does when the app's identity lacks the permission
    honour_select: bool = True

    def __post_init__(self) -> None:
        graph = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                graph.handle(self)

            def log_message(self, *_args: Any) -> None:
                pass

        super().__init__(Handler)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1.0"

    def add(self, *, upn: str, enabled: bool = True, user_id: str | None = None) -> dict[str, Any]:
        user = {
            "id": user_id or str(uuid.uuid4()),
            "userPrincipalName": upn,
            "displayName": upn.split("@")[0].title(),
            "accountEnabled": enabled,
            "givenName": None, "surname": None, "mail": upn, "jobTitle": None, "mobilePhone": None,
            "officeLocation": None, "preferredLanguage": None, "businessPhones": [],
        }  # fmt: skip
        self.users.append(user)
        return user

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        query = parse_qs(parts.query)
        self.seen.append(SeenRequest(parts.path, query, request.headers.get("Authorization")))
        if request.headers.get("Authorization") != f"Bearer {STATIC_TOKEN}":
            self._send(
                request, 401, {"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty."}}
            )
            return
        if self.refuse:
            denied = {
                "code": "Authorization_RequestDenied",
                "message": "Insufficient privileges to complete the operation.",
            }
            self._send(request, 403, {"error": denied})
            return
        if self.throttle_with is not None:
            error = {"error": {"code": "TooManyRequests", "message": "Too many requests"}}
            self._send(request, 429, error, {"Retry-After": self.throttle_with})
            return
        path = unquote(parts.path)
        if path.startswith("/v1.0/users('") and path.endswith("')"):
            wanted = path[len("/v1.0/users('") : -2]
        elif path.startswith("/v1.0/users/"):
            wanted = path[len("/v1.0/users/") :]
        else:
            self._send(request, 400, {"error": {"code": "BadRequest", "message": "Unsupported segment"}})
            return
        match = next(
            (u for u in self.users if wanted == u["id"] or wanted.lower() == u["userPrincipalName"].lower()), None
        )
        if match is None:
            message = (
                f"Resource '{wanted}' does not exist or one of its queried reference-property objects are not present."
            )
            self._send(request, 404, {"error": {"code": "Request_ResourceNotFound", "message": message}})
            return
        selected = query.get("$select", [""])[0].split(",") if "$select" in query else []
        names = selected if selected and self.honour_select else GRAPH_DEFAULT_PROPERTIES
        body = {"@odata.context": f"{self.base_url}/$metadata#users/$entity"}
        body.update({name: match[name] for name in names if name in match})
        self._send(request, 200, body)

    @staticmethod
    def _send(
        request: BaseHTTPRequestHandler, status: int, body: object, headers: dict[str, str] | None = None
    ) -> None:
        payload = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(payload)


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with FakeGraph() as server:
        yield server


@pytest.fixture
def credential() -> StaticCredential:
    return StaticCredential()


@pytest.fixture
def graph_directory(graph: FakeGraph, credential: StaticCredential) -> GraphDirectory:
    return GraphDirectory(graph.base_url, credential, home_tenant_id=HOME_TENANT)


class TestGraphDirectory:
    def test_the_fake_omits_account_enabled_unless_selected(self, graph: FakeGraph) -> None:
        import requests

        user = graph.add(upn="ann@contoso.com")
        headers = {"Authorization": f"Bearer {STATIC_TOKEN}"}
        plain = requests.get(f"{graph.base_url}/users/{user['id']}", headers=headers, timeout=5).json()
        assert "accountEnabled" not in plain
        selected = requests.get(
            f"{graph.base_url}/users/{user['id']}?$select=id,accountEnabled", headers=headers, timeout=5
        ).json()
        assert selected["accountEnabled"] is True

    def test_finds_by_upn_and_by_key_with_the_select_and_token(
        self, graph: FakeGraph, graph_directory: GraphDirectory, credential: StaticCredential
    ) -> None:
        user = graph.add(upn="Ann.Lee@Contoso.com")
        by_upn = graph_directory.find_by_upn(HOME_TENANT, "ann.lee@contoso.com")
        by_key = graph_directory.find_by_key(HOME_TENANT, user["id"])
        expected = DirectoryUser(
            user_key=user["id"], upn="ann.lee@contoso.com", display_name="Ann.Lee", account_enabled=True
        )
        assert by_upn == by_key == expected
        assert [seen.path for seen in graph.seen] == ["/v1.0/users/ann.lee@contoso.com", f"/v1.0/users/{user['id']}"]
        for seen in graph.seen:
            assert seen.query == {"$select": ["id,userPrincipalName,accountEnabled,displayName"]}
            assert seen.authorization == f"Bearer {STATIC_TOKEN}"
        assert credential.scopes == [(graph_scope(graph.base_url),)] * 2

    def test_the_home_tenant_is_matched_without_regard_to_case(
        self, graph: FakeGraph, graph_directory: GraphDirectory
    ) -> None:
        user = graph.add(upn="case@contoso.com")
        assert graph_directory.find_by_key(HOME_TENANT.upper(), user["id"]) is not None

    def test_another_tenant_knows_nobody_and_graph_is_not_asked(
        self, graph: FakeGraph, graph_directory: GraphDirectory, credential: StaticCredential
    ) -> None:
        user = graph.add(upn="home@contoso.com")
        assert graph_directory.find_by_upn(OTHER_TENANT, "home@contoso.com") is None
        assert graph_directory.find_by_key(OTHER_TENANT, user["id"]) is None
        assert enabled_user_by_upn(graph_directory, OTHER_TENANT, "home@contoso.com") is None
        assert enabled_user_by_key(graph_directory, OTHER_TENANT, user["id"]) is None
        assert graph.seen == [], "the home tenant's Graph is never asked about another tenant"
        assert credential.scopes == []
        assert graph_directory.find_by_upn(HOME_TENANT, "home@contoso.com") is not None

    def test_a_disabled_account_is_returned_but_not_enabled(
        self, graph: FakeGraph, graph_directory: GraphDirectory
    ) -> None:
        disabled = graph.add(upn="off@contoso.com", enabled=False)
        user = graph_directory.find_by_upn(HOME_TENANT, "off@contoso.com")
        assert user is not None
        assert user.account_enabled is False
        assert enabled_user_by_upn(graph_directory, HOME_TENANT, "off@contoso.com") is None
        assert enabled_user_by_key(graph_directory, HOME_TENANT, disabled["id"]) is None

    def test_without_account_enabled_a_user_counts_as_disabled(
        self, graph: FakeGraph, graph_directory: GraphDirectory
    ) -> None:
        graph.honour_select = False  # as when the app lacks User.Read.All
        graph.add(upn="basic@contoso.com")
        user = graph_directory.find_by_upn(HOME_TENANT, "basic@contoso.com")
        assert user is not None
        assert user.account_enabled is False

    def test_404_is_none(self, graph_directory: GraphDirectory) -> None:
        assert graph_directory.find_by_upn(HOME_TENANT, "nobody@contoso.com") is None
        assert graph_directory.find_by_key(HOME_TENANT, str(uuid.uuid4())) is None
        assert enabled_user_by_key(graph_directory, HOME_TENANT, "missing-key") is None
        assert enabled_user_by_upn(graph_directory, HOME_TENANT, "nobody@contoso.com") is None

    def test_guest_and_dollar_upns_are_escaped(self, graph: FakeGraph, graph_directory: GraphDirectory) -> None:
        guest = graph.add(upn="ann_fabrikam.com#EXT#@contoso.onmicrosoft.com")
        dollar = graph.add(upn="$admin@contoso.com")
        assert graph_directory.find_by_upn(HOME_TENANT, guest["userPrincipalName"]) is not None
        assert graph_directory.find_by_upn(HOME_TENANT, dollar["userPrincipalName"]) is not None
        assert graph.seen[0].path == "/v1.0/users/ann_fabrikam.com%23ext%23@contoso.onmicrosoft.com"
        assert graph.seen[1].path == "/v1.0/users('%24admin@contoso.com')"

    @pytest.mark.parametrize(("retry_after", "expected"), [("7", 7), ("0", 1), ("2.5", 3)])
    def test_throttling_is_service_unavailable_with_retry_after(
        self, graph: FakeGraph, graph_directory: GraphDirectory, retry_after: str, expected: int
    ) -> None:
        graph.throttle_with = retry_after
        with pytest.raises(ServiceUnavailable) as caught:
            graph_directory.find_by_upn(HOME_TENANT, "ann@contoso.com")
        assert caught.value.retry_after == expected

    @pytest.mark.parametrize("status", [401, 403])
    def test_a_refused_lookup_is_service_unavailable_logged_with_what_to_grant(
        self, graph: FakeGraph, caplog: pytest.LogCaptureFixture, status: int
    ) -> None:
        # An outage of this deployment, never "no such user": 403 when the app lacks User.Read.All, 401 when
        # Graph does not accept its token.
        user = graph.add(upn="ann@contoso.com")
        graph.refuse = status == 403
        credential = StaticCredential(STATIC_TOKEN if status == 403 else "a-token-graph-refuses")
        graph_directory = GraphDirectory(graph.base_url, credential, home_tenant_id=HOME_TENANT)
        lookups: list[Callable[[], object]] = [
            lambda: graph_directory.find_by_upn(HOME_TENANT, "ann@contoso.com"),
            lambda: graph_directory.find_by_key(HOME_TENANT, user["id"]),
            lambda: enabled_user_by_upn(graph_directory, HOME_TENANT, "ann@contoso.com"),
        ]
        for lookup in lookups:
            caplog.clear()
            with caplog.at_level(logging.ERROR, logger="assignments.directory"), pytest.raises(ServiceUnavailable):
                lookup()
            assert any(
                "User.Read.All" in record.getMessage() and str(status) in record.getMessage()
                for record in caplog.records
            ), "the log says what to grant"
        assert [seen.authorization for seen in graph.seen] == [f"Bearer {credential.token}"] * len(lookups)

    def test_an_unreachable_graph_is_service_unavailable(self, credential: StaticCredential) -> None:
        dead = FakeGraph()
        dead.stop()
        directory = GraphDirectory(dead.base_url, credential, home_tenant_id=HOME_TENANT, timeout=1)
        with pytest.raises(ServiceUnavailable):
            directory.find_by_upn(HOME_TENANT, "ann@contoso.com")

    def test_scope_follows_the_graph_host(self) -> None:
        assert graph_scope("https://graph.microsoft.com/v1.0") == "https://graph.microsoft.com/.default"
        assert graph_scope("https://graph.microsoft.us/v1.0/") == "https://graph.microsoft.us/.default"

    def test_the_runtime_builds_graph_with_the_injected_credential(
        self, graph: FakeGraph, settings: Settings, credential: StaticCredential
    ) -> None:
        graph.add(upn="rt@contoso.com")
        runtime = Runtime(
            settings.model_copy(update={"directory": "graph", "graph_base_url": graph.base_url}),
            graph_credential=credential,
        )
        home = settings.auth_tenant_ids[0]
        assert isinstance(runtime.directory, CachedDirectory)
        for _ in range(2):
            found = enabled_user_by_upn(runtime.directory, home, "rt@contoso.com")
            assert found is not None
            assert found.upn == "rt@contoso.com"
        assert len(graph.seen) == 1, "the second lookup is a cache hit"
        assert enabled_user_by_upn(runtime.directory, OTHER_TENANT, "rt@contoso.com") is None
        assert len(graph.seen) == 1, "Graph serves the home tenant (the first allowed) only"


class RecordingDirectory:
    """A directory of users by tenant, recording every lookup as (tenant, "upn:…" or "key:…")."""

    def __init__(self, *users: DirectoryUser, tenant: str) -> None:
        self.users: dict[str, list[DirectoryUser]] = {tenant: list(users)}
        self.calls: list[tuple[str, str]] = []

    def add(self, tenant: str, user: DirectoryUser) -> None:
        self.users.setdefault(tenant, []).append(user)

    def find_by_upn(self, tenant_id: str, upn: str) -> DirectoryUser | None:
        self.calls.append((tenant_id, f"upn:{upn}"))
        return next((u for u in self.users.get(tenant_id, []) if u.upn == upn.lower()), None)

    def find_by_key(self, tenant_id: str, user_key: str) -> DirectoryUser | None:
        self.calls.append((tenant_id, f"key:{user_key}"))
        return next((u for u in self.users.get(tenant_id, []) if u.user_key == user_key), None)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


TENANT_A = "tenant-a"
TENANT_B = "tenant-b"
ANN = DirectoryUser(user_key="k-ann", upn="ann@contoso.com", display_name="Ann", account_enabled=True)
# Another tenant's user with Ann's UPN (and even her key): a different person.
ANN_OF_B = DirectoryUser(user_key="k-ann", upn="ann@contoso.com", display_name="Ann of B", account_enabled=True)


class TestCachedDirectory:
    def test_serves_hits_until_the_ttl_passes(self) -> None:
        inner, clock = RecordingDirectory(ANN, tenant=TENANT_A), FakeClock()
        cache = CachedDirectory(inner, ttl_seconds=300, clock=clock)
        assert cache.find_by_upn(TENANT_A, "ann@contoso.com") == ANN
        clock.now += 299.9
        assert cache.find_by_upn(TENANT_A, "ANN@contoso.com") == ANN
        assert cache.find_by_key(TENANT_A, "k-ann") == ANN, "a lookup by UPN answers the lookup by key"
        assert inner.calls == [(TENANT_A, "upn:ann@contoso.com")]
        clock.now += 0.1
        assert cache.find_by_key(TENANT_A, "k-ann") == ANN
        assert inner.calls == [(TENANT_A, "upn:ann@contoso.com"), (TENANT_A, "key:k-ann")]

    def test_misses_are_not_cached(self) -> None:
        inner = RecordingDirectory(tenant=TENANT_A)
        cache = CachedDirectory(inner, ttl_seconds=300, clock=FakeClock())
        assert cache.find_by_upn(TENANT_A, "ann@contoso.com") is None
        inner.add(TENANT_A, ANN)
        assert cache.find_by_upn(TENANT_A, "ann@contoso.com") == ANN

    def test_zero_ttl_caches_nothing(self) -> None:
        inner = RecordingDirectory(ANN, tenant=TENANT_A)
        cache = CachedDirectory(inner, ttl_seconds=0, clock=FakeClock())
        cache.find_by_upn(TENANT_A, "ann@contoso.com")
        cache.find_by_upn(TENANT_A, "ann@contoso.com")
        assert len(inner.calls) == 2

    def test_forget_drops_both_entries(self) -> None:
        inner = RecordingDirectory(ANN, tenant=TENANT_A)
        cache = CachedDirectory(inner, ttl_seconds=300, clock=FakeClock())
        cache.find_by_upn(TENANT_A, "ann@contoso.com")
        cache.forget(TENANT_A, ANN)
        cache.find_by_key(TENANT_A, "k-ann")
        cache.find_by_upn(TENANT_A, "ann@contoso.com")
        assert inner.calls == [(TENANT_A, "upn:ann@contoso.com"), (TENANT_A, "key:k-ann")]

    def test_the_oldest_entries_go_first_when_full(self) -> None:
        users = [DirectoryUser(f"k{i}", f"u{i}@contoso.com", None, True) for i in range(3)]
        inner, clock = RecordingDirectory(*users, tenant=TENANT_A), FakeClock()
        cache = CachedDirectory(inner, ttl_seconds=300, clock=clock, max_entries=4)
        for user in users:
            cache.find_by_key(TENANT_A, user.user_key)
        inner.calls.clear()
        cache.find_by_key(TENANT_A, "k2")
        cache.find_by_key(TENANT_A, "k0")
        assert inner.calls == [(TENANT_A, "key:k0")]

    def test_a_hit_in_one_tenant_never_answers_another(self) -> None:
        inner = RecordingDirectory(ANN, tenant=TENANT_A)
        cache = CachedDirectory(inner, ttl_seconds=300, clock=FakeClock())
        assert cache.find_by_upn(TENANT_A, "ann@contoso.com") == ANN
        assert cache.find_by_upn(TENANT_B, "ann@contoso.com") is None
        assert cache.find_by_key(TENANT_B, "k-ann") is None
        assert inner.calls == [
            (TENANT_A, "upn:ann@contoso.com"),
            (TENANT_B, "upn:ann@contoso.com"),
            (TENANT_B, "key:k-ann"),
        ]
        inner.add(TENANT_B, ANN_OF_B)
        assert cache.find_by_upn(TENANT_B, "ann@contoso.com") == ANN_OF_B
        assert cache.find_by_key(TENANT_A, "k-ann") == ANN, "each tenant keeps its own entries"
        assert cache.find_by_key(TENANT_B, "k-ann") == ANN_OF_B

    def test_forget_drops_only_that_tenants_entries(self) -> None:
        inner = RecordingDirectory(ANN, tenant=TENANT_A)
        inner.add(TENANT_B, ANN_OF_B)
        cache = CachedDirectory(inner, ttl_seconds=300, clock=FakeClock())
        cache.find_by_key(TENANT_A, "k-ann")
        cache.find_by_key(TENANT_B, "k-ann")
        inner.calls.clear()
        cache.forget(TENANT_A, ANN)
        assert cache.find_by_upn(TENANT_B, "ann@contoso.com") == ANN_OF_B
        assert cache.find_by_upn(TENANT_A, "ann@contoso.com") == ANN
        assert inner.calls == [(TENANT_A, "upn:ann@contoso.com")]


@pytest.fixture
def cosmos_directory(runtime: Runtime) -> CosmosDirectory:
    return CosmosDirectory(runtime.users_container)


@pytest.fixture
def tenant() -> str:
    """A tenant of this test's own: the users container is shared by the session."""
    return str(uuid.uuid4())


def a_user(upn: str | None = None, *, key: str | None = None, enabled: bool = True) -> DirectoryUser:
    suffix = uuid.uuid4().hex[:8]
    return DirectoryUser(
        user_key=key or f"key-{suffix}",
        upn=upn or f"user-{suffix}@contoso.com",
        display_name="U",
        account_enabled=enabled,
    )


def upn_entries(runtime: Runtime, tenant: str, user_key: str) -> list[str]:
    """The UPNs of every UPN entry in the tenant's partition that names `user_key`."""
    items = runtime.users_container.query_items(
        "SELECT VALUE c.upn FROM c WHERE c.userKey = @key AND STARTSWITH(c.id, 'upn:')",
        parameters=[{"name": "@key", "value": user_key}],
        partition_key=tenant,
    )
    return sorted(items)


def race(action: Callable[[DirectoryUser], object], users: list[DirectoryUser]) -> list[str]:
    """Run `action` for every user at once, one thread each; "ok" or the exception's class name, in order."""
    outcomes = [""] * len(users)
    barrier = threading.Barrier(len(users))

    def run(index: int) -> None:
        barrier.wait()
        try:
            action(users[index])
            outcomes[index] = "ok"
        except Exception as error:
            outcomes[index] = type(error).__name__

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(users))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


class TestCosmosDirectory:
    def test_put_then_find_by_either_with_one_read_each(
        self, runtime: Runtime, cosmos_directory: CosmosDirectory, tenant: str
    ) -> None:
        user = a_user()
        assert cosmos_directory.put(tenant, user) is None
        before = runtime.round_trips.count
        assert cosmos_directory.find_by_upn(tenant, user.upn.upper()) == user
        assert cosmos_directory.find_by_key(tenant, user.user_key) == user
        assert runtime.round_trips.count - before == 2
        assert cosmos_directory.get(tenant, user.user_key) == user

    def test_put_returns_the_previous_entry_and_renames_cleanly(
        self, runtime: Runtime, cosmos_directory: CosmosDirectory, tenant: str
    ) -> None:
        old = a_user()
        cosmos_directory.put(tenant, old)
        renamed = a_user(key=old.user_key, enabled=False)
        assert cosmos_directory.put(tenant, renamed) == old
        assert cosmos_directory.find_by_upn(tenant, old.upn) is None, "the old UPN entry is removed"
        assert cosmos_directory.find_by_key(tenant, old.user_key) == renamed
        assert cosmos_directory.find_by_upn(tenant, renamed.upn) == renamed
        assert upn_entries(runtime, tenant, old.user_key) == [renamed.upn]
        other = a_user(old.upn)
        assert cosmos_directory.put(tenant, other) is None, "the released UPN is free for another key"

    def test_a_repeated_put_replaces_in_place(
        self, runtime: Runtime, cosmos_directory: CosmosDirectory, tenant: str
    ) -> None:
        user = a_user()
        cosmos_directory.put(tenant, user)
        disabled = DirectoryUser(user.user_key, user.upn.upper(), "Renamed display", account_enabled=False)
        assert cosmos_directory.put(tenant, disabled) == user
        stored = DirectoryUser(user.user_key, user.upn, "Renamed display", account_enabled=False)
        assert cosmos_directory.find_by_upn(tenant, user.upn) == stored
        assert cosmos_directory.find_by_key(tenant, user.user_key) == stored
        assert upn_entries(runtime, tenant, user.user_key) == [user.upn]

    def test_a_upn_of_another_key_is_refused(self, cosmos_directory: CosmosDirectory, tenant: str) -> None:
        holder = a_user()
        cosmos_directory.put(tenant, holder)
        intruder = a_user(holder.upn.upper())
        with pytest.raises(DuplicateUpn):
            cosmos_directory.put(tenant, intruder)
        assert cosmos_directory.find_by_key(tenant, intruder.user_key) is None
        assert cosmos_directory.find_by_upn(tenant, holder.upn) == holder

    def test_racing_keys_for_one_upn_one_wins(self, cosmos_directory: CosmosDirectory, tenant: str) -> None:
        upn = a_user().upn
        contenders = [a_user(upn) for _ in range(8)]
        outcomes = race(lambda user: cosmos_directory.put(tenant, user), contenders)
        assert sorted(outcomes) == ["DuplicateUpn"] * 7 + ["ok"]
        winner = cosmos_directory.find_by_upn(tenant, upn)
        assert winner is not None
        assert contenders[outcomes.index("ok")] == winner
        assert [cosmos_directory.find_by_key(tenant, u.user_key) is not None for u in contenders].count(True) == 1

    # Before a put was one batch, every trial left stale `upn:` entries behind: UPNs no user held any more,
    # yet refused to every other key. A few trials, since a race may or may not interleave badly.
    @pytest.mark.parametrize("trial", range(3))
    def test_racing_renames_of_one_key_leave_no_orphaned_upn_claims(
        self, runtime: Runtime, cosmos_directory: CosmosDirectory, tenant: str, trial: int
    ) -> None:
        key = f"key-{uuid.uuid4().hex}"
        names = [a_user(key=key) for _ in range(20)]
        outcomes = race(lambda user: cosmos_directory.put(tenant, user), names)
        # Every put either won or, after losing too many races in a row, was told to retry (503).
        assert set(outcomes) <= {"ok", "ServiceUnavailable"}, outcomes
        assert "ok" in outcomes
        current = cosmos_directory.find_by_key(tenant, key)
        assert current is not None
        assert current in names
        assert upn_entries(runtime, tenant, key) == [current.upn], "exactly one UPN entry names the key"
        assert cosmos_directory.find_by_upn(tenant, current.upn) == current
        for released in (user for user in names if user.upn != current.upn):
            assert cosmos_directory.find_by_upn(tenant, released.upn) is None
            assert cosmos_directory.put(tenant, a_user(released.upn)) is None, "every other UPN is free"


class TestCosmosDirectoryTenancy:
    def test_the_same_upn_in_two_tenants_is_two_users(self, cosmos_directory: CosmosDirectory) -> None:
        tenant_a, tenant_b = str(uuid.uuid4()), str(uuid.uuid4())
        in_a = a_user()
        in_b = a_user(in_a.upn.upper())
        assert cosmos_directory.put(tenant_a, in_a) is None
        assert cosmos_directory.put(tenant_b, in_b) is None, "a UPN held in another tenant is no duplicate"
        assert cosmos_directory.find_by_upn(tenant_a, in_a.upn) == in_a
        assert cosmos_directory.find_by_upn(tenant_b, in_a.upn) == DirectoryUser(
            in_b.user_key, in_a.upn, in_b.display_name, in_b.account_enabled
        )
        assert cosmos_directory.find_by_key(tenant_a, in_b.user_key) is None
        assert cosmos_directory.find_by_key(tenant_b, in_a.user_key) is None

    def test_a_lookup_in_another_tenant_never_finds_the_user(self, cosmos_directory: CosmosDirectory) -> None:
        tenant_a, tenant_b = str(uuid.uuid4()), str(uuid.uuid4())
        user = a_user()
        cosmos_directory.put(tenant_a, user)
        assert cosmos_directory.find_by_upn(tenant_b, user.upn) is None
        assert cosmos_directory.find_by_key(tenant_b, user.user_key) is None
        assert cosmos_directory.get(tenant_b, user.user_key) is None
        assert enabled_user_by_upn(cosmos_directory, tenant_b, user.upn) is None
        assert enabled_user_by_key(cosmos_directory, tenant_b, user.user_key) is None
        assert enabled_user_by_upn(cosmos_directory, tenant_a, user.upn) == user

    def test_duplicate_upn_is_refused_only_within_a_tenant(self, cosmos_directory: CosmosDirectory) -> None:
        tenant_a, tenant_b = str(uuid.uuid4()), str(uuid.uuid4())
        holder = a_user()
        cosmos_directory.put(tenant_a, holder)
        with pytest.raises(DuplicateUpn):
            cosmos_directory.put(tenant_a, a_user(holder.upn))
        newcomer = a_user(holder.upn)
        assert cosmos_directory.put(tenant_b, newcomer) is None
        with pytest.raises(DuplicateUpn):
            cosmos_directory.put(tenant_b, a_user(holder.upn))
        assert cosmos_directory.find_by_upn(tenant_a, holder.upn) == holder
        assert cosmos_directory.find_by_upn(tenant_b, holder.upn) == newcomer

    def test_one_key_in_two_tenants_is_two_independent_users(self, cosmos_directory: CosmosDirectory) -> None:
        tenant_a, tenant_b = str(uuid.uuid4()), str(uuid.uuid4())
        key = f"key-{uuid.uuid4().hex}"
        in_a, in_b = a_user(key=key), a_user(key=key)
        cosmos_directory.put(tenant_a, in_a)
        assert cosmos_directory.put(tenant_b, in_b) is None, "the key is new in tenant B"
        renamed_in_b = a_user(key=key, enabled=False)
        assert cosmos_directory.put(tenant_b, renamed_in_b) == in_b
        assert cosmos_directory.find_by_key(tenant_a, key) == in_a, "a change in B leaves A untouched"
        assert cosmos_directory.find_by_upn(tenant_a, in_a.upn) == in_a
        assert cosmos_directory.find_by_upn(tenant_b, in_b.upn) is None
        assert cosmos_directory.find_by_key(tenant_b, key) == renamed_in_b
