"""Schemathesis hooks for tests/localhost/test_fuzz.py, loaded by the schemathesis process it starts
(`SCHEMATHESIS_HOOKS=tests.localhost.fuzz_hooks`), never by pytest.

- With `FUZZ_AUTHORIZATIONS` set (a JSON list of `Authorization` values, `null` meaning no header at all),
  every generated request carries one of them, picked from the request's own content, so the same seed
  sends the same credentials with the same request whatever order the workers take requests in.
- Generated request bodies are mixed with the document's own examples (which name the demo data). Random
  bodies almost never create anything (the assignee must be a directory user), so without them the
  stateful phase would seldom get past its first step; with them, create -> read -> delegate chains run.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import schemathesis
from hypothesis import strategies as st

AUTHORIZATIONS_VARIABLE = "FUZZ_AUTHORIZATIONS"


def _pick(case: Any, choices: list[str | None]) -> str | None:
    described = repr((case.method, case.path, case.path_parameters, case.query, case.body, case.media_type))
    digest = hashlib.sha256(described.encode("utf-8", "surrogatepass")).digest()
    return choices[int.from_bytes(digest[:4], "big") % len(choices)]


if AUTHORIZATIONS_VARIABLE in os.environ:
    _CHOICES: list[str | None] = json.loads(os.environ[AUTHORIZATIONS_VARIABLE])

    @schemathesis.auth(refresh_interval=None, retry_on=[])
    class RotatingAuthorization:
        """One of the given `Authorization` values per request (or none): never refreshed, never retried."""

        def get(self, case: Any, ctx: Any) -> str:
            return "rotating"

        def set(self, case: Any, data: str, ctx: Any) -> None:
            value = _pick(case, _CHOICES)
            headers = dict(case.headers or {})
            headers.pop("Authorization", None)
            if value is not None:
                headers["Authorization"] = value
            case.headers = headers


def request_examples(operation: Any) -> list[Any]:
    """The example bodies the document gives an operation, in every media type it takes."""
    content = (operation.definition.raw.get("requestBody") or {}).get("content") or {}
    return [
        example["value"]
        for media in content.values()
        for example in (media.get("examples") or {}).values()
        if "value" in example
    ]


@schemathesis.hook
def before_generate_body(context: Any, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    examples = request_examples(context.operation) if context.operation is not None else []
    if not examples:
        return strategy
    return st.one_of(strategy, st.sampled_from(examples))
