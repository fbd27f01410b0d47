"""Application Insights (core/telemetry.py): nothing without APPLICATIONINSIGHTS_CONNECTION_STRING; with it, the
worker's dependencies and `assignments` records reach the ingestion endpoint the connection string names, once,
under the host's operation, authenticated with the runtime's credential; a failure to configure only warns.

The end-to-end test points the connection string at an HTTPS server on 127.0.0.1 (the exporter sends a bearer
token only over TLS, so the server has a certificate of its own, trusted through REQUESTS_CA_BUNDLE) and runs the
function app in a process of its own (tests/fixtures/telemetry_probe.py): the distro's providers and
instrumentations are process-wide and cannot be undone. Statsbeat and the SDK's remote configuration, which
would call Microsoft's endpoints, are switched off there with their documented settings.
"""

from __future__ import annotations

import datetime
import gzip
import ipaddress
import json
import logging
import os
import ssl
import subprocess
import sys
import threading
import types
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from opentelemetry import trace

from core import telemetry
from core.settings import Settings
from localhost.app_settings import app_settings_of
from tests.support.api import ASSIGNEE
from tests.support.app import Tokens

ROOT = Path(__file__).parents[2]
PROBE_SECONDS = 180


@pytest.fixture
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process where configure was never called, and an `assignments` logger as the tests found it."""
    monkeypatch.setattr(telemetry, "_state", telemetry._State())
    monkeypatch.setenv("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", telemetry.RESOURCE_DETECTORS)  # restored after
    exported, distro = logging.getLogger(telemetry.EXPORTED_LOGGER), logging.getLogger(telemetry.DISTRO_LOGGER)
    propagate, handlers, distro_level = exported.propagate, list(exported.handlers), distro.level
    yield
    exported.propagate, exported.handlers = propagate, handlers
    distro.setLevel(distro_level)


@pytest.fixture
def fake_distro(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Stands in for the distro's module: records each configure call; the real one is never imported."""
    calls: list[dict[str, Any]] = []
    module = types.ModuleType("azure.monitor.opentelemetry")

    def configure_azure_monitor(**kwargs: Any) -> None:
        calls.append(kwargs)
        raise RuntimeError("the distro failed")

    module.configure_azure_monitor = configure_azure_monitor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "azure.monitor.opentelemetry", module)
    return calls


def test_without_a_connection_string_nothing_is_configured(
    fresh_state: None, fake_distro: list[dict[str, Any]]
) -> None:
    credentials: list[object] = []

    def credential() -> object:
        credentials.append(object())
        return credentials[-1]

    assert telemetry.configure(None, credential) is False
    assert telemetry.configure("", credential) is False
    assert fake_distro == []  # no exporter, no instrumentation
    assert credentials == []  # no identity asked for a token
    assert not telemetry.is_configured()
    assert logging.getLogger(telemetry.EXPORTED_LOGGER).propagate
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"  # the API's no-op default


