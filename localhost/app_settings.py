"""App settings as the Functions host sees them: a flat name → string map, with `%NAME%` resolution.

On Azure (and under `func start`) app settings are environment variables, and binding properties written as
`%NAME%` are replaced by the setting's value when the host starts; a missing one stops the function from
loading. Connection properties name a setting too: a connection string, or `{name}__accountEndpoint` /
`{name}__queueServiceUri` for identity-based connections.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from pydantic import AliasChoices

from core.settings import Settings
from localhost.services import cosmos_connection_string

_PLACEHOLDER = re.compile(r"%([^%]+)%")


class BindingConfigError(Exception):
    """A binding cannot work with these settings; the real host would not load the function either."""


@dataclass(frozen=True)
class CosmosConnection:
    endpoint: str
    key: str | None  # None: identity-based, authenticated with DefaultAzureCredential


class AppSettings(Mapping[str, str]):
    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def resolve(self, value: str, *, where: str) -> str:
        """Replace every `%NAME%` in `value` with the setting's value."""

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self._values:
                raise BindingConfigError(f"{where}: '%{name}%' does not resolve to a value: set the app setting {name}")
            return self._values[name]

        return _PLACEHOLDER.sub(lookup, value)

    def is_true(self, name: str) -> bool:
        return self._values.get(name, "").strip().lower() in ("1", "true")

    def cosmos_connection(self, name: str, *, where: str) -> CosmosConnection:
        """The account a Cosmos DB binding's `connection` names."""
        value = self._values.get(name)
        if value:
            parts = parse_connection_string(value)
            endpoint = parts.get("accountendpoint")
            if not endpoint:
                raise BindingConfigError(f"{where}: the setting {name} is not a Cosmos DB connection string")
            return CosmosConnection(endpoint=endpoint, key=parts.get("accountkey"))
        endpoint = self._values.get(f"{name}__accountEndpoint")
        if endpoint:
            return CosmosConnection(endpoint=endpoint, key=None)
        raise BindingConfigError(f"{where}: set the app setting {name} (connection string) or {name}__accountEndpoint")

    def storage_connection_string(self, name: str | None, *, where: str) -> str:
        """The Storage connection string a queue binding's `connection` names (default AzureWebJobsStorage)."""
        candidates = [name, f"AzureWebJobs{name}"] if name else ["AzureWebJobsStorage"]
        for candidate in candidates:
            value = self._values.get(candidate or "")
            if value:
                return value
        raise BindingConfigError(
            f"{where}: set the app setting {candidates[0]} to a Storage connection string "
            "(the local host does not support identity-based Storage connections)"
        )


def parse_connection_string(value: str) -> dict[str, str]:
    """`Key=Value;...` pairs, keys lower-cased; values may contain `=` (base64 keys do)."""
    pairs = (part.split("=", 1) for part in value.split(";") if "=" in part)
    return {key.strip().lower(): item.strip() for key, item in pairs}


def setting_name(field_name: str) -> str:
    """The app-setting name `Settings` reads a field from (its first alias)."""
    alias = Settings.model_fields[field_name].validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        assert isinstance(first, str)
        return first
    assert isinstance(alias, str)
    return alias


def app_settings_of(settings: Settings) -> dict[str, str]:
    """Every setting `settings` holds, under its app-setting name, defaults included, as the host would see them.

    With a Cosmos key, the `CosmosDB` connection the trigger bindings name is derived from the same account.
    """
    values: dict[str, str] = {}
    for field_name in Settings.model_fields:
        value = getattr(settings, field_name)
        if value is None:
            continue
        values[setting_name(field_name)] = ",".join(value) if isinstance(value, list) else str(value)
    if settings.cosmos_key:
        values["CosmosDB"] = cosmos_connection_string(settings.cosmos_endpoint, settings.cosmos_key)
    else:
        values["CosmosDB__accountEndpoint"] = settings.cosmos_endpoint
    return values
