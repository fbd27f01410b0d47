"""Unknown paths get 404 and known paths with the wrong method 405, both as problem+json."""

from __future__ import annotations

from tests.support.app import FunctionCaller, Response


def _fallback(app: FunctionCaller, method: str, path: str) -> Response:
    prefix, _, rest = path.lstrip("/").partition("/")
    return app.call(f"{prefix}_not_found", method=method, url=path, route_params={"rest": rest})


def test_an_unknown_path_is_404(app: FunctionCaller) -> None:
    response = _fallback(app, "GET", "/assignments/x/no/such/thing")
    assert response.status == 404
    assert response.json()["code"] == "notFound"
    assert response.content_type == "application/problem+json"


def test_a_known_path_with_the_wrong_method_is_405_with_allow(app: FunctionCaller) -> None:
    response = _fallback(app, "DELETE", "/assignments/abc")
    assert response.status == 405
    assert response.json()["code"] == "methodNotAllowed"
    assert "GET" in response.headers["allow"].split(", ")
    assert _fallback(app, "PUT", "/health").headers["allow"] == "GET"
    assert _fallback(app, "DELETE", "/assignments").headers["allow"] == "GET, POST"
    assert _fallback(app, "POST", "/users/u1").headers["allow"] == "GET, PUT"
