"""Index a function app the way the Azure Functions Python worker does.

The real worker imports `function_app`, takes its single `FunctionApp`, calls `get_functions()` once,
and checks every function's signature against its bindings, then turns each function's `@app.retry` setting into the
retry options it sends the host. Any failure drops *every* function silently on the real host, so the local host and
the tests run these same checks and fail loudly.
"""

from __future__ import annotations

import importlib
import inspect
import json
import typing
import uuid
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import azure.functions as func
from azure.functions import meta
from azure.functions.decorators.function_app import Function, FunctionRegister

from localhost.retry import RETRY_POLICY_SETTING, RetryPolicy, RetryPolicyError


class IndexingError(Exception):
    """The app would not index on the real Functions host."""


@dataclass(frozen=True)
class IndexedFunction:
    name: str
    function: Function
    raw_bindings: list[dict[str, Any]]
    # Decided once at indexing, as the worker does, so no call pays for inspecting the signature.
    takes_context: bool
    retry: RetryPolicy | None = None  # `@app.retry(...)`, as the worker reads it

    @property
    def trigger(self) -> dict[str, Any]:
        return next(b for b in self.raw_bindings if b["type"].endswith("Trigger"))

    def call(self, **kwargs: Any) -> Any:
        """Call the function with these arguments; one that takes `context` gets a fresh invocation's, as the
        worker gives it, unless the caller passes its own."""
        user_function = self.function.get_user_function()
        if self.takes_context and "context" not in kwargs:
            from localhost.invocation import LocalContext  # here: localhost.invocation imports this module

            kwargs["context"] = LocalContext(self.name, str(uuid.uuid4()))
        return user_function(**kwargs)


def _find_app(module: ModuleType) -> FunctionRegister:
    apps = [value for value in vars(module).values() if isinstance(value, FunctionRegister)]
    if len(apps) != 1:
        raise IndexingError(f"{module.__name__} must define exactly one FunctionApp, found {len(apps)}")
    return apps[0]


def _is_out(annotation: Any) -> bool:
    return typing.get_origin(annotation) is func.Out or (inspect.isclass(annotation) and annotation is func.Out)


def _check_function(fn: Function) -> bool:
    """Raise unless the worker would index `fn`; return whether it takes the invocation's `context`."""
    name = fn.get_function_name()
    user_function = fn.get_user_function()
    signature = inspect.signature(user_function)
    hints = typing.get_type_hints(user_function)
    bindings = {binding.name: binding for binding in fn.get_bindings()}
    parameters = {p for p in signature.parameters if not (p == "context" and hints.get(p) is func.Context)}
    bound = {b for b in bindings if b != "$return"}
    if parameters != bound:
        raise IndexingError(f"{name}: parameter names {sorted(parameters)} do not match binding names {sorted(bound)}")
    registry = meta.get_binding_registry()
    directions = {raw["name"]: raw["direction"] for raw in map(json.loads, fn.get_raw_bindings())}
    for binding_name, binding in bindings.items():
        checker = registry.get(binding.type) if registry is not None else None
        is_output = directions[binding_name] == "OUT"
        if binding_name == "$return":
            annotation = hints.get("return")
            if checker is not None and annotation is not None and not checker.check_output_type_annotation(annotation):
                raise IndexingError(f"{name}: return type {annotation!r} does not suit a {binding.type} output")
            continue
        annotation = hints.get(binding_name)
        if _is_out(annotation) != is_output:
            raise IndexingError(f"{name}: {binding_name} must {'' if is_output else 'not '}be func.Out[...]")
        if checker is None or annotation is None:
            continue
        if is_output:
            (inner,) = typing.get_args(annotation) or (Any,)
            ok = checker.check_output_type_annotation(inner)
        else:
            ok = checker.check_input_type_annotation(annotation)
        if not ok:
            raise IndexingError(f"{name}: {binding_name}: {annotation!r} does not suit a {binding.type} binding")
    # The worker's rule (`is_context_required`): a binding that happens to be named `context` is not the Context.
    return "context" in signature.parameters and "context" not in bindings


def _retry_policy(name: str, fn: Function) -> RetryPolicy | None:
    setting = fn.get_settings_dict(RETRY_POLICY_SETTING)
    if setting is None:
        return None
    try:
        return RetryPolicy.from_setting(setting)
    except RetryPolicyError as error:
        raise IndexingError(f"{name}: @retry: {error}") from None


def index_module(module: ModuleType) -> list[IndexedFunction]:
    return index_functions(_find_app(module))


def index_functions(app: FunctionRegister) -> list[IndexedFunction]:
    """Index one app object (call it once per app: `get_functions()` raises the second time)."""
    functions = app.get_functions()  # the worker calls this once; a second call raises on the same app
    indexed = []
    for fn in functions:
        takes_context = _check_function(fn)
        raw = [json.loads(binding) for binding in fn.get_raw_bindings()]
        name = fn.get_function_name() or ""
        retry = _retry_policy(name, fn)
        indexed.append(
            IndexedFunction(name=name, function=fn, raw_bindings=raw, takes_context=takes_context, retry=retry)
        )
    names = [f.name for f in indexed]
    if len(set(names)) != len(names):
        raise IndexingError(f"duplicate function names: {names}")
    return indexed


_cache: dict[str, list[IndexedFunction]] = {}


def index_app(module_name: str = "function_app") -> list[IndexedFunction]:
    """Import and index a function app module, once per process."""
    if module_name not in _cache:
        _cache[module_name] = index_module(importlib.import_module(module_name))
    return _cache[module_name]
