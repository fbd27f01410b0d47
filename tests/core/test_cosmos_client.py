"""The Cosmos client reads the environment's proxy and CA settings once, when it is built, not on every
request, and still honours them: requests go through a configured proxy, hosts NO_PROXY names go direct,
and the CA bundle is used wherever certificates are verified. An account that stops answering fails each
call within a few seconds, as 503."""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from azure.cosmos import CosmosClient, PartitionKey

from core.bootstrap import Runtime
from core.cosmos.client import (
    READ_TIMEOUT_SECONDS,
    EnvironmentOnceSession,
    make_cosmos_client,
    translate_cosmos_errors,
)
from core.errors import ServiceUnavailable
from tests.support.local_http import LocalHttpServer
from tests.support.services import start_cosmos

ENVIRONMENT = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
_HOP_BY_HOP = {"connection", "proxy-connection", "keep-alive", "transfer-encoding", "host", "content-length"}


class ForwardingProxy(LocalHttpServer):
    """A forward proxy on 127.0.0.1 for plain HTTP: relays each request to its absolute URL and records its
    request line. It refuses tunnels (CONNECT, for HTTPS) after recording them."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def relay(self) -> None:
                proxy.seen.append(f"{self.command} {self.path}")
                target = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=10)
                try:
                    path = target.path + (f"?{target.query}" if target.query else "")
                    upstream.request(self.command, path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    payload = answer.read()
                finally:
                    upstream.close()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self.relay()

            def do_POST(self) -> None:
                self.relay()

            def do_PUT(self) -> None:
                self.relay()

            def do_DELETE(self) -> None:
                self.relay()

            def do_CONNECT(self) -> None:
                proxy.seen.append(f"CONNECT {self.path}")
                self.send_error(502, "no tunnels here")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler)
        self.url = f"http://127.0.0.1:{self.port}"


@pytest.fixture
def proxy() -> Iterator[ForwardingProxy]:
    with ForwardingProxy() as server:
        yield server


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy or CA variable, in either case, whatever the machine sets."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert urllib.request.getproxies() == {}
    return monkeypatch


def _client_built_with(runtime: Runtime, environment: pytest.MonkeyPatch, **variables: str) -> CosmosClient:
    """A client of the runtime's account, built while these environment variables are set."""
    for name, value in variables.items():
        environment.setenv(name, value)
    return make_cosmos_client(runtime.settings.cosmos_endpoint, runtime.settings.cosmos_key)


def _container_read(runtime: Runtime, client: Any) -> None:
    runtime.assignments_container  # noqa: B018 - provisions the database and containers, once
    names = runtime.container_names
    client.get_database_client(names.database).get_container_client(names.assignments).read()


def test_a_configured_proxy_carries_every_request_even_after_the_environment_changes(
    runtime: Runtime, proxy: ForwardingProxy, clean_environment: pytest.MonkeyPatch
) -> None:
    client = _client_built_with(runtime, clean_environment, HTTP_PROXY=proxy.url)
    endpoint = runtime.settings.cosmos_endpoint.rstrip("/")
    assert f"GET {endpoint}/" in proxy.seen  # the constructor reads the account, through the proxy
    # Read once, at build: a later change of the environment changes nothing for this client.
    clean_environment.delenv("HTTP_PROXY")
    _container_read(runtime, client)
    _container_read(runtime, client)
    container = f"GET {endpoint}/dbs/{runtime.container_names.database}/colls/{runtime.container_names.assignments}/"
    assert proxy.seen.count(container) == 2
    assert all(line.startswith(f"GET {endpoint}/") for line in proxy.seen)


def test_a_configured_https_proxy_is_asked_for_the_tunnel(
    proxy: ForwardingProxy, clean_environment: pytest.MonkeyPatch
) -> None:
    clean_environment.setenv("HTTPS_PROXY", proxy.url)
    started = time.monotonic()
    # The proxy refuses the tunnel, so the account is unreachable; what matters is whom the client asked.
    with pytest.raises(ServiceUnavailable):
        make_cosmos_client("https://assignments-test.documents.azure.com:443/", "a2V5", counter=None)
    assert proxy.seen
    assert set(proxy.seen) == {"CONNECT assignments-test.documents.azure.com:443"}
    assert time.monotonic() - started < 30