def test_a_failure_to_configure_warns_once_and_leaves_logging_as_it_was(
    fresh_state: None, fake_distro: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    connection = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://127.0.0.1:9/"
    with caplog.at_level(logging.WARNING, logger="assignments.telemetry"):
        assert telemetry.configure(connection, object) is False
        assert telemetry.configure(connection, object) is False  # once per process: not tried again
    assert len(fake_distro) == 1
    (warning,) = [r for r in caplog.records if r.name == "assignments.telemetry"]
    assert warning.levelno == logging.WARNING
    assert "could not be configured" in warning.getMessage()
    assert warning.exc_info is not None
    assert logging.getLogger(telemetry.EXPORTED_LOGGER).propagate  # its records still go through the host


def test_the_distro_is_asked_for_dependencies_and_the_assignments_records_only(
    fresh_state: None, fake_distro: list[dict[str, Any]]
) -> None:
    credential = object()
    telemetry.configure("InstrumentationKey=x;IngestionEndpoint=https://127.0.0.1:9/", lambda: credential)
    (options,) = fake_distro
    assert options["credential"] is credential
    assert options["logger_name"] == "assignments"
    assert options["enable_live_metrics"] is False
    assert options["enable_performance_counters"] is False
    assert options["sampling_ratio"] == 1.0  # every dependency; the default rate limit kept parts of invocations
    enabled = {name for name, option in options["instrumentation_options"].items() if option["enabled"]}
    assert enabled == {"azure_sdk", "requests"}  # no server-side instrumentation: the host reports requests


def test_an_invocation_makes_the_hosts_trace_context_current_for_its_block() -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with telemetry.invocation(traceparent, "", "invocation-1") as trace_id:
        assert trace_id == "0af7651916cd43dd8448eb211c80319c"
        current = trace.get_current_span().get_span_context()
        assert (current.trace_id, current.span_id) == (int(trace_id, 16), 0xB7AD6B7169203331)
    assert not trace.get_current_span().get_span_context().is_valid
    for missing in ("", None, "not-a-traceparent", "00-00000000000000000000000000000000-b7ad6b7169203331-01"):
        with telemetry.invocation(missing) as trace_id:
            assert trace_id is None
            assert not trace.get_current_span().get_span_context().is_valid


def test_importing_the_app_configures_nothing() -> None:
    """The worker imports function_app before anything runs; even with the setting, nothing happens then."""
    code = (
        "import sys, function_app\n"
        "from opentelemetry import trace\n"
        "assert 'azure.monitor.opentelemetry' not in sys.modules\n"
        "assert type(trace.get_tracer_provider()).__name__ == 'ProxyTracerProvider'\n"
    )
    environment = {
        **_clean_environment(),
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x;IngestionEndpoint=https://127.0.0.1:9/",
    }
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, check=True, timeout=120)


