"""The local host's HTTP front end, over a real socket: requests in, responses out, routing, errors, concurrency."""

import base64
import http.client
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from azure.storage.queue import QueueClient

from localhost.app_settings import BindingConfigError
from localhost.host import HOST_JSON, LocalHost
from localhost.host_json import read_host_json
from localhost.indexing import index_app
from tests.fixtures import http_probe_app
from tests.localhost.conftest import StartHost, probe_functions

HTTP_PROBE = "tests.fixtures.http_probe_app"


@pytest.fixture
def probe_host(start_host: StartHost) -> LocalHost:
    return start_host(probe_functions(HTTP_PROBE))


def test_the_request_reaches_the_function_whole(probe_host: LocalHost) -> None:
    response = requests.post(
        f"{probe_host.url}/probe/echo/a/b%20c?x=1&y=&x=2",
        data=b'{"hello": "world"}',
        headers={"Content-Type": "application/json", "X-Custom": "yes"},
        timeout=5,
    )
    assert response.status_code == 201
    assert response.headers["X-Probe"] == "echo"
    assert response.headers["Content-Type"] == "application/json"
    echoed = response.json()
    assert echoed["method"] == "POST"
    assert echoed["url"] == f"{probe_host.url}/probe/echo/a/b%20c?x=1&y=&x=2"
    assert echoed["headers"]["x-custom"] == "yes"
    assert echoed["headers"]["content-type"] == "application/json"
    assert echoed["params"] == {"x": "1,2", "y": ""}
    assert echoed["route_params"] == {"rest": "a/b c"}
    assert echoed["body"] == '{"hello": "world"}'


def test_a_chunked_body_is_read_whole(probe_host: LocalHost) -> None:
    response = requests.put(f"{probe_host.url}/probe/echo/x", data=iter([b"part one, ", b"part two"]), timeout=5)
    assert response.json()["body"] == "part one, part two"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/probe/items/new", "literal"),
        ("/PROBE/Items/NEW/", "literal"),
        ("/probe/items/7", "int:7"),
        ("/probe/items/abc", "alpha:abc"),
        ("/probe/items/abcdef", "any:abcdef"),
        ("/probe/items/a1", "any:a1"),
        ("/probe/pages", "page:-"),
        ("/probe/pages/2", "page:2"),
        ("/probe/sizes", "size:10"),
        ("/probe/sizes/3", "size:3"),
    ],
)
def test_routing_by_the_functions_own_templates(probe_host: LocalHost, path: str, body: str) -> None:
    response = requests.get(f"{probe_host.url}{path}", timeout=5)
    assert (response.status_code, response.text) == (200, body)
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_an_unknown_path_is_404_and_a_wrong_method_405(probe_host: LocalHost) -> None:
    missing = requests.get(f"{probe_host.url}/nothing/here", timeout=5)
    assert (missing.status_code, missing.content) == (404, b"")
    wrong = requests.get(f"{probe_host.url}/probe/only-post", timeout=5)
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "POST"
    assert requests.post(f"{probe_host.url}/probe/only-post", timeout=5).text == "posted"


def test_a_function_that_raises_answers_500_with_nothing_internal(
    probe_host: LocalHost, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = requests.get(f"{probe_host.url}/probe/boom", timeout=5)
    assert response.status_code == 500
    assert response.content == b""
    assert "secret" not in str(response.headers)
    assert any("boom failed" in r.getMessage() and r.exc_info for r in caplog.records)
    # The server survives it.
    assert requests.get(f"{probe_host.url}/probe/items/new", timeout=5).status_code == 200


def test_concurrent_requests_are_served_concurrently(probe_host: LocalHost) -> None:
    count = 8
    started = time.perf_counter()
    with ThreadPoolExecutor(count) as pool:
        statuses = list(
            pool.map(lambda _: requests.get(f"{probe_host.url}/probe/slow", timeout=10).status_code, range(count))
        )
    elapsed = time.perf_counter() - started
    assert statuses == [200] * count
    assert elapsed < 2 * http_probe_app.SLOW_SECONDS, f"{count} requests took {elapsed:.2f} s: served one by one?"


def test_one_connection_serves_many_requests(probe_host: LocalHost) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", probe_host.http.port, timeout=5)
    try:
        for _ in range(3):
            connection.request("GET", "/probe/items/new")
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b"literal")
    finally:
        connection.close()


