"""Calling one function the way the Python worker does, and delivering what its output bindings were given.

The trigger value goes to the trigger's parameter; each output binding's parameter gets a `func.Out`; a
`context` parameter gets a `func.Context`; coroutine functions run to completion on an event loop. After a
successful call, every output binding that was set (or `$return`, for non-HTTP outputs) is sent to its target;
after a failed call nothing is sent, as on the real host.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import azure.functions as func
from azure.functions._abc import RetryContext, TraceContext  # the abstract types func.Context returns
from azure.storage.queue import BinaryBase64EncodePolicy, QueueClient

from core.queues import CreateQueueOnce
from localhost.app_settings import AppSettings, BindingConfigError
from localhost.host_json import QueuesOptions
from localhost.indexing import IndexedFunction
from localhost.retry import RetryState

log = logging.getLogger("localhost")
T = TypeVar("T")


class OutValue(func.Out[T], Generic[T]):
    """The `func.Out[...]` the worker hands an output binding's parameter."""

    def __init__(self) -> None:
        self._value: T | None = None

    def set(self, val: T) -> None:
        self._value = val

    def get(self) -> T:
        return self._value  # type: ignore[return-value]  # unset reads as None, as in the worker


@dataclass(frozen=True)
class _TraceContext(TraceContext):
    """The W3C fields the host passes. No distributed trace reaches the local host: they are empty unless a test
    stands in for a host that continues a caller's trace."""

    trace_parent: str = ""
    trace_state: str = ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(RetryContext):
    """`context.retry_context`: 0 and 0 without a retry policy; with one, the retry's number, the policy's maximum
    and the previous call's error."""

    def __init__(self, state: RetryState | None) -> None:
        self._state = state or RetryState(0, 0)

    @property
    def retry_count(self) -> int:
        return self._state.retry_count

    @property
    def max_retry_count(self) -> int:
        return self._state.max_retry_count

    @property
    def exception(self) -> Any:
        return self._state.exception


class LocalContext(func.Context):
    _thread_local = threading.local()

    def __init__(
        self, function_name: str, invocation_id: str, retry: RetryState | None = None, *, trace_parent: str = ""
    ) -> None:
        self._function_name = function_name
        self._invocation_id = invocation_id
        self._retry = retry
        self._trace_parent = trace_parent

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._thread_local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return ""

    @property
    def trace_context(self) -> TraceContext:
        return _TraceContext(self._trace_parent)

    @property
    def retry_context(self) -> RetryContext:
        return _RetryContext(self._retry)


class OutputBinding(Protocol):
    def send(self, value: Any) -> None: ...


class QueueOutput:
    """A `queue` output binding: each message is base64-encoded, as the Functions queue trigger expects (with
    host.json `extensions.queues.messageEncoding: none`, sent as it is, in UTF-8).

    The queue is created on first use, as the host creates it. `on_sent(queue_url)` is told after each send (the
    host's shared queue watcher wakes this host's listeners of that queue).
    """

    def __init__(
        self,
        connection_string: str,
        queue_name: str,
        *,
        encoding: str = "base64",
        on_sent: Callable[[str], None] | None = None,
    ) -> None:
        self.queue_name = queue_name
        self._encoding = encoding
        self._on_sent = on_sent
        self._client = (
            QueueClient.from_connection_string(
                connection_string, queue_name, message_encode_policy=BinaryBase64EncodePolicy()
            )
            if encoding == "base64"
            else QueueClient.from_connection_string(connection_string, queue_name)
        )
        self._ensure_queue = CreateQueueOnce(self._client)

    def send(self, value: Any) -> None:
        messages = _queue_messages(value)
        self._ensure_queue()
        for message in messages:
            self._client.send_message(message if self._encoding == "base64" else message.decode("utf-8"))
        if messages and self._on_sent is not None:
            self._on_sent(str(self._client.url))


def _queue_messages(value: Any) -> list[bytes]:
    if isinstance(value, str):
        return [value.encode("utf-8")]
    if isinstance(value, bytes):
        return [value]
    if isinstance(value, func.QueueMessage):
        return [value.get_body()]
    if isinstance(value, list | tuple):
        return [message for item in value for message in _queue_messages(item)]
    raise TypeError(f"a queue output takes str, bytes, func.QueueMessage or a list of them, not {type(value).__name__}")


def build_output_binding(
    binding: Mapping[str, Any],
    settings: AppSettings,
    where: str,
    *,
    queues: QueuesOptions | None = None,
    on_queue_sent: Callable[[str], None] | None = None,
) -> OutputBinding | None:
    """The sender for an output binding; None for `http` (the HTTP front end writes it back)."""
    kind = binding["type"]
    if kind == "http":
        return None
    if kind == "queue":
        queue_name = settings.resolve(str(binding["queueName"]), where=where).lower()  # the host lower-cases it
        return QueueOutput(
            settings.storage_connection_string(binding.get("connection"), where=where),
            queue_name,
            encoding=(queues or QueuesOptions()).message_encoding,
            on_sent=on_queue_sent,
        )
    raise BindingConfigError(f"{where}: the local host does not support {kind} output bindings")


@dataclass(frozen=True)
class Invocation:
    """What one successful call produced: its return value and the values set on its output parameters."""

    returned: Any
    outputs: dict[str, Any]

    def value_of(self, binding_name: str) -> Any:
        return self.returned if binding_name == "$return" else self.outputs.get(binding_name)


class FunctionInvoker:
    def __init__(
        self,
        function: IndexedFunction,
        settings: AppSettings,
        *,
        queues: QueuesOptions | None = None,
        on_queue_sent: Callable[[str], None] | None = None,
    ) -> None:
        self.function = function
        self.name = function.name
        self._user_function = function.function.get_user_function()
        self._trigger_name = str(function.trigger["name"])
        self._out_parameters = [
            str(b["name"]) for b in function.raw_bindings if b["direction"] == "OUT" and b["name"] != "$return"
        ]
        self.outputs: dict[str, OutputBinding] = {}
        for binding in function.raw_bindings:
            where = f"function {function.name}, binding {binding['name']}"
            if binding["direction"] == "OUT":
                sender = build_output_binding(binding, settings, where, queues=queues, on_queue_sent=on_queue_sent)
                if sender is not None:
                    self.outputs[str(binding["name"])] = sender
            elif binding is not function.trigger:
                raise BindingConfigError(f"{where}: the local host does not support {binding['type']} input bindings")

    def __call__(self, trigger_value: Any, *, reason: str, retry: RetryState | None = None) -> Invocation:
        invocation_id = str(uuid.uuid4())
        kwargs: dict[str, Any] = {self._trigger_name: trigger_value}
        outs: dict[str, OutValue[Any]] = {name: OutValue() for name in self._out_parameters}
        kwargs.update(outs)
        if self.function.takes_context:
            kwargs["context"] = LocalContext(self.name, invocation_id, retry)
        started = time.perf_counter()
        try:
            returned = self._user_function(**kwargs)
            if inspect.isawaitable(returned):
                returned = asyncio.run(_awaited(returned))
            invocation = Invocation(returned, {name: out.get() for name, out in outs.items()})
            for name, sender in self.outputs.items():
                value = invocation.value_of(name)
                if value is not None:
                    sender.send(value)
        except Exception:
            log.info("Executed 'Functions.%s' (Failed, Id=%s, Reason=%s)", self.name, invocation_id, reason)
            raise
        log.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Reason=%s, Duration=%.0fms)",
            self.name,
            invocation_id,
            reason,
            (time.perf_counter() - started) * 1000,
        )
        return invocation


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
