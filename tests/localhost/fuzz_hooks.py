"""Schemathesis hooks for tests/localhost/test_fuzz.py, loaded by the schemathesis process it starts
(`SCHEMATHESIS_HOOKS=tests.localhost.fuzz_hooks`), never by pytest.

- With `FUZZ_AUTHORIZATIONS` set (a JSON list of `Authorization` values, `null` meaning no header at all),
  every generated request carries one of them, picked from the request's own content, so the same seed
  sends the same credentials with the same request whatever order the workers take requests in.
- Generated request bodies are mixed with the document's own examples (which name the demo data). Random
  bodies almost never create anything (the assignee must be a directory user), so without them the
  stateful phase would seldom get past its first step; with them, create -> read -> delegate chains run.
- Hypothesis describes a filter's lambda by parsing its source file with `ast.parse`, and schemathesis's
  workers are threads. On CPython 3.11 the AST constructor's recursion counter is shared by the
  interpreter's threads (python/cpython#106905 and gh-95185, which added it), so two parses at once can
  fail with `SystemError: AST constructor recursion depth mismatch`, which schemathesis reports as an
  error of the operation it was generating for. Those descriptions are made one at a time here.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import schemathesis
from hypothesis import strategies as st
from hypothesis.internal import lambda_sources

AUTHORIZATIONS_VARIABLE = "FUZZ_AUTHORIZATIONS"
P = ParamSpec("P")
R = TypeVar("R")


def _one_at_a_time(describe: Callable[P, R]) -> Callable[P, R]:
    lock = threading.Lock()

    @functools.wraps(describe)
    def serialized(*args: P.args, **kwargs: P.kwargs) -> R:
        with lock:
            return describe(*args, **kwargs)

    return serialized


# `lambda_description` (cached) calls the module's `_lambda_description`, which parses, on a cache miss.
lambda_sources._lambda_description = _one_at_a_time(lambda_sources._lambda_description)


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
