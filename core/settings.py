"""Every setting the service reads, in one object, read at first use and never at import.

Names are fixed by CONTRACTS.md; each appears in README and in `local.settings.sample.json`. A missing
required setting fails loudly, naming the variable, at the first request that needs it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
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

    delegation_max_depth: int = Field(default=10, ge=1, validation_alias="DELEGATION_MAX_DEPTH")

    # Locally a connection string; in Azure the identity-based form names only the account.
    azure_web_jobs_storage: str | None = Field(default=None, validation_alias="AzureWebJobsStorage")
    azure_web_jobs_storage_account_name: str | None = Field(
        default=None, validation_alias="AzureWebJobsStorage__accountName"
    )

    _split = field_validator("auth_tenant_ids", "auth_audiences", "auth_issuers", mode="before")(_split_commas)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first call."""
    return Settings()  # required values come from the environment; a missing one raises, naming it
