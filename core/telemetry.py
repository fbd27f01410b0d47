"""Application Insights for what only this worker process sees: its calls to Cosmos DB, Storage and HTTP services
(dependencies) and the records of the `assignments` loggers, through the Azure Monitor OpenTelemetry distro.

Configured once per process, at the first use of the runtime (`core.bootstrap.get_runtime`), never at import, and
only when APPLICATIONINSIGHTS_CONNECTION_STRING is set: without it nothing is configured, no exporter exists and
nothing is sent. A failure to configure logs a warning and leaves the process as it was; it never fails a call.

Who sends what, with host.json in the host's default (Application Insights) telemetry mode:
- The Functions host: one request per invocation, whatever the trigger, and its own logs. It also relays every
  record the worker logs under the root logger as a trace; exporting those here too would send each one twice.
- This module: the dependencies (the distro's Azure SDK and `requests` instrumentations; no server-side
  instrumentation, so the worker never reports a request of its own), and the records of the `assignments`
  loggers (the request line, the projection, feed, sweep and timer counts, errors). That logger stops
  propagating to the root logger once its exporter is in place, so the host no longer relays those records:
  each arrives once, with its fields as properties and the invocation's operation id and `InvocationId`.
  Everything else logged in the worker (the Azure SDKs, the worker itself) still goes through the host.
- No metrics, performance counters or live metrics from the worker: the host has its own.

Every dependency is sent (sampling ratio 1.0; OTEL_TRACES_SAMPLER overrides it). host.json's sampling settings
apply to the host's telemetry only.

The records and dependencies join the host's request through `invocation`: the worker hands each call the W3C
`traceparent` of the host's invocation (`context.trace_context`), and within the block that context is the
current one, so the spans made there are its children and log records carry its trace id (Application Insights'
operation id).

Authentication is Microsoft Entra ID: the credential the runtime shares with its other clients
(DefaultAzureCredential, which in Azure is the user-assigned identity named by AZURE_CLIENT_ID, the identity
APPLICATIONINSIGHTS_AUTHENTICATION_STRING names for the host). Passing it as `credential=` makes the exporter
use it rather than reading APPLICATIONINSIGHTS_AUTHENTICATION_STRING itself.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

EXPORTED_LOGGER = "assignments"
# The distro's instrumentations by library name: client-side ones only. The server-side ones would report
# requests the host already reports; urllib3 is what `requests` (and the Azure SDKs' transport) sits on.
INSTRUMENTATIONS = {
    "azure_sdk": True,
    "requests": True,
    "urllib": False,
    "urllib3": False,
    "httpx": False,
    "django": False,
    "fastapi": False,
    "flask": False,
    "psycopg2": False,
}
# Resource attributes from the Functions environment (the site name becomes the cloud role, as for the host's
# telemetry), as the Functions Python worker sets it; the distro's default also probes the VM metadata endpoint.
RESOURCE_DETECTORS = "azure_functions"

DISTRO_LOGGER = "azure.monitor.opentelemetry"

log = logging.getLogger("assignments.telemetry")
_propagator = TraceContextTextMapPropagator()
_invocation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("invocation_id", default=None)


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempted = False
        self.configured = False


_state = _State()


def configure(connection_string: str | None, credential: Callable[[], Any]) -> bool:
    """Send this process's dependencies and `assignments` records to the Application Insights resource of
    `connection_string`, authenticated with `credential()`. Once per process: later calls return what the first
    one did. Without a connection string, nothing happens (and nothing is remembered). Never raises."""
    if not connection_string:
        return False
    with _state.lock:
        if _state.attempted:
            return _state.configured
        _state.attempted = True
        try:
            _configure(connection_string, credential())
        except Exception:  # telemetry must never break the call that configures it (logged with exc_info)
            log.warning(
                "telemetry: Application Insights could not be configured; the host's telemetry is unaffected",
                exc_info=True,
            )
            return False
        _state.configured = True
        return True


def is_configured() -> bool:
    return _state.configured


def _configure(connection_string: str, credential: Any) -> None:
    from azure.core.pipeline.policies import HttpLoggingPolicy
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk.metrics.view import DropAggregation, View

    os.environ.setdefault("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", RESOURCE_DETECTORS)
    # The exporter's own records (every upload's request and response, "Transmission succeeded") would reach the
    # host's relay and come back as traces; its warnings and errors (a refused token, say) still do.
    distro_logger = logging.getLogger(DISTRO_LOGGER)
    distro_logger.setLevel(logging.WARNING)
    configure_azure_monitor(
        connection_string=connection_string,
        credential=credential,
        logger_name=EXPORTED_LOGGER,
        http_logging_policy=HttpLoggingPolicy(logger=logging.getLogger(f"{DISTRO_LOGGER}.http")),
        instrumentation_options={name: {"enabled": enabled} for name, enabled in INSTRUMENTATIONS.items()},
        enable_live_metrics=False,
        enable_performance_counters=False,
        # Every dependency. The distro's default, 5 traces a second, sent parts of one invocation's dependencies
        # and dropped the rest; OTEL_TRACES_SAMPLER=microsoft.fixed_percentage with OTEL_TRACES_SAMPLER_ARG
        # (which override this) keeps or drops an operation whole, by its id.
        sampling_ratio=1.0,
        # Every instrument's measurements dropped: the metrics exporter has nothing to send.
        views=[View(instrument_name="*", aggregation=DropAggregation())],
    )
    _use_native_azure_sdk_tracing()
    exported = logging.getLogger(EXPORTED_LOGGER)
    handlers = [handler for handler in exported.handlers if isinstance(handler, LoggingHandler)]
    if not handlers:
        raise RuntimeError(f"the distro attached no log handler to the {EXPORTED_LOGGER!r} logger")
    for handler in handlers:
        handler.addFilter(_ExportedFields())
    # From now on these records reach Application Insights through the handler above only; the root logger's
    # handler (the worker's relay to the host) would send them a second time.
    exported.propagate = False


def _use_native_azure_sdk_tracing() -> None:
    """The Azure SDKs' spans through azure-core's own OpenTelemetry support rather than the distro's plugin. With
    the plugin, an HTTP call the SDK makes outside one of its traced methods (the Cosmos client's account read,
    for one) is reported twice, by azure-core and by the `requests` instrumentation; natively, azure-core
    suppresses the latter for every HTTP call it traces (tests/core/test_telemetry.py)."""
    from azure.core.settings import settings as azure_sdk

    azure_sdk.tracing_implementation = None
    azure_sdk.tracing_enabled = True


@contextmanager
def invocation(
    trace_parent: str | None, trace_state: str | None = None, invocation_id: str | None = None
) -> Iterator[str | None]:
    """Run the block as part of the host's invocation: its W3C trace context (`context.trace_context` of the
    call) is the current one, so the dependencies made and the records logged in the block carry its operation
    id, and exported records its `invocation_id`. Yields the trace id (32 hex digits), or None when the host
    passed no valid W3C `traceparent` (the local host passes none). Works whether or not telemetry is
    configured: without it nothing is recorded, the context is only made current."""
    carrier = {"traceparent": trace_parent or ""}
    if trace_state:
        carrier["tracestate"] = trace_state
    context = _propagator.extract(carrier)
    span_context = trace.get_current_span(context).get_span_context()
    token = otel_context.attach(context) if span_context.is_valid else None
    invocation_token = _invocation_id.set(invocation_id)
    try:
        yield trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None
    finally:
        _invocation_id.reset(invocation_token)
        if token is not None:
            otel_context.detach(token)


class _TraceContext(Protocol):
    @property
    def trace_parent(self) -> str: ...

    @property
    def trace_state(self) -> str: ...


class HostInvocation(Protocol):
    """What the Functions host hands each call (`func.Context`), as far as telemetry reads it."""

    @property
    def invocation_id(self) -> str: ...

    @property
    def trace_context(self) -> _TraceContext: ...


def invocation_of(context: HostInvocation) -> AbstractContextManager[str | None]:
    """`invocation` for the call the host handed `context`."""
    trace_context = context.trace_context
    return invocation(trace_context.trace_parent, trace_context.trace_state, context.invocation_id)


# What every LogRecord has (`args` and `msg` can be mappings too); anything else came from `extra`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class _ExportedFields(logging.Filter):
    """What an exported record adds for Application Insights: `InvocationId`, as the host's own lines carry it
    (so one query finds an invocation's lines from both), and each mapping passed in `extra` as one property per
    field (`request.route`, `request.status`, ...), since a property holds a single value; None fields are left
    out."""

    def filter(self, record: logging.LogRecord) -> bool:
        invocation_id = _invocation_id.get()
        if invocation_id and not hasattr(record, "InvocationId"):
            record.InvocationId = invocation_id
        for name, value in list(vars(record).items()):
            if isinstance(value, Mapping) and name not in _RECORD_ATTRIBUTES:
                delattr(record, name)
                for field, field_value in value.items():
                    if isinstance(field_value, str | bool | int | float):
                        setattr(record, f"{name}.{field}", field_value)
        return True
