"""Session fixtures: the real services start once per test session, on 127.0.0.1 with free ports.

Settings are built here explicitly; whatever `COSMOS_*`, `AUTH_*` or `AzureWebJobsStorage` the
environment holds is ignored, so a developer's shell never points the tests at a real account.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings as hypothesis_settings

from core.bootstrap import Runtime, set_runtime
from core.settings import Settings
from localhost.stack import make_settings
from tests.support.app import TEST_AUDIENCE, TEST_TENANT, FunctionCaller, InstallRuntime, Tokens
from tests.support.services import RunningService, start_azurite, start_cosmos
from tests.support.tokens import JwksServer, SigningKey, TokenFactory

# Speed is measured by bench/, never asserted: on a loaded 2-core machine a per-example deadline only flakes.
hypothesis_settings.register_profile("suite", deadline=None)
hypothesis_settings.load_profile("suite")


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


@pytest.fixture
def own_runtime(runtime: Runtime, tokens: Tokens) -> Iterator[InstallRuntime]:
    """Installs a runtime of the test's own and returns a caller for it; the session's is back afterwards."""

    def install(own: Runtime) -> FunctionCaller:
        set_runtime(own)
        return FunctionCaller(runtime=own, tokens=tokens)

    yield install
    set_runtime(runtime)
