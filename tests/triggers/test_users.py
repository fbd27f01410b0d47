"""PUT /users/{userKey}: admins write the Cosmos user directory, through the registered function."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from core.directory import enabled_user_by_upn
from tests.support.api import (
    add_user,
    assert_problem,
    new_upn,
    put_user,
)
from tests.support.app import TEST_TENANT, FunctionCaller


class TestPutUser:
    def test_creates_then_replaces(self, app: FunctionCaller) -> None:
        user_key, upn = str(uuid.uuid4()), new_upn()
        created = put_user(app, user_key, {"upn": upn.upper(), "displayName": "Ann", "accountEnabled": True})
        assert created.status == 201
        assert created.headers["location"] == f"/users/{user_key}"
        assert created.json() == {"userKey": user_key, "upn": upn, "displayName": "Ann", "accountEnabled": True}
        replaced = put_user(app, user_key, {"upn": upn, "displayName": "Ann Lee", "accountEnabled": False})
        assert replaced.status == 200
        assert "location" not in replaced.headers
        assert replaced.json() == {"userKey": user_key, "upn": upn, "displayName": "Ann Lee", "accountEnabled": False}

    def test_display_name_and_account_enabled_have_defaults(self, app: FunctionCaller) -> None:
        response = put_user(app, str(uuid.uuid4()), {"upn": new_upn()})
        assert response.status == 201
        assert response.json()["displayName"] is None
        assert response.json()["accountEnabled"] is True

    def test_keys_are_opaque(self, app: FunctionCaller) -> None:
        user_key = f"not-a-guid:{uuid.uuid4().hex}"
        assert put_user(app, user_key, {"upn": new_upn()}).status == 201
        assert app.runtime.directory.find_by_key(TEST_TENANT, user_key) is not None

    def test_a_delegated_admin_may_put(self, app: FunctionCaller) -> None:
        token = app.tokens.user("root@contoso.com", roles=["Assignments.Admin"])
        assert put_user(app, str(uuid.uuid4()), {"upn": new_upn()}, token=token).status == 201

    def test_a_upn_of_another_key_is_409(self, app: FunctionCaller) -> None:
        _, upn = add_user(app)
        other_key = str(uuid.uuid4())
        assert_problem(put_user(app, other_key, {"upn": upn.upper()}), 409, "duplicateUpn")
        assert app.runtime.directory.find_by_key(TEST_TENANT, other_key) is None

    def test_renaming_frees_the_old_upn(self, app: FunctionCaller) -> None:
        user_key, old_upn = add_user(app)
        new = new_upn()
        assert put_user(app, user_key, {"upn": new}).status == 200
        assert app.runtime.directory.find_by_upn(TEST_TENANT, old_upn) is None
        assert put_user(app, str(uuid.uuid4()), {"upn": old_upn}).status == 201

    def test_a_change_is_seen_at_once_by_this_process_despite_the_cache(self, app: FunctionCaller) -> None:
        user_key, upn = add_user(app)
        found = enabled_user_by_upn(app.runtime.directory, TEST_TENANT, upn)  # now cached
        assert found is not None
        assert found.user_key == user_key
        assert put_user(app, user_key, {"upn": upn, "accountEnabled": False}).status == 200
        assert enabled_user_by_upn(app.runtime.directory, TEST_TENANT, upn) is None


class TestRefusals:
    def test_no_token_is_401(self, app: FunctionCaller) -> None:
        response = app.call(
            "put_user", method="PUT", url="/users/k", json_body={"upn": new_upn()}, route_params={"userKey": "k"}
        )
        assert_problem(response, 401, "unauthenticated")

    @pytest.mark.parametrize("who", ["user", "reporter"])
    def test_a_non_admin_is_403_even_with_a_bad_body(self, app: FunctionCaller, who: str) -> None:
        token = app.tokens.user("adam@contoso.com") if who == "user" else app.tokens.reporter_app()
        assert_problem(put_user(app, "k", {"upn": new_upn()}, token=token), 403, "forbidden")
        assert_problem(put_user(app, "k", token=token, raw=b"{not json"), 403, "forbidden")

    def test_a_body_that_is_not_json_is_400(self, app: FunctionCaller) -> None:
        assert_problem(put_user(app, "k", raw=b"[1]"), 400, "invalidRequest")

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({}, "upn"),
            ({"upn": "not-a-upn"}, "upn"),
            ({"upn": "a@contoso.com", "accountEnabled": "yes"}, "accountEnabled"),
            ({"upn": "a@contoso.com", "displayName": "x" * 257}, "displayName"),
            ({"upn": "a@contoso.com", "userKey": "other"}, "userKey"),
        ],
    )
    def test_invalid_bodies_are_422(self, app: FunctionCaller, body: dict[str, Any], field: str) -> None:
        problem = assert_problem(put_user(app, str(uuid.uuid4()), body), 422, "validationFailed")
        assert field in [error["field"] for error in problem["errors"]]

    def test_an_overlong_key_is_422(self, app: FunctionCaller) -> None:
        problem = assert_problem(put_user(app, "k" * 256, {"upn": new_upn()}), 422, "validationFailed")
        assert problem["errors"][0]["field"] == "userKey"
