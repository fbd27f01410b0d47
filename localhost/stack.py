"""The in-process stack the tests and the benches run the app on: the emulators, a JWKS server that signs
real tokens, settings taken from them alone, and a caller of the registered functions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from core.bootstrap import Runtime, set_runtime
from core.settings import Settings
from localhost.caller import TEST_AUDIENCE, TEST_TENANT, FunctionCaller, Tokens
from localhost.dev_signer import JwksServer, SigningKey, TokenFactory
from localhost.services import RunningService, start_azurite, start_cosmos


class IsolatedSettings(Settings):
    """Settings from explicit values only: the process environment must not leak into tests."""

    @classmethod
    def settings_customise_sources(  # type: ignore[override]
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, **_others: object
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def make_settings(cosmos: RunningService, azurite: RunningService, jwks: JwksServer, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "COSMOS_ENDPOINT": cosmos.endpoint,
        "COSMOS_KEY": cosmos.key,
        "COSMOS_DATABASE": f"test-{uuid.uuid4().hex[:8]}",
        "AUTH_TENANT_ID": TEST_TENANT,
        "AUTH_AUDIENCE": f"{TEST_AUDIENCE},api://{TEST_AUDIENCE}",
        "AUTH_JWKS_URI": jwks.uri,
        "AzureWebJobsStorage": azurite.connection_string,
        "DIRECTORY": "cosmos",
    }
    values.update(overrides)
    return IsolatedSettings(**values)  # type: ignore[arg-type]


@contextmanager
def function_app_stack() -> Iterator[FunctionCaller]:
    """The emulators, a JWKS server and the app's runtime, for as long as the block runs."""
    cosmos, azurite = start_cosmos(), start_azurite()
    signing_key = SigningKey()
    jwks = JwksServer([signing_key])
    try:
        runtime = Runtime(make_settings(cosmos, azurite, jwks))
        set_runtime(runtime)
        yield FunctionCaller(runtime=runtime, tokens=Tokens(TokenFactory(TEST_TENANT, TEST_AUDIENCE, signing_key)))
    finally:
        set_runtime(None)
        jwks.stop()
        cosmos.stop()
        azurite.stop()
