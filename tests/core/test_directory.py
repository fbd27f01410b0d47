"""The directory adapters: Graph against a local server that answers as Graph does, the Cosmos `users`
container against the emulator, and the TTL cache with a controlled clock."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from azure.core.credentials import AccessToken

from core.bootstrap import Runtime
from core.directory import (
    CachedDirectory,
    CosmosDirectory,
    DirectoryUser,
    GraphDirectory,
    enabled_user_by_key,
    enabled_user_by_upn,
    graph_scope,
)
from core.errors import DuplicateUpn, ServiceUnavailable, UserNotFound
from core.settings import Settings

# Graph's default property set for a user: what `GET /users/{id}` returns without `$select`.
GRAPH_DEFAULT_PROPERTIES = (
    "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone", "officeLocation",
    "preferredLanguage", "surname", "userPrincipalName", "id",
)  # fmt: skip
STATIC_TOKEN = "static-graph-token"


class StaticCredential:
    """A TokenCredential that hands out a fixed token, and records the scopes it was asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(STATIC_TOKEN, int(time.time()) + 3600)


@dataclass
class SeenRequest:
    path: str
    query: dict[str, list[str]]
    authorization: str | None


@dataclass
class FakeGraph:
    """A local HTTP server that answers `GET /v1.0/users/{id|upn}` as Microsoft Graph does."""

    users: list[dict[str, Any]] = field(default_factory=list)
    seen: list[SeenRequest] = field(default_factory=list)
    throttle_with: str | None = None  # a Retry-After value: answer 429 with it
    honour_select: bool = True

    def __post_init__(self) -> None:
        graph = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                graph.handle(self)

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1.0"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

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
    server = FakeGraph()
    yield server
    server.stop()


@pytest.fixture
def credential() -> StaticCredential:
    return StaticCredential()


@pytest.fixture
def graph_directory(graph: FakeGraph, credential: StaticCredential) -> GraphDirectory:
    return GraphDirectory(graph.base_url, credential)


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
        by_upn = graph_directory.find_by_upn("ann.lee@contoso.com")
        by_key = graph_directory.find_by_key(user["id"])
        expected = DirectoryUser(
            user_key=user["id"], upn="ann.lee@contoso.com", display_name="Ann.Lee", account_enabled=True
        )
        assert by_upn == by_key == expected
        assert [seen.path for seen in graph.seen] == ["/v1.0/users/ann.lee@contoso.com", f"/v1.0/users/{user['id']}"]
        for seen in graph.seen:
            assert seen.query == {"$select": ["id,userPrincipalName,accountEnabled,displayName"]}
            assert seen.authorization == f"Bearer {STATIC_TOKEN}"
        assert credential.scopes == [(graph_scope(graph.base_url),)] * 2

    def test_a_disabled_account_is_returned_but_not_enabled(
        self, graph: FakeGraph, graph_directory: GraphDirectory
    ) -> None:
        graph.add(upn="off@contoso.com", enabled=False)
        user = graph_directory.find_by_upn("off@contoso.com")
        assert user is not None
        assert user.account_enabled is False
        with pytest.raises(UserNotFound):
            enabled_user_by_upn(graph_directory, "off@contoso.com")

    def test_without_account_enabled_a_user_counts_as_disabled(
        self, graph: FakeGraph, graph_directory: GraphDirectory
    ) -> None:
        graph.honour_select = False  # as when the app lacks User.Read.All
        graph.add(upn="basic@contoso.com")
        user = graph_directory.find_by_upn("basic@contoso.com")
        assert user is not None
        assert user.account_enabled is False

    def test_404_is_none(self, graph_directory: GraphDirectory) -> None:
        assert graph_directory.find_by_upn("nobody@contoso.com") is None
        assert graph_directory.find_by_key(str(uuid.uuid4())) is None
        with pytest.raises(UserNotFound):
            enabled_user_by_key(graph_directory, "missing-key")

    def test_guest_and_dollar_upns_are_escaped(self, graph: FakeGraph, graph_directory: GraphDirectory) -> None:
        guest = graph.add(upn="ann_fabrikam.com#EXT#@contoso.onmicrosoft.com")
        dollar = graph.add(upn="$admin@contoso.com")
        assert graph_directory.find_by_upn(guest["userPrincipalName"]) is not None
        assert graph_directory.find_by_upn(dollar["userPrincipalName"]) is not None
        assert graph.seen[0].path == "/v1.0/users/ann_fabrikam.com%23ext%23@contoso.onmicrosoft.com"
        assert graph.seen[1].path == "/v1.0/users('%24admin@contoso.com')"

    @pytest.mark.parametrize(("retry_after", "expected"), [("7", 7), ("0", 1), ("2.5", 3)])
    def test_throttling_is_service_unavailable_with_retry_after(
        self, graph: FakeGraph, graph_directory: GraphDirectory, retry_after: str, expected: int
    ) -> None:
        graph.throttle_with = retry_after
        with pytest.raises(ServiceUnavailable) as caught:
            graph_directory.find_by_upn("ann@contoso.com")
        assert caught.value.retry_after == expected

    def test_an_unreachable_graph_is_service_unavailable(self, credential: StaticCredential) -> None:
        dead = FakeGraph()
        dead.stop()
        with pytest.raises(ServiceUnavailable):
            GraphDirectory(dead.base_url, credential, timeout=1).find_by_upn("ann@contoso.com")

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
        assert isinstance(runtime.directory, CachedDirectory)
        assert enabled_user_by_upn(runtime.directory, "rt@contoso.com").upn == "rt@contoso.com"
        assert enabled_user_by_upn(runtime.directory, "rt@contoso.com").upn == "rt@contoso.com"
        assert len(graph.seen) == 1, "the second lookup is a cache hit"


