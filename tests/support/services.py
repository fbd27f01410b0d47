"""The emulator helpers live in `localhost.services` (the run command needs them too); tests import them here."""

from localhost.services import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    COSMOS_EMULATOR_KEY,
    RunningService,
    azurite_connection_string,
    cosmos_connection_string,
    make_cosmos_client,
    start_azurite,
    start_cosmos,
)

__all__ = [
    "AZURITE_ACCOUNT",
    "AZURITE_KEY",
    "COSMOS_EMULATOR_KEY",
    "RunningService",
    "azurite_connection_string",
    "cosmos_connection_string",
    "make_cosmos_client",
    "start_azurite",
    "start_cosmos",
]
