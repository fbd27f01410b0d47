"""The caller of the registered functions lives in `localhost.caller` (the benches use it too); tests import
it here."""

from localhost.caller import TEST_AUDIENCE, TEST_TENANT, FunctionCaller, Response, Tokens

__all__ = ["TEST_AUDIENCE", "TEST_TENANT", "FunctionCaller", "Response", "Tokens"]
