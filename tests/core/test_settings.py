"""Settings: read at first use from the environment, with the documented defaults, loud when incomplete."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import Settings, get_settings

ROOT = Path(__file__).parents[2]
REQUIRED = {
    "COSMOS_ENDPOINT": "https://example.documents.azure.com:443/",
    "AUTH_TENANT_ID": "t1, t2",
    "AUTH_AUDIENCE": "api://a,b",
}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
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
    assert settings.attempts_limit == 100
    assert settings.idempotency_ttl_hours == 24
    assert settings.cosmos_views_container == "views"
    assert settings.notifications_queue == "assignment-notifications"
    assert settings.sweep_schedule == "0 * * * * *"
    assert settings.sweep_max_seconds == 50
    assert settings.reminder_lead_hours == 24
    assert settings.reminder_repeat_hours == 24
    assert settings.expiry_warning_hours == 24
    assert settings.reminder_max == 5
    assert settings.applicationinsights_connection_string is None


@pytest.mark.parametrize("name", ["REMINDER_LEAD_HOURS", "REMINDER_REPEAT_HOURS", "EXPIRY_WARNING_HOURS"])
def test_hours_may_be_fractions(environment: pytest.MonkeyPatch, name: str) -> None:
    environment.setenv(name, "0.25")
    assert getattr(get_settings(), name.lower()) == 0.25


def test_an_empty_optional_connection_string_is_not_set(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", "")
    assert get_settings().applicationinsights_connection_string is None
    environment.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", "InstrumentationKey=x;IngestionEndpoint=https://e/")
    get_settings.cache_clear()
    assert get_settings().applicationinsights_connection_string == "InstrumentationKey=x;IngestionEndpoint=https://e/"


def test_comma_separated_lists_are_split_and_trimmed(environment: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    assert settings.auth_tenant_ids == ["t1", "t2"]
    assert settings.auth_audiences == ["api://a", "b"]


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_a_missing_required_setting_fails_naming_it(environment: pytest.MonkeyPatch, missing: str) -> None:
    environment.delenv(missing)
    with pytest.raises(ValidationError, match=missing):
        get_settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DIRECTORY", "ldap"),
        ("DELEGATION_MAX_DEPTH", "0"),
        ("ATTEMPTS_LIMIT", "0"),
        ("IDEMPOTENCY_TTL_HOURS", "0"),
        ("IDEMPOTENCY_TTL_HOURS", "1.5"),
        ("NOTIFICATIONS_QUEUE", "Assignment-Notifications"),
        ("NOTIFICATIONS_QUEUE", "two--hyphens"),
        ("NOTIFICATIONS_QUEUE", "-leading"),
        ("NOTIFICATIONS_QUEUE", "ab"),
        ("NOTIFICATIONS_QUEUE", "q" * 57),  # its -poison queue would pass Storage's 63 characters
        ("CHANGES_RETRY_QUEUE", "Changes-Retry"),
        ("CHANGES_RETRY_QUEUE", "r" * 57),
        ("SWEEP_SCHEDULE", "* * * * *"),  # five fields: NCRONTAB here has seconds first
        ("SWEEP_MAX_SECONDS", "0"),
        ("REMINDER_LEAD_HOURS", "-1"),
        ("REMINDER_LEAD_HOURS", "inf"),
        ("REMINDER_REPEAT_HOURS", "0"),
        ("REMINDER_REPEAT_HOURS", "nan"),
        ("EXPIRY_WARNING_HOURS", "-0.5"),
        ("REMINDER_MAX", "-1"),
    ],
)
def test_an_invalid_value_fails_naming_it(environment: pytest.MonkeyPatch, name: str, value: str) -> None:
    environment.setenv(name, value)
    with pytest.raises(ValidationError, match=name):
        get_settings()


def test_settings_are_read_once_per_process(environment: pytest.MonkeyPatch) -> None:
    first = get_settings()
    environment.setenv("COSMOS_DATABASE", "other")
    assert get_settings() is first
    assert isinstance(first, Settings)


def _readme_defaults() -> dict[str, str]:
    """README's Configuration table: setting name → its default column."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `([^`]+)` \| ([^|]+) \|", table, flags=re.MULTILINE))


def _documented(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def test_readme_documents_every_setting_with_its_default() -> None:
    documented = _readme_defaults()
    for field in Settings.model_fields.values():
        name = str(field.validation_alias)
        assert name in documented, f"README's Configuration table lacks {name}"
        if field.is_required():
            assert documented[name].strip() == "required", name
        elif field.default is None or field.default_factory is not None:
            assert documented[name].strip() in ("none", "computed", "required by the host"), name
        else:
            assert documented[name].strip() == _documented(field.default), name


def test_the_sample_holds_the_defaults(environment: pytest.MonkeyPatch) -> None:
    """Apart from the local services it points at, local.settings.sample.json configures what the code defaults to."""
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    local = {"COSMOS_ENDPOINT", "COSMOS_KEY", "AUTH_TENANT_ID", "AUTH_AUDIENCE", "AzureWebJobsStorage"}
    from_sample = Settings.model_validate({**{k: v for k, v in sample.items() if k not in local}, **REQUIRED})
    defaults = Settings.model_validate(REQUIRED)
    for field_name, field in Settings.model_fields.items():
        if str(field.validation_alias) in local | {"AzureWebJobsStorage__accountName"}:
            continue
        assert getattr(from_sample, field_name) == getattr(defaults, field_name), field.validation_alias
