"""Every token case, answered with its exact status by a registered function (GET /assignments/{id})."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from core.bootstrap import Runtime
from core.settings import Settings
from tests.support.api import ORIGINATOR, create, new_assignment, new_body, post_event
from tests.support.app import TEST_TENANT, FunctionCaller, InstallRuntime
from tests.support.tokens import JwksServer, SigningKey, TokenFactory, v1_issuer, v2_issuer


def forger(app: FunctionCaller) -> TokenFactory:
    """The session's token factory, which the tests' fixture builds with the forgeries a validator refuses."""
    factory = app.tokens.factory
    assert isinstance(factory, TokenFactory)
    return factory


OTHER_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
UNPUBLISHED_KEY = SigningKey()
NOW = int(time.time())

BAD_TOKENS: dict[str, Callable[[TokenFactory], str]] = {
    "expired": lambda f: f.user_token(upn=ORIGINATOR, exp=NOW - 3600, iat=NOW - 7200, nbf=NOW - 7200),
    "not yet valid": lambda f: f.user_token(upn=ORIGINATOR, nbf=NOW + 3600, iat=NOW + 3600),
    "wrong audience": lambda f: f.user_token(upn=ORIGINATOR, aud="api://someone-else"),
    "wrong issuer": lambda f: f.user_token(upn=ORIGINATOR, iss="https://evil.example.com/v2.0"),
    "another tenant": lambda f: f.user_token(upn=ORIGINATOR, tid=OTHER_TENANT, iss=v2_issuer(OTHER_TENANT)),
    "tid/iss mismatch": lambda f: f.user_token(upn=ORIGINATOR, iss=v2_issuer(OTHER_TENANT)),
    "v1 tid/iss mismatch": lambda f: f.user_token(upn=ORIGINATOR, version=1, iss=v1_issuer(OTHER_TENANT)),
    "alg none": lambda f: f.alg_none_token(upn=ORIGINATOR),
    "HS256 signed with the public key": lambda f: f.hs256_public_key_token(upn=ORIGINATOR),
    "unknown kid": lambda f: f.user_token(upn=ORIGINATOR, key=UNPUBLISHED_KEY),
    "tampered payload": lambda f: _tamper(f.user_token(upn=ORIGINATOR)),
    "malformed header": lambda f: "not-base64!." + f.user_token(upn=ORIGINATOR).split(".", 1)[1],
    "garbage": lambda f: "garbage",
}


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    return ".".join((header, flipped, signature))


def _get(app: FunctionCaller, token: str, assignment_id: str = "any") -> int:
    return app.call(
        "get_assignment", url=f"/assignments/{assignment_id}", token=token, route_params={"id": assignment_id}
    ).status


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_bad_tokens_get_401(app: FunctionCaller, case: str) -> None:
    response = app.call(
        "get_assignment",
        url="/assignments/x",
        token=BAD_TOKENS[case](forger(app)),
        route_params={"id": "x"},
    )
    assert response.status == 401, (case, response.body)
    assert response.json()["code"] == "unauthenticated"
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize(
    "make_token",
    [
        lambda f: f.user_token(upn=ORIGINATOR, scopes="User.Read"),
        lambda f: f.user_token(upn=ORIGINATOR, scopes=None),
        lambda f: f.app_token(app_id="no-role", roles=()),
        lambda f: f.app_token(app_id="reader", roles=("Assignments.Read",)),
    ],
    ids=["user without scope", "user without scp", "app without role", "app with another role"],
)
def test_missing_scope_or_role_gets_403(app: FunctionCaller, make_token: Callable[[TokenFactory], str]) -> None:
    response = app.call("get_assignment", url="/assignments/x", token=make_token(forger(app)), route_params={"id": "x"})
    assert response.status == 403
    assert response.json()["code"] == "forbidden"


@pytest.mark.parametrize("version", [1, 2])
def test_valid_tokens_get_200(app: FunctionCaller, version: int) -> None:
    created = create(app, new_body(), token=app.tokens.user(ORIGINATOR, version=version))
    assert created.status == 201
    assert _get(app, app.tokens.user(ORIGINATOR, version=version), created.json()["id"]) == 200


def test_one_jwks_fetch_across_100_requests(
    own_runtime: InstallRuntime, settings: Settings, jwks_server: JwksServer
) -> None:
    app = own_runtime(Runtime(settings))
    token = app.tokens.user(ORIGINATOR)
    before = jwks_server.fetch_count
    statuses = {_get(app, token, "missing-id") for _ in range(100)}
    assert statuses == {404}
    assert jwks_server.fetch_count - before == 1


def test_unknown_kids_fetch_at_most_once_per_window(
    own_runtime: InstallRuntime, settings: Settings, jwks_server: JwksServer
) -> None:
    app = own_runtime(Runtime(settings, jwks_min_refetch_interval=60))
    assert _get(app, app.tokens.user(ORIGINATOR), "missing-id") == 404
    before = jwks_server.fetch_count
    for _ in range(20):
        assert _get(app, app.tokens.user(ORIGINATOR, key=SigningKey())) == 401
    assert jwks_server.fetch_count - before <= 1


def test_a_rotated_key_is_accepted_without_restart(
    own_runtime: InstallRuntime, settings: Settings, jwks_server: JwksServer
) -> None:
    app = own_runtime(Runtime(settings, jwks_min_refetch_interval=0.2))
    assert _get(app, app.tokens.user(ORIGINATOR), "missing-id") == 404
    new_key = SigningKey()
    time.sleep(0.3)
    jwks_server.publish(new_key)
    assert _get(app, app.tokens.user(ORIGINATOR, key=new_key), "missing-id") == 404


@pytest.mark.parametrize(
    ("scopes", "roles", "status"),
    [
        ("Assignments.ReadWrite Assignments.Admin", (), 403),
        ("Assignments.Admin", (), 403),
        ("Assignments.ReadWrite", ("Assignments.Admin",), 201),
    ],
    ids=["admin scope beside ReadWrite", "admin scope alone", "admin role"],
)
def test_only_the_admin_role_may_put_users(
    app: FunctionCaller, scopes: str, roles: tuple[str, ...], status: int
) -> None:
    user_key = str(uuid.uuid4())
    response = app.call(
        "put_user",
        method="PUT",
        url=f"/users/{user_key}",
        token=app.tokens.user("root@contoso.com", scopes=scopes, roles=roles),
        json_body={"upn": f"user-{user_key[:8]}@contoso.com"},
        route_params={"userKey": user_key},
    )
    assert response.status == status, response.body
    if status == 403:
        assert response.json()["code"] == "forbidden"
        assert app.runtime.directory.find_by_key(TEST_TENANT, user_key) is None


@pytest.mark.parametrize(
    "make_token",
    [
        lambda f: f.user_token(upn=ORIGINATOR, scopes=None, idtyp=None, sub="pairwise", roles=["Assignments.Report"]),
        lambda f: f.app_token(app_id="reporter", roles=["Assignments.Report"], idtyp=None, sub="not-the-oid"),
    ],
    ids=["user-shaped without scp or idtyp", "app-shaped whose sub is not its oid"],
)
def test_a_token_neither_user_nor_app_may_not_report(
    app: FunctionCaller, make_token: Callable[[TokenFactory], str]
) -> None:
    created = new_assignment(app, completionCriteria="manual")
    response = post_event(app, created["id"], "visited", token=make_token(forger(app)))
    assert response.status == 401, response.body
    assert response.json()["code"] == "unauthenticated"
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_an_app_token_without_idtyp_may_report(app: FunctionCaller) -> None:
    created = new_assignment(app, completionCriteria="manual")
    token = app.tokens.factory.app_token(app_id="v1-reporter", roles=["Assignments.Report"], idtyp=None, version=1)
    response = post_event(app, created["id"], "visited", token=token)
    assert response.status == 200, response.body
    assert response.json()["updatedBy"] == "app:v1-reporter"
