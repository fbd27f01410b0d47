"""infra/ agrees with the code: container names, partition keys and settings, and it holds no keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

from core.cosmos.client import ASSIGNMENTS_PARTITION_KEY, LEASES_PARTITION_KEY, USERS_PARTITION_KEY
from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BICEP = (ROOT / "infra" / "main.bicep").read_text()
SAMPLE = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
# Only the local host reads these; they never reach Azure.
LOCAL_ONLY = {"PORT", "LOCAL_DEV_SIGNER"}
# Keys and connection strings are what the deployment must not have.
FORBIDDEN_IN_AZURE = {"COSMOS_KEY", "AzureWebJobsStorage", "CosmosDB"}


def _bicep_containers() -> dict[str, str]:
    return dict(re.findall(r"\{ name: '([^']+)', partitionKey: '([^']+)'", BICEP))


def _bicep_app_settings() -> set[str]:
    return set(re.findall(r"\{ name: '([A-Za-z_]+)', value:", BICEP))


def _settings_names() -> set[str]:
    return {str(field.validation_alias) for field in Settings.model_fields.values()}


def test_containers_and_partition_keys_agree_with_the_store() -> None:
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    assert _bicep_containers() == {
        defaults["cosmos_assignments_container"]: ASSIGNMENTS_PARTITION_KEY,
        defaults["cosmos_users_container"]: USERS_PARTITION_KEY,
        defaults["cosmos_leases_container"]: LEASES_PARTITION_KEY,
    }


def test_every_setting_the_code_reads_is_configured_in_azure() -> None:
    configured = _bicep_app_settings()
    missing = _settings_names() - configured - LOCAL_ONLY - FORBIDDEN_IN_AZURE - {"AUTH_ISSUERS"}
    assert not missing, f"settings the code reads but infra/main.bicep does not set: {missing}"
    assert "CosmosDB__accountEndpoint" in configured


def test_azure_gets_no_keys_or_connection_strings() -> None:
    assert not _bicep_app_settings() & FORBIDDEN_IN_AZURE
    assert "disableLocalAuth: true" in BICEP
    assert "allowSharedKeyAccess: false" in BICEP


def test_every_setting_in_azure_is_known_locally() -> None:
    platform = {"APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"}
    # The identity-based forms of the `CosmosDB` and `AzureWebJobsStorage` connections.
    identity_forms = {"CosmosDB__accountEndpoint", "AzureWebJobsStorage__credential"}
    unknown = _bicep_app_settings() - set(SAMPLE) - platform - identity_forms
    assert not unknown, f"infra sets settings missing from local.settings.sample.json: {unknown}"
