"""The caller of the registered functions lives in `localhost.caller` (the benches use it too); tests import
it here."""

from collections.abc import Callable

from core.bootstrap import Runtime
from localhost.caller import TEST_AUDIENCE, TEST_TENANT, FunctionCaller, Response, Tokens

# What the `own_runtime` fixture hands a test: install a runtime of its own, get a caller for it.
InstallRuntime = Callable[[Runtime], FunctionCaller]

__all__ = ["TEST_AUDIENCE", "TEST_TENANT", "FunctionCaller", "InstallRuntime", "Response", "Tokens"]