def test_hosts_no_proxy_names_go_direct(
    runtime: Runtime, proxy: ForwardingProxy, clean_environment: pytest.MonkeyPatch
) -> None:
    client = _client_built_with(runtime, clean_environment, HTTP_PROXY=proxy.url, NO_PROXY="localhost,127.0.0.1")
    _container_read(runtime, client)
    assert proxy.seen == []


def test_requests_read_nothing_from_the_environment(
    runtime: Runtime, proxy: ForwardingProxy, clean_environment: pytest.MonkeyPatch
) -> None:
    client = _client_built_with(
        runtime, clean_environment, HTTP_PROXY=proxy.url, REQUESTS_CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt"
    )

    def environment_read(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the environment was read on the request path")

    for module, name in (
        (requests.sessions, "get_environ_proxies"),
        (requests.sessions, "get_netrc_auth"),
        (requests.utils, "should_bypass_proxies"),
        (urllib.request, "getproxies"),
        (urllib.request, "getproxies_environment"),
    ):
        clean_environment.setattr(module, name, environment_read)
    _container_read(runtime, client)
    _container_read(runtime, client)
    names = runtime.container_names
    assert sum(line.endswith(f"/dbs/{names.database}/colls/{names.assignments}/") for line in proxy.seen) == 2


def test_the_ca_bundle_is_read_once_and_applies_where_certificates_are_verified(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    url = "https://assignments-test.documents.azure.com:443/dbs"
    assert EnvironmentOnceSession().merge_environment_settings(url, {}, None, True, None)["verify"] is True
    clean_environment.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/curl.pem")
    clean_environment.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/requests.pem")
    session = EnvironmentOnceSession()
    clean_environment.delenv("REQUESTS_CA_BUNDLE")
    clean_environment.delenv("CURL_CA_BUNDLE")
    # As requests takes them: REQUESTS_CA_BUNDLE first, for a request that verifies; `verify=False` or a
    # bundle of the request's own still win.
    assert session.merge_environment_settings(url, {}, None, True, None)["verify"] == "/etc/ssl/certs/requests.pem"
    assert session.merge_environment_settings(url, {}, None, False, None)["verify"] is False
    assert session.merge_environment_settings(url, {}, None, "/own.pem", None)["verify"] == "/own.pem"


def test_a_cosmos_that_stops_answering_fails_each_call_within_its_bound_as_service_unavailable() -> None:
    """A frozen account (SIGSTOP: connections are accepted, nothing is answered) is an outage the caller hears
    of as 503 within seconds: a write after one read timeout (it is never resent: it may yet be applied), a
    read or a query after two (it is resent once). The SDK's own default would hold each for 65 s, and resend
    reads twice."""
    cosmos = start_cosmos()
    outcomes: dict[str, tuple[float, BaseException | None]] = {}
    try:
        client = make_cosmos_client(cosmos.endpoint, cosmos.key)
        database = client.create_database_if_not_exists("frozen")
        container = database.create_container_if_not_exists("items", partition_key=PartitionKey(path="/pk"))
        container.upsert_item({"id": "a", "pk": "a"})
        calls: dict[str, Callable[[], object]] = {
            "read": lambda: container.read_item("a", partition_key="a"),
            "query": lambda: list(container.query_items("SELECT * FROM c", partition_key="a")),
            "write": lambda: container.upsert_item({"id": "b", "pk": "a"}),
        }

        def run(name: str) -> None:
            started = time.monotonic()
            try:
                with translate_cosmos_errors(container="items"):
                    calls[name]()
            except BaseException as error:
                outcomes[name] = (time.monotonic() - started, error)
            else:
                outcomes[name] = (time.monotonic() - started, None)

        os.kill(cosmos.pid, signal.SIGSTOP)
        threads = [threading.Thread(target=run, args=(name,), daemon=True) for name in calls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=2 * READ_TIMEOUT_SECONDS + 5)
    finally:
        os.kill(cosmos.pid, signal.SIGCONT)
        cosmos.stop()
    bounds = {"read": 2 * READ_TIMEOUT_SECONDS, "query": 2 * READ_TIMEOUT_SECONDS, "write": READ_TIMEOUT_SECONDS}
    for name, bound in bounds.items():
        assert name in outcomes, f"{name} was still waiting after {2 * READ_TIMEOUT_SECONDS + 5} s"
        elapsed, error = outcomes[name]
        assert isinstance(error, ServiceUnavailable), (name, error)
        assert error.retry_after >= 1
        assert bound - 0.5 <= elapsed <= bound + 2, (name, elapsed)
