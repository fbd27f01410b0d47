"""Unknown paths get 404 and known paths with the wrong method 405, both as problem+json."""

from __future__ import annotations

from tests.support.app import FunctionCaller, Response


def _fallback(app: FunctionCaller, method: str, path: str) -> Response:
    return app.call("not_found_or_method_not_allowed", method=method, url=path, route_params={"path": path.lstrip("/")})


def test_an_unknown_path_is_404(app: FunctionCaller) -> None:
    response = _fallback(app, "GET", "/no/such/thing")
    assert response.status == 404
    assert response.json()["code"] == "notFound"
    assert response.content_type == "application/problem+json"


def test_a_known_path_with_the_wrong_method_is_405_with_allow(app: FunctionCaller) -> None:
    response = _fallback(app, "DELETE", "/assignments/abc")
    assert response.status == 405
    assert response.json()["code"] == "methodNotAllowed"
    assert "GET" in response.headers["allow"].split(", ")
    assert _fallback(app, "PUT", "/health").headers["allow"] == "GET"
