"""CORS over a real socket, as `func start` does it from `Host.CORS` / `Host.CORSCredentials`: the host answers
preflights itself and adds `Access-Control-Allow-Origin` for allowed origins only (see localhost/cors.py for the
behaviour of Core Tools and ASP.NET Core's CORS middleware that this follows)."""

import http.client
import json
import logging
from pathlib import Path

import pytest
import requests

from localhost.cors import CorsConfigError, CorsPolicy, HostSection, read_host_section
from localhost.host import LocalHost
from localhost.run import StartupError, cors_policy
from tests.localhost.conftest import StartHost, probe_functions

HTTP_PROBE = "tests.fixtures.http_probe_app"
APP = "http://localhost:3000"
OTHER_APP = "https://portal.contoso.com"
CORS_HEADERS = ("access-control-allow-origin", "access-control-allow-credentials", "access-control-allow-methods")


def host_with(start_host: StartHost, cors: str, *, credentials: bool = False) -> LocalHost:
    return start_host(probe_functions(HTTP_PROBE), cors=CorsPolicy.from_setting(cors, credentials=credentials))


def preflight(host: LocalHost, path: str, origin: str, **headers: str) -> requests.Response:
    headers = {"Origin": origin, "Access-Control-Request-Method": "POST", **headers}
    return requests.options(f"{host.url}{path}", headers=headers, timeout=5)


def cors_headers_of(response: requests.Response) -> dict[str, str]:
    return {name.lower(): value for name, value in response.headers.items() if name.lower().startswith("access-")}


def test_a_preflight_from_an_allowed_origin_is_answered_by_the_host(start_host: StartHost) -> None:
    host = host_with(start_host, APP)
    response = preflight(host, "/probe/echo/x", APP, **{"Access-Control-Request-Headers": "Authorization, X-Trace"})
    # 204 with no body: no function ran (echo would answer 201 with JSON; it does not even take OPTIONS).
    assert (response.status_code, response.content) == (204, b"")
    assert cors_headers_of(response) == {
        "access-control-allow-origin": APP,
        "access-control-allow-methods": "POST",
        "access-control-allow-headers": "Authorization,X-Trace",
    }
    assert "Vary" not in response.headers  # one origin configured: the answer does not depend on it
    # Whatever the path: the host answers before routing.
    assert preflight(host, "/no/function/here", APP).status_code == 204


def test_a_preflight_from_another_origin_gets_204_without_cors_headers(start_host: StartHost) -> None:
    host = host_with(start_host, APP)
    response = preflight(host, "/probe/echo/x", "https://evil.example")
    assert (response.status_code, response.content) == (204, b"")
    assert cors_headers_of(response) == {}


def test_responses_carry_allow_origin_for_allowed_origins_only(start_host: StartHost) -> None:
    host = host_with(start_host, f"{APP},{OTHER_APP}")
    allowed = requests.get(f"{host.url}/probe/items/new", headers={"Origin": OTHER_APP}, timeout=5)
    assert (allowed.status_code, allowed.text) == (200, "literal")
    assert cors_headers_of(allowed) == {"access-control-allow-origin": OTHER_APP}
    assert allowed.headers["Vary"] == "Origin"  # two origins: caches must key on it

    other = requests.get(f"{host.url}/probe/items/new", headers={"Origin": "https://evil.example"}, timeout=5)
    assert (other.status_code, other.text) == (200, "literal")  # served, but the browser will not let it be read
    assert cors_headers_of(other) == {}
    assert "Vary" not in other.headers

    without_origin = requests.get(f"{host.url}/probe/items/new", timeout=5)
    assert cors_headers_of(without_origin) == {}


def test_errors_of_the_host_and_of_functions_carry_them_too(start_host: StartHost) -> None:
    host = host_with(start_host, APP)
    for method, path, status in (
        ("GET", "/nothing/here", 404),
        ("GET", "/probe/only-post", 405),
        ("GET", "/probe/boom", 500),
    ):
        response = requests.request(method, f"{host.url}{path}", headers={"Origin": APP}, timeout=5)
        assert response.status_code == status
        assert response.headers["Access-Control-Allow-Origin"] == APP


def test_an_options_request_that_is_not_a_preflight_is_routed(start_host: StartHost) -> None:
    host = host_with(start_host, APP)
    response = requests.options(f"{host.url}/probe/only-post", headers={"Origin": APP}, timeout=5)
    assert response.status_code == 405  # no Access-Control-Request-Method: an ordinary request, for the functions
    assert response.headers["Access-Control-Allow-Origin"] == APP


def test_star_allows_any_origin(start_host: StartHost) -> None:
    host = host_with(start_host, "*")
    response = requests.get(f"{host.url}/probe/items/new", headers={"Origin": "https://anyone.example"}, timeout=5)
    assert cors_headers_of(response) == {"access-control-allow-origin": "*"}
    assert cors_headers_of(preflight(host, "/probe/echo/x", "https://anyone.example")) == {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "POST",
    }


