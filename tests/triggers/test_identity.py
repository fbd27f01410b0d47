"""Rights follow the user key (`oid`) and the tenant, never a UPN (docs/api-rules.md, "Identity and
tenancy"), tried as an attacker would: self-signed tokens from the tests' JWKS, through the registered
functions, against the emulator. Each test here failed on the code before identity by key."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from core.bootstrap import Runtime
from core.settings import Settings
from tests.support.api import (
    ORIGINATOR,
    act,
    add_user,
    assert_problem,
    assign,
    catch_up,
    create,
    delegate,
    get,
    key_of,
    new_body,
    new_task,
    patch,
    post_event,
    put_user,
)
from tests.support.app import TEST_AUDIENCE, TEST_TENANT, FunctionCaller, InstallRuntime, Response, Tokens
from tests.support.tokens import SigningKey, TokenFactory

TENANT_B = "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"


def listed_ids(app: FunctionCaller, token: str, role: str = "assignee") -> set[str]:
    catch_up(app)
    response = app.call("list_assignments", url="/assignments", token=token, params={"role": role})
    assert response.status == 200, response.body
    return {item["id"] for item in response.json()["items"]}


def intruder(app: FunctionCaller, upn: str) -> str:
    """A token that carries `upn` but a key of its own: whoever can sign in under a recycled or copied UPN."""
    return app.tokens.user(upn, oid=f"intruder-{uuid.uuid4().hex}")


class TestIdentityIsTheKey:
    def test_a_token_with_the_assignees_upn_and_another_oid_gets_nothing(self, app: FunctionCaller) -> None:
        _, grace = add_user(app)
        created = create(app, new_body(assigneeEmail=grace, allowRejection=True)).json()
        forged = intruder(app, grace)
        assert_problem(get(app, created["id"], forged), 404, "notFound")
        assert created["id"] not in listed_ids(app, forged)
        _, dora = add_user(app)
        assert_problem(delegate(app, created["id"], {"toUpn": dora}, token=forged), 404, "notFound")
        assert_problem(act(app, "reject", created["id"], token=forged), 404, "notFound")
        # The real assignee, by key, still holds it all.
        assert get(app, created["id"], app.tokens.user(grace)).status == 200
        assert created["id"] in listed_ids(app, app.tokens.user(grace))

    def test_a_token_with_the_originators_upn_and_another_oid_cannot_cancel(self, app: FunctionCaller) -> None:
        created = create(app, new_body()).json()
        assert_problem(act(app, "cancel", created["id"], token=intruder(app, ORIGINATOR)), 404, "notFound")
        assert get(app, created["id"], app.tokens.user(ORIGINATOR)).json()["status"] == "pending"

    def test_a_renamed_assignee_keeps_every_right(self, app: FunctionCaller) -> None:
        grace_key, grace = add_user(app)
        created = create(app, new_body(assigneeEmail=grace, allowRejection=True)).json()
        renamed = f"renamed-{uuid.uuid4().hex[:8]}@contoso.com"
        assert put_user(app, grace_key, {"upn": renamed}).status == 200
        token = app.tokens.user(renamed, oid=grace_key)
        assert get(app, created["id"], token).status == 200
        assert created["id"] in listed_ids(app, token)
        assert act(app, "reject", created["id"], token=token).status == 200

    def test_a_recycled_upn_holds_none_of_the_old_users_rights(self, app: FunctionCaller) -> None:
        old_key, upn = add_user(app)
        created = create(app, new_body(assigneeEmail=upn, allowRejection=True)).json()
        assert put_user(app, old_key, {"upn": f"left-{uuid.uuid4().hex[:8]}@contoso.com"}).status == 200
        new_key, _ = add_user(app, upn, user_key=f"new-{uuid.uuid4().hex}")
        newcomer = app.tokens.user(upn, oid=new_key)
        assert_problem(get(app, created["id"], newcomer), 404, "notFound")
        assert created["id"] not in listed_ids(app, newcomer)
        assert_problem(act(app, "reject", created["id"], token=newcomer), 404, "notFound")
        # A new assignment for that UPN now goes to the newcomer, by key.
        fresh = create(app, new_body(assigneeEmail=upn), register=False).json()
        assert fresh["assigneeUserKey"] == new_key
        assert get(app, fresh["id"], app.tokens.user(upn, oid=old_key)).status == 404

    def test_create_stores_the_assignees_key(self, app: FunctionCaller) -> None:
        grace_key, grace = add_user(app, user_key=f"k-{uuid.uuid4().hex}")
        created = create(app, new_body(assigneeEmail=grace), register=False).json()
        assert created["assigneeUserKey"] == grace_key

    @pytest.mark.parametrize(
        "address", ["nobody-{}@contoso.com", "grace\u200b{}@contoso.com", "\uff47race{}@contoso.com"]
    )
    def test_create_for_a_user_nobody_can_reach_is_refused(self, app: FunctionCaller, address: str) -> None:
        response = create(app, new_body(assigneeEmail=address.format(uuid.uuid4().hex[:6])), register=False)
        assert response.status == 422
        assert response.json()["code"] in ("userNotFound", "validationFailed")

    def test_an_idempotent_creates_id_is_not_derivable(self, app: FunctionCaller) -> None:
        key = uuid.uuid4().hex
        # The id the old code derived from the victim's UPN, route and key: an attacker pre-creates it.
        derivable = hashlib.sha256("\x1f".join([ORIGINATOR, "createAssignment", key]).encode()).hexdigest()[:32]
        attacker = app.tokens.user(f"mallory-{uuid.uuid4().hex[:6]}@contoso.com")
        assert create(app, new_body(id=derivable), token=attacker).status == 201
        first = create(app, new_body(), headers={"Idempotency-Key": key})
        assert first.status == 201, first.body
        assert first.json()["id"] != derivable
        retry = create(app, new_body(), headers={"Idempotency-Key": key})
        assert (retry.status, retry.json()["id"]) == (201, first.json()["id"])


# --- two tenants ------------------------------------------------------------------------------------------


@dataclass
class Tenant:
    tokens: Tokens
    tid: str

    def user(self, upn: str) -> str:
        return self.tokens.user(upn, oid=f"{self.tid}-{key_of(upn)}")

    def admin(self) -> str:
        return self.tokens.admin_app(app_id=f"admin-{self.tid}")


@pytest.fixture
def two_tenants(
    settings: Settings, own_runtime: InstallRuntime, signing_key: SigningKey
) -> tuple[FunctionCaller, Tenant, Tenant]:
    both = settings.model_copy(update={"auth_tenant_ids": [TEST_TENANT, TENANT_B]})
    app = own_runtime(Runtime(both))
    tenants = tuple(
        Tenant(Tokens(TokenFactory(tenant_id=tid, audience=TEST_AUDIENCE, key=signing_key)), tid)
        for tid in (TEST_TENANT, TENANT_B)
    )
    return app, tenants[0], tenants[1]


def _as(app: FunctionCaller, tenant: Tenant, call: Any, *args: Any, **kw: Any) -> Response:
    app.tokens = tenant.tokens
    return call(app, *args, **kw)  # type: ignore[no-any-return]


class TestTwoTenants:
    def test_same_upns_same_ids_and_an_admin_each_never_cross(
        self, two_tenants: tuple[FunctionCaller, Tenant, Tenant]
    ) -> None:
        app, a, b = two_tenants
        shared_id, a_only = f"shared-{uuid.uuid4().hex[:8]}", f"aonly-{uuid.uuid4().hex[:8]}"
        grace, ada = "grace@contoso.com", "ada@contoso.com"
        for tenant in (a, b):
            for upn in (grace, ada):
                user_key = f"{tenant.tid}-{key_of(upn)}"
                response = _as(app, tenant, put_user, user_key, {"upn": upn}, token=tenant.admin())
                assert response.status in (200, 201), response.body
        # The same id in both tenants: no duplicateId across the line.
        for tenant in (a, b):
            body = new_body(id=shared_id, assigneeEmail=grace, completionCriteria="manual", allowRejection=True)
            assert _as(app, tenant, create, body, token=tenant.user(ada), register=False).status == 201
        body = new_body(id=a_only, assigneeEmail=grace, completionCriteria="manual")
        assert _as(app, a, create, body, token=a.user(ada), register=False).status == 201

        # Tenant B's admin and users, on tenant A's assignment: nothing to see, change or detect.
        for token in (b.admin(), b.user(grace), b.user(ada)):
            assert_problem(_as(app, b, get, a_only, token), 404, "notFound")
            assert a_only not in listed_ids(app, token) | listed_ids(app, token, "originator")
            assert_problem(_as(app, b, act, "cancel", a_only, token=token), 404, "notFound")
            assert_problem(_as(app, b, act, "complete", a_only, token=token), 404, "notFound")
            assert_problem(_as(app, b, patch, a_only, {"targetTitle": "x"}, if_match="*", token=token), 404, "notFound")
            assert_problem(_as(app, b, delegate, a_only, {"toUpn": ada}, token=token), 404, "notFound")
            assert_problem(_as(app, b, post_event, a_only, "visited", token=token), 404, "notFound")
            txn = _as(app, b, assign, a_only, f"{b.tid}-{key_of(ada)}", token=token)
            assert txn.json()["errorKey"] == "txnNotFound"
        # A reporter app of tenant B reports for tenant B only.
        reporter = b.tokens.reporter_app(app_id="reporter-b")
        assert_problem(_as(app, b, post_event, a_only, "visited", token=reporter), 404, "notFound")

        # The shared id: each tenant's admin cancels its own, and the other's stays as it was.
        assert _as(app, b, act, "cancel", shared_id, token=b.admin()).json()["status"] == "cancelled"
        assert _as(app, a, get, shared_id, a.user(grace)).json()["status"] == "pending"
        assert _as(app, a, get, shared_id, a.user(grace)).json()["assigneeUserKey"] == f"{a.tid}-{key_of(grace)}"

        # Tenant B's admin renames "grace" in B; A's grace is untouched and keeps her assignment.
        renamed = _as(app, b, put_user, f"{b.tid}-{key_of(grace)}", {"upn": "g2@contoso.com"}, token=b.admin())
        assert renamed.status == 200
        assert app.runtime.directory.find_by_upn(TEST_TENANT, grace) is not None
        assert _as(app, a, get, a_only, a.user(grace)).status == 200
        # And a tenant-B admin writing tenant A's user key writes into B, not A.
        a_grace = f"{a.tid}-{key_of(grace)}"
        assert _as(app, b, put_user, a_grace, {"upn": "impostor@contoso.com"}, token=b.admin()).status == 201
        user = app.runtime.directory.find_by_key(TEST_TENANT, a_grace)
        assert user is not None
        assert user.upn == grace

    def test_a_task_of_one_tenant_is_never_offered_to_anothers_candidates(
        self, two_tenants: tuple[FunctionCaller, Tenant, Tenant]
    ) -> None:
        app, a, b = two_tenants
        app.tokens = a.tokens
        task = new_task(app)
        member = b.tokens.user("c@contoso.com", oid=f"{b.tid}-c", groups=["g-txn-reviewers"])
        assert task["id"] not in listed_ids(app, member, "candidate")
        assert_problem(get(app, task["id"], member), 404, "notFound")