class RecordingDirectory:
    def __init__(self, *users: DirectoryUser) -> None:
        self.users = list(users)
        self.calls: list[str] = []

    def find_by_upn(self, upn: str) -> DirectoryUser | None:
        self.calls.append(f"upn:{upn}")
        return next((u for u in self.users if u.upn == upn), None)

    def find_by_key(self, user_key: str) -> DirectoryUser | None:
        self.calls.append(f"key:{user_key}")
        return next((u for u in self.users if u.user_key == user_key), None)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


ANN = DirectoryUser(user_key="k-ann", upn="ann@contoso.com", display_name="Ann", account_enabled=True)


class TestCachedDirectory:
    def test_serves_hits_until_the_ttl_passes(self) -> None:
        inner, clock = RecordingDirectory(ANN), FakeClock()
        cache = CachedDirectory(inner, ttl_seconds=300, clock=clock)
        assert cache.find_by_upn("ann@contoso.com") == ANN
        clock.now += 299.9
        assert cache.find_by_upn("ANN@contoso.com") == ANN
        assert cache.find_by_key("k-ann") == ANN, "a lookup by UPN answers the lookup by key"
        assert inner.calls == ["upn:ann@contoso.com"]
        clock.now += 0.1
        assert cache.find_by_key("k-ann") == ANN
        assert inner.calls == ["upn:ann@contoso.com", "key:k-ann"]

    def test_misses_are_not_cached(self) -> None:
        inner = RecordingDirectory()
        cache = CachedDirectory(inner, ttl_seconds=300, clock=FakeClock())
        assert cache.find_by_upn("ann@contoso.com") is None
        inner.users.append(ANN)
        assert cache.find_by_upn("ann@contoso.com") == ANN

    def test_zero_ttl_caches_nothing(self) -> None:
        inner = RecordingDirectory(ANN)
        cache = CachedDirectory(inner, ttl_seconds=0, clock=FakeClock())
        cache.find_by_upn("ann@contoso.com")
        cache.find_by_upn("ann@contoso.com")
        assert len(inner.calls) == 2

    def test_forget_drops_both_entries(self) -> None:
        inner = RecordingDirectory(ANN)
        cache = CachedDirectory(inner, ttl_seconds=300, clock=FakeClock())
        cache.find_by_upn("ann@contoso.com")
        cache.forget(ANN)
        cache.find_by_key("k-ann")
        assert inner.calls == ["upn:ann@contoso.com", "key:k-ann"]

    def test_the_oldest_entries_go_first_when_full(self) -> None:
        users = [DirectoryUser(f"k{i}", f"u{i}@contoso.com", None, True) for i in range(3)]
        inner, clock = RecordingDirectory(*users), FakeClock()
        cache = CachedDirectory(inner, ttl_seconds=300, clock=clock, max_entries=4)
        for user in users:
            cache.find_by_key(user.user_key)
        inner.calls.clear()
        cache.find_by_key("k2")
        cache.find_by_key("k0")
        assert inner.calls == ["key:k0"]


