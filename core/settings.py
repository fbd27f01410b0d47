"""Every setting the service reads, in one object, read at first use and never at import.

Every name is listed, with its default, in README's "Configuration" table (the rules are in docs/api-rules.md,
"Settings") and appears in `local.settings.sample.json`. A missing required setting fails loudly, naming the
variable, at the first request that needs it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.models import MAX_ATTEMPTS

CommaList = Annotated[list[str], NoDecode]
# A Storage queue name: 3-63 lowercase letters, digits and single hyphens, starting and ending with a letter or
# digit. At most 56 here, so that the `-poison` queue the Functions host derives from it is valid too.
QUEUE_NAME_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
QueueName = Annotated[str, StringConstraints(pattern=QUEUE_NAME_PATTERN, min_length=3, max_length=56)]
# NCRONTAB with seconds, as the Functions timer trigger reads it: six fields.
NCRONTAB_PATTERN = r"^\s*\S+(?:\s+\S+){5}\s*$"


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _empty_is_unset(value: object) -> object:
    """`local.settings.sample.json` lists optional settings with an empty value: that means not set."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", populate_by_name=True)

    cosmos_endpoint: str = Field(validation_alias="COSMOS_ENDPOINT")
    # Without a key the Cosmos client authenticates with DefaultAzureCredential (managed identity).
    cosmos_key: str | None = Field(default=None, validation_alias="COSMOS_KEY")
    cosmos_database: str = Field(default="assignments", validation_alias="COSMOS_DATABASE")
    cosmos_assignments_container: str = Field(default="assignments", validation_alias="COSMOS_ASSIGNMENTS_CONTAINER")
    cosmos_users_container: str = Field(default="users", validation_alias="COSMOS_USERS_CONTAINER")
    cosmos_leases_container: str = Field(default="leases", validation_alias="COSMOS_LEASES_CONTAINER")

    auth_tenant_ids: CommaList = Field(validation_alias="AUTH_TENANT_ID", min_length=1)
    auth_audiences: CommaList = Field(validation_alias="AUTH_AUDIENCE", min_length=1)
    auth_jwks_uri: str = Field(
        default="https://login.microsoftonline.com/common/discovery/v2.0/keys", validation_alias="AUTH_JWKS_URI"
    )
    auth_issuers: CommaList = Field(default_factory=list, validation_alias="AUTH_ISSUERS")

    directory: Literal["cosmos", "graph"] = Field(default="cosmos", validation_alias="DIRECTORY")
    directory_cache_ttl_seconds: float = Field(default=300, ge=0, validation_alias="DIRECTORY_CACHE_TTL_SECONDS")
    graph_base_url: str = Field(default="https://graph.microsoft.com/v1.0", validation_alias="GRAPH_BASE_URL")

    # Bounded so the longest chain still fits an assignment under Cosmos DB's item limit (tests/core/test_models.py).
    delegation_max_depth: int = Field(default=10, ge=1, le=50, validation_alias="DELEGATION_MAX_DEPTH")
    # The most attempts kept on an assignment whose `maxAttempts` is null.
    # More would let an assignment outgrow Cosmos DB's item limit.
    attempts_limit: int = Field(default=MAX_ATTEMPTS, ge=1, le=MAX_ATTEMPTS, validation_alias="ATTEMPTS_LIMIT")
    idempotency_ttl_hours: int = Field(default=24, ge=1, validation_alias="IDEMPOTENCY_TTL_HOURS")

    # The change-feed views (lists, rosters, summaries, the due index); partition key `/pk`, TTL on.
    cosmos_views_container: str = Field(default="views", validation_alias="COSMOS_VIEWS_CONTAINER")
    # Read by the code only (notifications are sent with the Storage SDK, core/bootstrap.py); no binding names it.
    notifications_queue: QueueName = Field(default="assignment-notifications", validation_alias="NOTIFICATIONS_QUEUE")

    # Named in the feed's retry queue bindings (`%CHANGES_RETRY_QUEUE%`): a document whose projection or
    # notification failed is retried there apart from its batch, then lands in `<name>-poison`.
    changes_retry_queue: QueueName = Field(default="assignment-changes-retry", validation_alias="CHANGES_RETRY_QUEUE")

    # The expiry and reminder sweep. SWEEP_SCHEDULE is named in the timer binding (`%SWEEP_SCHEDULE%`).
    sweep_schedule: str = Field(default="0 * * * * *", pattern=NCRONTAB_PATTERN, validation_alias="SWEEP_SCHEDULE")
    sweep_max_seconds: int = Field(default=50, ge=1, validation_alias="SWEEP_MAX_SECONDS")
    reminder_lead_hours: float = Field(default=24, ge=0, allow_inf_nan=False, validation_alias="REMINDER_LEAD_HOURS")
    reminder_repeat_hours: float = Field(
        default=24, gt=0, allow_inf_nan=False, validation_alias="REMINDER_REPEAT_HOURS"
    )
    expiry_warning_hours: float = Field(default=24, ge=0, allow_inf_nan=False, validation_alias="EXPIRY_WARNING_HOURS")
    reminder_max: int = Field(default=5, ge=0, validation_alias="REMINDER_MAX")

    # Optional: when set, telemetry goes to Application Insights, authenticated with Entra ID (no keys).
    applicationinsights_connection_string: str | None = Field(
        default=None, validation_alias="APPLICATIONINSIGHTS_CONNECTION_STRING"
    )

    # Locally a connection string; in Azure the identity-based form names only the account.
    azure_web_jobs_storage: str | None = Field(default=None, validation_alias="AzureWebJobsStorage")
    azure_web_jobs_storage_account_name: str | None = Field(
        default=None, validation_alias="AzureWebJobsStorage__accountName"
    )

    _split = field_validator("auth_tenant_ids", "auth_audiences", "auth_issuers", mode="before")(_split_commas)
    _unset = field_validator("applicationinsights_connection_string", mode="before")(_empty_is_unset)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first call."""
    return Settings()  # required values come from the environment; a missing one raises, naming it
