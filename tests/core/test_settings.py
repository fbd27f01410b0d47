"""Settings: read at first use from the environment, with the documented defaults, loud when incomplete."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import Settings, get_settings

REQUIRED = {
    "COSMOS_ENDPOINT": "https://example.documents.azure.com:443/",
    "AUTH_TENANT_ID": "t1, t2",
    "AUTH_AUDIENCE": "api://a,b",
}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    sample = json.loads((Path(__file__).parents[2] / "local.settings.sample.json").read_text())["Values"]
    for name in sample:
        monkeypatch.delenv(name, raising=False)
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_defaults_are_the_documented_ones(environment: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    assert settings.cosmos_key is None
    assert settings.cosmos_database == "assignments"
    assert settings.cosmos_assignments_container == "assignments"
    assert settings.cosmos_users_container == "users"
    assert settings.cosmos_leases_container == "leases"
    assert settings.auth_jwks_uri == "https://login.microsoftonline.com/common/discovery/v2.0/keys"
    assert settings.auth_issuers == []
    assert settings.directory == "cosmos"
    assert settings.directory_cache_ttl_seconds == 300
    assert settings.graph_base_url == "https://graph.microsoft.com/v1.0"
    assert settings.delegation_max_depth == 10


def test_comma_separated_lists_are_split_and_trimmed(environment: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    assert settings.auth_tenant_ids == ["t1", "t2"]
    assert settings.auth_audiences == ["api://a", "b"]


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_a_missing_required_setting_fails_naming_it(environment: pytest.MonkeyPatch, missing: str) -> None:
    environment.delenv(missing)
    with pytest.raises(ValidationError, match=missing):
        get_settings()


@pytest.mark.parametrize(("name", "value"), [("DIRECTORY", "ldap"), ("DELEGATION_MAX_DEPTH", "0")])
def test_an_invalid_value_fails_naming_it(environment: pytest.MonkeyPatch, name: str, value: str) -> None:
    environment.setenv(name, value)
    with pytest.raises(ValidationError, match=name):
        get_settings()


def test_settings_are_read_once_per_process(environment: pytest.MonkeyPatch) -> None:
    first = get_settings()
    environment.setenv("COSMOS_DATABASE", "other")
    assert get_settings() is first
    assert isinstance(first, Settings)
