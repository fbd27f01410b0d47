"""Session fixtures: the real services start once per test session, on 127.0.0.1 with free ports.

Settings are built here explicitly; whatever `COSMOS_*`, `AUTH_*` or `AzureWebJobsStorage` the
environment holds is ignored, so a developer's shell never points the tests at a real account.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from core.bootstrap import Runtime, set_runtime
from core.settings import Settings
from tests.support.app import TEST_AUDIENCE, TEST_TENANT, FunctionCaller, Tokens
from tests.support.services import RunningService, start_azurite, start_cosmos
from tests.support.tokens import JwksServer, SigningKey, TokenFactory


class IsolatedSettings(Settings):
    """Settings from explicit values only: the process environment must not leak into tests."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **_others):  # type: ignore[override]
        return (init_settings,)


@pytest.fixture(scope="session")
def cosmos_service() -> Iterator[RunningService]:
    service = start_cosmos()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def azurite_service() -> Iterator[RunningService]:
    service = start_azurite()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey()


@pytest.fixture(scope="session")
def jwks_server(signing_key: SigningKey) -> Iterator[JwksServer]:
    server = JwksServer([signing_key])
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tokens(signing_key: SigningKey) -> Tokens:
    return Tokens(TokenFactory(tenant_id=TEST_TENANT, audience=TEST_AUDIENCE, key=signing_key))


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


@pytest.fixture(scope="session")
def settings(cosmos_service: RunningService, azurite_service: RunningService, jwks_server: JwksServer) -> Settings:
    return make_settings(cosmos_service, azurite_service, jwks_server)


@pytest.fixture(scope="session")
def runtime(settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime(settings)
    set_runtime(runtime)
    yield runtime
    set_runtime(None)


@pytest.fixture
def app(runtime: Runtime, tokens: Tokens) -> FunctionCaller:
    """Calls `function_app.py`'s registered functions with `func.HttpRequest`, as the host would."""
    set_runtime(runtime)
    return FunctionCaller(runtime=runtime, tokens=tokens)
