"""GET /health asks Cosmos and Storage for real."""

from __future__ import annotations

import socket

from core.bootstrap import Runtime
from core.settings import Settings
from localhost.services import azurite_connection_string
from tests.support.app import FunctionCaller, InstallRuntime


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _health(app: FunctionCaller) -> tuple[int, str, str, str]:
    """GET /health's status code, overall status, and the statuses of Cosmos and Storage."""
    response = app.call("health", url="/health")
    report = response.json()
    dependencies = report["dependencies"]
    return response.status, report["status"], dependencies["cosmos"]["status"], dependencies["storage"]["status"]


def test_healthy_when_both_services_answer(app: FunctionCaller) -> None:
    assert _health(app) == (200, "healthy", "up", "up")


def test_needs_no_token(app: FunctionCaller) -> None:
    assert app.call("health", url="/health").status == 200


def test_503_when_azurite_is_dead(own_runtime: InstallRuntime, settings: Settings) -> None:
    port = _dead_port()
    dead_storage = azurite_connection_string(port, port, port)
    app = own_runtime(Runtime(settings.model_copy(update={"azure_web_jobs_storage": dead_storage})))
    assert _health(app) == (503, "unhealthy", "up", "down")


def test_503_when_cosmos_is_dead(own_runtime: InstallRuntime, settings: Settings) -> None:
    app = own_runtime(Runtime(settings.model_copy(update={"cosmos_endpoint": f"http://127.0.0.1:{_dead_port()}/"})))
    assert _health(app) == (503, "unhealthy", "down", "up")


def test_requests_get_503_with_retry_after_while_cosmos_is_unreachable(
    own_runtime: InstallRuntime, settings: Settings
) -> None:
    app = own_runtime(Runtime(settings.model_copy(update={"cosmos_endpoint": f"http://127.0.0.1:{_dead_port()}/"})))
    response = app.call(
        "get_assignment",
        url="/assignments/x",
        token=app.tokens.user("olivia@contoso.com"),
        route_params={"id": "x"},
    )
    assert response.status == 503
    assert response.json()["code"] == "serviceUnavailable"
    assert int(response.headers["retry-after"]) >= 1