def test_credentials_echo_the_origin_and_allow_credentials(start_host: StartHost) -> None:
    host = host_with(start_host, APP, credentials=True)
    response = requests.get(f"{host.url}/probe/items/new", headers={"Origin": APP}, timeout=5)
    assert cors_headers_of(response) == {
        "access-control-allow-origin": APP,
        "access-control-allow-credentials": "true",
    }
    assert cors_headers_of(preflight(host, "/probe/echo/x", APP))["access-control-allow-credentials"] == "true"


def test_without_cors_the_host_adds_nothing_and_routes_preflights(start_host: StartHost) -> None:
    host = start_host(probe_functions(HTTP_PROBE))
    response = preflight(host, "/probe/only-post", APP)
    assert response.status_code == 405
    assert cors_headers_of(response) == {}
    assert CorsPolicy.from_setting("") is None
    assert CorsPolicy.from_setting(",,") is None


def test_a_function_answer_to_an_allowed_origin_is_given_the_hosts_allow_origin(start_host: StartHost) -> None:
    # One raw connection, to see the headers exactly as sent: one Access-Control-Allow-Origin, no duplicates.
    host = host_with(start_host, APP)
    connection = http.client.HTTPConnection("127.0.0.1", host.http.port, timeout=5)
    try:
        connection.request("POST", "/probe/echo/x", body=b"{}", headers={"Origin": APP})
        response = connection.getresponse()
        assert response.status == 201
        assert response.headers.get_all("Access-Control-Allow-Origin") == [APP]
        assert response.getheader("X-Probe") == "echo"  # the function's own headers are kept
        assert json.loads(response.read())["headers"]["origin"] == APP  # and it saw the request whole
    finally:
        connection.close()


def test_configured_origins_are_lower_cased_and_compared_exactly_as_func_start_does(
    start_host: StartHost, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        host = host_with(start_host, f"HTTP://LOCALHOST:3000, {OTHER_APP},{OTHER_APP}/")
    assert (
        requests.get(f"{host.url}/probe/items/new", headers={"Origin": APP}, timeout=5).headers.get(
            "Access-Control-Allow-Origin"
        )
        == APP
    )
    # func start splits on commas and trims nothing: " https://…" and "https://…/" never match a browser's Origin.
    other = requests.get(f"{host.url}/probe/items/new", headers={"Origin": OTHER_APP}, timeout=5)
    assert "Access-Control-Allow-Origin" not in other.headers
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert f"' {OTHER_APP}'" in warned
    assert f"'{OTHER_APP}/'" in warned


def test_star_with_credentials_is_refused_as_func_start_refuses_it() -> None:
    with pytest.raises(CorsConfigError, match="wildcard origin with credentials"):
        CorsPolicy.from_setting("*", credentials=True)


def write_local_settings(path: Path, host: object) -> Path:
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {}, "Host": host}))
    return path


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ({"LocalHttpPort": 7071}, HostSection()),
        ({"CORS": f"{APP},{OTHER_APP}", "CORSCredentials": True}, HostSection(f"{APP},{OTHER_APP}", True)),
        ({"cors": "*", "corsCredentials": "false"}, HostSection("*", False)),  # names match case-insensitively
        ({"CORS": APP, "CORSCredentials": "True"}, HostSection(APP, True)),
        ({"CORS": APP, "CORSCredentials": 1}, HostSection(APP, True)),
    ],
)
def test_the_host_section_of_local_settings_json(tmp_path: Path, host: object, expected: HostSection) -> None:
    assert read_host_section(write_local_settings(tmp_path / "local.settings.json", host)) == expected


def test_without_local_settings_json_cors_is_off(tmp_path: Path) -> None:
    assert read_host_section(tmp_path / "local.settings.json") == HostSection()
    assert cors_policy(None, None, tmp_path / "local.settings.json") is None


@pytest.mark.parametrize("host", [{"CORS": ["http://a.example"]}, {"CORS": APP, "CORSCredentials": "yes"}, []])
def test_a_malformed_host_section_stops_the_run_command(tmp_path: Path, host: object) -> None:
    with pytest.raises(StartupError, match=r"local\.settings\.json: Host"):
        cors_policy(None, None, write_local_settings(tmp_path / "local.settings.json", host))


def test_the_command_line_overrides_the_file_as_func_start_does(tmp_path: Path) -> None:
    settings = write_local_settings(tmp_path / "local.settings.json", {"CORS": APP, "CORSCredentials": True})
    assert cors_policy(None, None, settings) == CorsPolicy((APP,), credentials=True)
    assert cors_policy(OTHER_APP, None, settings) == CorsPolicy((OTHER_APP,), credentials=True)
    with pytest.raises(StartupError, match="wildcard"):
        cors_policy("*", None, settings)
