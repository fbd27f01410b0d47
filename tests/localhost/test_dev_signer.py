"""The development token signer: the app's own validation trusts its tokens, and it refuses to run in Azure."""

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests

from core.auth import TokenValidator
from core.bootstrap import Runtime
from core.errors import Unauthenticated
from core.settings import Settings
from localhost.dev_signer import LOCAL_ADMIN_APP, LOCAL_REPORTER_APP, DevSigner, DevSignerRefused, LocalApp, SigningKey
from localhost.services import REPO_ROOT


@pytest.fixture
def signer() -> Iterator[DevSigner]:
    signer = DevSigner(environ={})
    yield signer
    signer.stop()


def validator_trusting(signer: DevSigner, settings: Settings) -> TokenValidator:
    values = signer.app_settings()
    trusting = settings.model_copy(
        update={
            "auth_jwks_uri": values["AUTH_JWKS_URI"],
            "auth_tenant_ids": values["AUTH_TENANT_ID"].split(","),
            "auth_audiences": [values["AUTH_AUDIENCE"]],
            "auth_issuers": [],
        }
    )
    return Runtime(trusting).token_validator


def test_the_apps_own_validation_accepts_the_signers_tokens(signer: DevSigner, settings: Settings) -> None:
    validator = validator_trusting(signer, settings)
    principal = validator.validate(signer.user_token(oid="key-1", upn="Dev@Contoso.com", groups=["g1"]))
    assert (principal.oid, principal.upn, principal.groups) == ("key-1", "dev@contoso.com", frozenset({"g1"}))
    assert "Assignments.ReadWrite" in principal.scopes


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def test_user_tokens_are_shaped_as_entra_issues_them(signer: DevSigner, settings: Settings) -> None:
    token = signer.user_token(oid="key-1", upn="dev@contoso.com", roles=["Assignments.Admin"])
    claims = claims_of(token)
    assert claims["idtyp"] == "user"
    assert claims["sub"] != claims["oid"] == "key-1"  # a user's sub is pairwise, never the oid
    assert claims["scp"] == "Assignments.ReadWrite"
    assert claims["roles"] == ["Assignments.Admin"]
    # Pairwise per user and client app: stable for one, different for another.
    assert claims_of(signer.user_token(oid="key-1", upn="dev@contoso.com"))["sub"] == claims["sub"]
    assert claims_of(signer.user_token(oid="key-2", upn="dev2@contoso.com"))["sub"] != claims["sub"]
    principal = validator_trusting(signer, settings).validate(token)
    assert not principal.is_app_only
    assert principal.is_admin


@pytest.mark.parametrize("app", [LOCAL_ADMIN_APP, LOCAL_REPORTER_APP], ids=lambda app: app.name)
def test_app_tokens_are_shaped_as_entra_issues_them(signer: DevSigner, settings: Settings, app: LocalApp) -> None:
    token = signer.app_token(app)
    claims = claims_of(token)
    assert claims["idtyp"] == "app"
    assert claims["sub"] == claims["oid"] == app.object_id
    assert claims["azp"] == app.app_id
    assert "scp" not in claims
    assert claims["roles"] == list(app.roles)
    principal = validator_trusting(signer, settings).validate(token)
    assert principal.is_app_only
    assert principal.actor == f"app:{app.app_id}"
    assert principal.roles == frozenset(app.roles)


def test_a_token_signed_by_another_key_is_refused(signer: DevSigner, settings: Settings) -> None:
    validator = validator_trusting(signer, settings)
    forged = signer.tokens.user_token(upn="mallory@contoso.com", key=SigningKey())
    with pytest.raises(Unauthenticated):
        validator.validate(forged)


def test_the_jwks_endpoint_serves_the_signers_public_key(signer: DevSigner) -> None:
    (key,) = requests.get(signer.jwks_uri, timeout=5).json()["keys"]
    assert key["kid"] == signer.key.kid
    assert "d" not in key  # never the private part


def test_the_signer_refuses_to_start_on_an_azure_instance() -> None:
    with pytest.raises(DevSignerRefused, match="WEBSITE_INSTANCE_ID"):
        DevSigner(environ={"WEBSITE_INSTANCE_ID": "a1b2c3"})


def test_the_run_command_refuses_to_start_on_an_azure_instance() -> None:
    env = {**os.environ, "WEBSITE_INSTANCE_ID": "a1b2c3", "LOCAL_DEV_SIGNER": "1", "PORT": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "localhost"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "WEBSITE_INSTANCE_ID is set" in result.stderr
    assert "started here" not in result.stdout  # it stopped before starting any emulator
