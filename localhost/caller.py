"""Call `function_app.py`'s registered functions the way the host would, with real signed tokens: what the
tests and the benches drive the app with, in-process."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func

from core.bootstrap import Runtime
from localhost.dev_signer import TokenFactory
from localhost.indexing import IndexedFunction, index_app

TEST_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
TEST_AUDIENCE = "6e74172b-be56-4843-9ff4-e66a39bb12e3"


@dataclass
class Tokens:
    """Convenience tokens for the usual callers."""

    factory: TokenFactory

    def user(self, upn: str, *, oid: str | None = None, **claims: Any) -> str:
        return self.factory.user_token(oid=oid or f"oid-{upn}", upn=upn, **claims)

    def admin_app(self, app_id: str = "admin-app", **claims: Any) -> str:
        return self.factory.app_token(app_id=app_id, roles=("Assignments.Admin",), **claims)

    def reporter_app(self, app_id: str = "reporter-app", **claims: Any) -> str:
        return self.factory.app_token(app_id=app_id, roles=("Assignments.Report",), **claims)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


@dataclass
class FunctionCaller:
    runtime: Runtime
    tokens: Tokens
    functions: dict[str, IndexedFunction] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.functions = {f.name: f for f in index_app()}

    def call(
        self,
        function_name: str,
        *,
        method: str = "GET",
        url: str = "/",
        token: str | None = None,
        json_body: Any = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        route_params: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Response:
        all_headers = {k.lower(): v for k, v in (headers or {}).items()}
        if token is not None:
            all_headers["authorization"] = f"Bearer {token}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            all_headers.setdefault("content-type", "application/json")
        request = func.HttpRequest(
            method,
            f"http://localhost{url}",
            headers=all_headers,
            params=params or {},
            route_params=route_params or {},
            body=body or b"",
        )
        response = self.functions[function_name].call(req=request)
        assert isinstance(response, func.HttpResponse)
        response_headers = {k.lower(): v for k, v in response.headers.items()}
        # The host derives Content-Type from the response's mimetype, as does the local host.
        if response.mimetype and "content-type" not in response_headers:
            response_headers["content-type"] = response.mimetype
        return Response(status=response.status_code, headers=response_headers, body=response.get_body())

    def round_trips_of(self, action: Any) -> tuple[Any, int]:
        """Run `action()` and count the Cosmos HTTP round trips it made."""
        before = self.runtime.round_trips.count
        result = action()
        return result, self.runtime.round_trips.count - before