@pytest.fixture
def cosmos_directory(runtime: Runtime) -> CosmosDirectory:
    return CosmosDirectory(runtime.users_container)


def a_user(upn: str | None = None, *, key: str | None = None, enabled: bool = True) -> DirectoryUser:
    suffix = uuid.uuid4().hex[:8]
    return DirectoryUser(
        user_key=key or f"key-{suffix}",
        upn=upn or f"user-{suffix}@contoso.com",
        display_name="U",
        account_enabled=enabled,
    )


class TestCosmosDirectory:
    def test_put_then_find_by_either_with_one_read_each(
        self, runtime: Runtime, cosmos_directory: CosmosDirectory
    ) -> None:
        user = a_user()
        assert cosmos_directory.put(user) is None
        before = runtime.round_trips.count
        assert cosmos_directory.find_by_upn(user.upn.upper()) == user
        assert cosmos_directory.find_by_key(user.user_key) == user
        assert runtime.round_trips.count - before == 2

    def test_put_returns_the_previous_entry_and_renames_cleanly(self, cosmos_directory: CosmosDirectory) -> None:
        old = a_user()
        cosmos_directory.put(old)
        renamed = a_user(key=old.user_key, enabled=False)
        assert cosmos_directory.put(renamed) == old
        assert cosmos_directory.find_by_upn(old.upn) is None, "the old UPN entry is removed"
        assert cosmos_directory.find_by_key(old.user_key) == renamed
        assert cosmos_directory.find_by_upn(renamed.upn) == renamed
        other = a_user(old.upn)
        assert cosmos_directory.put(other) is None, "the released UPN is free for another key"

    def test_a_upn_of_another_key_is_refused(self, cosmos_directory: CosmosDirectory) -> None:
        holder = a_user()
        cosmos_directory.put(holder)
        intruder = a_user(holder.upn.upper())
        with pytest.raises(DuplicateUpn):
            cosmos_directory.put(intruder)
        assert cosmos_directory.find_by_key(intruder.user_key) is None
        assert cosmos_directory.find_by_upn(holder.upn) == holder

    def test_racing_keys_for_one_upn_one_wins(self, cosmos_directory: CosmosDirectory) -> None:
        upn = a_user().upn
        contenders = [a_user(upn) for _ in range(8)]
        outcomes: list[str] = []
        barrier = threading.Barrier(len(contenders))

        def put(user: DirectoryUser) -> None:
            barrier.wait()
            try:
                cosmos_directory.put(user)
                outcomes.append("ok")
            except DuplicateUpn:
                outcomes.append("duplicate")

        threads = [threading.Thread(target=put, args=(user,)) for user in contenders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["duplicate"] * 7 + ["ok"]
        winner = cosmos_directory.find_by_upn(upn)
        assert winner is not None
        assert [cosmos_directory.find_by_key(u.user_key) is not None for u in contenders].count(True) == 1