class Ingestion:
    """An Application Insights ingestion endpoint on 127.0.0.1: takes every batch, keeps what it was sent."""

    def __init__(self, directory: Path) -> None:
        self.certificate = directory / "ingestion.pem"
        key = _self_signed(self.certificate)
        self.posts: list[tuple[str, dict[str, str], list[dict[str, Any]]]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                envelopes = json.loads(body)
                posts.append((self.path, dict(self.headers), envelopes))
                answer = json.dumps(
                    {"itemsReceived": len(envelopes), "itemsAccepted": len(envelopes), "errors": []}
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificate, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/"

    def envelopes(self) -> list[dict[str, Any]]:
        return [envelope for _, _, envelopes in self.posts for envelope in envelopes]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ingestion(tmp_path: Path) -> Iterator[Ingestion]:
    server = Ingestion(tmp_path)
    yield server
    server.stop()


def test_records_and_dependencies_reach_the_ingestion_endpoint_under_the_hosts_operation(
    ingestion: Ingestion, settings: Settings, tokens: Tokens, tmp_path: Path
) -> None:
    traces = {name: f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01" for name in ("http", "timer", "feed")}
    operation = {name: traceparent.split("-")[1] for name, traceparent in traces.items()}
    environment = {
        **_clean_environment(),
        **app_settings_of(settings),
        "APPLICATIONINSIGHTS_CONNECTION_STRING": (
            f"InstrumentationKey={uuid.uuid4()};IngestionEndpoint={ingestion.url};LiveEndpoint={ingestion.url}"
        ),
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
        "REQUESTS_CA_BUNDLE": str(ingestion.certificate),
        "NO_PROXY": "127.0.0.1,localhost",
        "TMPDIR": str(tmp_path),  # the exporter's retry storage
        "PROBE_TRACEPARENTS": json.dumps(traces),
        "PROBE_USER_TOKEN": tokens.user(ASSIGNEE),
    }
    probe = subprocess.run(
        [sys.executable, "-m", "tests.fixtures.telemetry_probe"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=PROBE_SECONDS,
    )
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    assert report["imported_at_import"] is False
    assert report["configured"] is True  # by the first call's get_runtime()
    assert report["flushed"] == [True, True]
    assert report["status"] == 404
    assert report["x_trace_id"] == operation["http"]  # the operation id Application Insights shows
    assert report["scopes"] == ["https://monitor.azure.com//.default"]
    # Nothing of the `assignments` loggers reached the root logger (the worker's relay to the host).
    assert not [name for name in report["relayed"] if name == "assignments" or name.startswith("assignments.")]

    assert ingestion.posts, "nothing was posted to the ingestion endpoint"
    for path, headers, _ in ingestion.posts:
        assert path.endswith("/v2.1/track")
        assert {k.lower(): v for k, v in headers.items()}["authorization"] == "Bearer telemetry-probe-token"
    envelopes = ingestion.envelopes()
    kinds = {envelope["data"]["baseType"] for envelope in envelopes}
    assert "RequestData" not in kinds  # the host reports requests; the worker never does
    messages = [envelope for envelope in envelopes if envelope["data"]["baseType"] == "MessageData"]
    dependencies = [envelope for envelope in envelopes if envelope["data"]["baseType"] == "RemoteDependencyData"]

    def messages_of(logger: str) -> list[dict[str, Any]]:
        return [m for m in messages if m["data"]["baseData"]["properties"].get("logger_name") == logger]

    (request_line,) = messages_of("assignments.http")
    properties = request_line["data"]["baseData"]["properties"]
    assert request_line["tags"]["ai.operation.id"] == operation["http"]
    assert request_line["tags"]["ai.operation.parentId"] == traces["http"].split("-")[2]
    assert properties["InvocationId"] == "invocation-http"
    assert properties["request.route"] == "GET /assignments/{id}"
    assert properties["request.status"] == "404"
    assert properties["request.traceId"] == operation["http"]
    assert properties["request.assignmentId"] == "telemetry-probe-missing"

    # The Cosmos DB read: the SDK's method, under the host's invocation, and its HTTP call under that, once.
    under_request = [d for d in dependencies if d["tags"]["ai.operation.id"] == operation["http"]]
    (read,) = [d for d in under_request if d["data"]["baseData"]["name"] == "ContainerProxy.read_item"]
    assert read["tags"]["ai.operation.parentId"] == traces["http"].split("-")[2]
    calls = [d for d in under_request if d["tags"]["ai.operation.parentId"] == read["data"]["baseData"]["id"]]
    assert [(c["data"]["baseData"]["type"], c["data"]["baseData"]["resultCode"]) for c in calls] == [("HTTP", "404")]
    assert calls[0]["data"]["baseData"]["data"].endswith("/docs/telemetry-probe-missing/")
    (jwks,) = [d for d in under_request if d["data"]["baseData"]["name"] == "GET /keys"]  # `requests`
    assert jwks["data"]["baseData"]["target"] == settings.auth_jwks_uri.split("/")[2]
    # Each HTTP call is reported once, by azure-core or by the `requests` instrumentation, never both: with the
    # distro's azure-core plugin, the Cosmos client's account read (made outside the SDK's traced methods, when
    # the runtime builds the client during this request) came twice.
    account_reads = [d for d in under_request if d["data"]["baseData"]["name"] == "GET /"]
    assert len(account_reads) == 1, account_reads

    for logger in ("assignments.sweep", "assignments.timer"):
        assert [m["tags"]["ai.operation.id"] for m in messages_of(logger)] == [operation["timer"]], logger
    assert any(d["tags"]["ai.operation.id"] == operation["timer"] for d in dependencies)  # the sweep's reads
    for logger in ("assignments.feed", "assignments.projection"):
        assert [m["tags"]["ai.operation.id"] for m in messages_of(logger)] == [operation["feed"]], logger
    assert not messages_of("outside.assignments")  # other loggers stay with the host's relay
    assert not [d for d in dependencies if "/v2.1/track" in str(d["data"]["baseData"].get("data", ""))]


def _clean_environment() -> dict[str, str]:
    """This process's environment without anything that would point the child at a real resource."""
    prefixes = ("APPLICATIONINSIGHTS_", "AZURE_", "OTEL_", "COSMOS", "AUTH_", "AzureWebJobs", "IDENTITY_", "MSI_")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    environment["PYTHONPATH"] = str(ROOT)
    return environment


def _self_signed(certificate: Path) -> Path:
    """A certificate for 127.0.0.1, its own issuer; writes it to `certificate` and returns its key's path."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = certificate.with_suffix(".key")
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return key_path