def test_coroutine_functions_and_the_context_parameter(probe_host: LocalHost) -> None:
    assert requests.get(f"{probe_host.url}/probe/async", timeout=5).text == "async"
    name, invocation_id = requests.get(f"{probe_host.url}/probe/context", timeout=5).text.split(":")
    assert name == "with_context"
    assert len(invocation_id) == 36


def test_head_is_routed_by_the_declared_methods_like_any_other_method(start_host: StartHost) -> None:
    # GET-only functions refuse HEAD (405), as the host routes by the declared methods only.
    host = start_host(probe_functions(HTTP_PROBE, "echo"))
    assert requests.head(f"{host.url}/probe/echo/x", timeout=5).status_code == 405


def test_a_queue_output_lands_base64_encoded_in_azurite(start_host: StartHost, app_settings: dict[str, str]) -> None:
    host = start_host(probe_functions(HTTP_PROBE, "enqueue"))
    response = requests.post(f"{host.url}/probe/enqueue", data="hello queue ✓".encode(), timeout=5)
    assert response.status_code == 202
    queue = QueueClient.from_connection_string(app_settings["AzureWebJobsStorage"], app_settings["PROBE_QUEUE"])
    (message,) = list(queue.receive_messages())
    assert base64.b64decode(message.content).decode() == "hello queue ✓"


def test_the_route_prefix_comes_from_host_json_unless_given(start_host: StartHost) -> None:
    assert read_host_json(HOST_JSON).route_prefix == ""
    host = start_host(probe_functions(HTTP_PROBE, "literal_item"), route_prefix="api")
    assert requests.get(f"{host.url}/api/probe/items/new", timeout=5).text == "literal"
    assert requests.get(f"{host.url}/probe/items/new", timeout=5).status_code == 404


def test_a_disabled_function_is_not_served(start_host: StartHost, app_settings: dict[str, str]) -> None:
    settings = {**app_settings, "AzureWebJobs.literal_item.Disabled": "true"}
    host = start_host(probe_functions(HTTP_PROBE, "literal_item", "any_item"), settings=settings)
    assert requests.get(f"{host.url}/probe/items/new", timeout=5).text == "any:new"


def test_an_unresolved_setting_stops_the_host_naming_it(app_settings: dict[str, str]) -> None:
    settings = {k: v for k, v in app_settings.items() if k != "PROBE_QUEUE"}
    with pytest.raises(BindingConfigError, match=r"'%PROBE_QUEUE%' does not resolve.*set the app setting PROBE_QUEUE"):
        LocalHost(probe_functions(HTTP_PROBE, "enqueue"), settings, port=0)


def test_the_apps_own_catch_all_answers_404_and_405_as_problem_json(start_host: StartHost) -> None:
    host = start_host(index_app("function_app"))
    missing = requests.get(f"{host.url}/assignments/x/no/such/route", timeout=5)
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/problem+json"
    # Outside our prefixes no function answers: the host's own 404, as on Azure.
    assert requests.get(f"{host.url}/no/such/route", timeout=5).status_code == 404
    wrong = requests.delete(f"{host.url}/health", timeout=5)
    assert wrong.status_code == 405
    assert wrong.json()["code"] == "methodNotAllowed"
    assert "GET" in wrong.headers["Allow"]
    # An empty catch-all still matches: /assignments itself, with a method it lacks.
    collection = requests.delete(f"{host.url}/assignments", timeout=5)
    assert collection.status_code == 405
    assert collection.headers["Allow"] == "GET, POST"
    assert requests.get(f"{host.url}/health", timeout=5).json()["status"] == "healthy"
