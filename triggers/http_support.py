"""What every HTTP trigger shares: reading a JSON body, authenticating, shaping responses, and the
boundary that turns any error into the route's documented error body."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import azure.functions as func

from core import telemetry
from core.auth import Principal, require_access
from core.bootstrap import Runtime, get_runtime
from core.errors import FieldError, InvalidRequest, PayloadTooLarge, ValidationFailed
from core.hygiene import InvalidJson, JsonValueError, json_loads_strict
from core.services import Command, Outcome, UseCase
from triggers.http_errors import problem_response, txn_error_response

log = logging.getLogger("assignments.http")

MAX_BODY_BYTES = 64 * 1024
JSON_TYPES = ("application/json",)
MERGE_PATCH_TYPES = ("application/merge-patch+json",)

Handler = Callable[[func.HttpRequest], func.HttpResponse]
# What is registered: the handler inside its boundary, which also takes the invocation's `context` (the worker
# passes one to a function with a `context: func.Context` parameter) for the trace context the host passes.
Registered = Callable[[func.HttpRequest, func.Context], func.HttpResponse]


@dataclass(frozen=True)
class RouteTemplate:
    template: str
    methods: tuple[str, ...]
    pattern: re.Pattern[str]


# Every route the app serves, so the fallback function can tell "wrong method" (405) from "no such path".
ROUTES: list[RouteTemplate] = []


def _compile(template: str) -> re.Pattern[str]:
    pattern = ""
    for segment in template.strip("/").split("/"):
        if segment.startswith("{*"):
            pattern += "(?:/.*)?"
            continue
        pattern += "/" + "[^/]+".join(re.escape(piece) for piece in re.split(r"\{[^}]+\}", segment))
    return re.compile(f"^{pattern}/?$")


def http_function(
    bp: func.Blueprint, name: str, method: func.HttpMethod, template: str, *, txn: bool = False
) -> Callable[[Handler], Registered]:
    """Register an anonymous HTTP function (the code validates tokens) under `name`, remember its route for
    405 answers, and wrap it in the error boundary of its family: problem+json, or the txn seed's body."""
    ROUTES.append(RouteTemplate(template, (method.value,), _compile(template)))
    label = f"{method.value} /{template}"
    boundary = txn_boundary(label) if txn else problem_boundary(label)

    def register(handler: Handler) -> Registered:
        registered: Registered = bp.function_name(name)(
            bp.route(route=template, methods=[method], auth_level=func.AuthLevel.ANONYMOUS)(boundary(handler))
        )
        return registered

    return register


def allowed_methods(path: str) -> set[str]:
    """The methods our routes accept for `path`; empty when no route matches it at all."""
    return {m for r in ROUTES if not r.template.startswith("{*") and r.pattern.match(path) for m in r.methods}


def trace_id_of(req: func.HttpRequest) -> str:
    """The trace id of the caller's W3C `traceparent` when it sent one, else a fresh one: what a request gets
    when the host passed no trace context of its own (the local host passes none)."""
    traceparent = str(req.headers.get("traceparent", ""))
    parts = traceparent.split("-")
    if len(parts) == 4 and len(parts[1]) == 32:
        return parts[1]
    return uuid.uuid4().hex


def json_body(req: func.HttpRequest, *, content_types: tuple[str, ...] = JSON_TYPES, allow_empty: bool = False) -> Any:
    """The parsed JSON object of the body; `None` for an empty body when `allow_empty`."""
    raw = req.get_body() or b""
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The request body exceeds {MAX_BODY_BYTES // 1024} KiB")
    if allow_empty and not raw.strip():
        return None
    media_type = (req.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media_type not in content_types:
        raise InvalidRequest(f"Content-Type must be {' or '.join(content_types)}")
    # I-JSON only (docs/api-rules.md, "Input hygiene and limits"): broken JSON is 400; a number no double
    # holds exactly (`1e400`, 2**64) or a lone surrogate is a 422 naming the field, never a silent null.
    try:
        return json_loads_strict(raw, require_object=True)
    except InvalidJson as error:
        raise InvalidRequest(str(error)) from None
    except JsonValueError as error:
        fields = [FieldError(problem.field or "body", problem.message) for problem in error.problems]
        raise ValidationFailed(f"The request is not valid: {error}", fields) from None


def authenticate(req: func.HttpRequest, *, allow_reporter: bool = False) -> tuple[Principal, Runtime]:
    runtime = get_runtime()
    principal = runtime.authenticate(req.headers.get("authorization"))
    record = _current.get()
    if record is not None:
        record.principal = principal
    require_access(principal, allow_reporter=allow_reporter)
    return principal, runtime


def command_of(
    req: func.HttpRequest,
    principal: Principal,
    *,
    body: object = None,
) -> Command:
    """The one command a write's use case takes: who, what, and the request's preconditions."""
    return Command(
        principal=principal,
        body=body,
        assignment_id=str(req.route_params.get("id", "")),
        if_match=req.headers.get("if-match"),
        idempotency_key=req.headers.get("idempotency-key"),
    )


def run_use_case(
    req: func.HttpRequest,
    use_case: UseCase,
    *,
    body_types: tuple[str, ...] = JSON_TYPES,
    body_optional: bool = False,
    allow_reporter: bool = False,
    always_locate: bool = False,
) -> func.HttpResponse:
    """Authenticate, read the body, run one use case, answer with the assignment."""
    principal, runtime = authenticate(req, allow_reporter=allow_reporter)
    body = json_body(req, content_types=body_types, allow_empty=body_optional)
    outcome = use_case(command_of(req, principal, body=body), runtime.deps())
    return assignment_response(outcome, always_locate=always_locate)


def entity_tag(etag: str | None) -> str:
    """RFC 9110 entity tag: Cosmos's ETags are quoted already; a bare one is quoted here."""
    if not etag:
        return ""
    return etag if etag.startswith(('"', "W/")) else f'"{etag}"'


def assignment_response(outcome: Outcome, *, always_locate: bool = False) -> func.HttpResponse:
    headers = {"ETag": entity_tag(outcome.etag)}
    status = 201 if outcome.created else 200
    if outcome.created or always_locate:
        headers["Location"] = f"/assignments/{outcome.id}"
    return func.HttpResponse(
        json.dumps(outcome.assignment), status_code=status, mimetype="application/json", headers=headers
    )


def json_response(body: object, *, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


@dataclass
class RequestRecord:
    """What the one log line of a request says; filled in as the request goes."""

    route: str
    trace_id: str
    principal: Principal | None = None


_current: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar("request", default=None)


def current_trace_id(req: func.HttpRequest) -> str:
    record = _current.get()
    return record.trace_id if record is not None else trace_id_of(req)


def _log_request(req: func.HttpRequest, record: RequestRecord, status: int, started: float) -> None:
    """One structured line per request: route, status, duration, the trace id the response carries, the
    assignment and the caller's tenant and user key (never a token)."""
    principal = record.principal
    line = {
        "route": record.route,
        "status": status,
        "durationMs": round((time.perf_counter() - started) * 1000, 2),
        "traceId": record.trace_id,
        "assignmentId": req.route_params.get("id"),
        "tenantId": principal.tid if principal else None,
        "userKey": principal.oid if principal else None,
    }
    log.info("request %s", json.dumps(line, separators=(",", ":")), extra={"request": line})


def _boundary(
    route: str, render: Callable[[BaseException, func.HttpRequest], func.HttpResponse]
) -> Callable[[Handler], Registered]:
    """Wrap a handler: any error becomes `render`'s response, every response carries the trace id in
    X-Trace-Id, and one line is logged per request.

    The trace id is the one Application Insights shows as the request's operation id: the host's trace context
    for the invocation (`context.trace_context.trace_parent`), which continues the caller's `traceparent` when it
    sent a valid one and starts a new trace otherwise. Without one (the local host), the caller's `traceparent`,
    else a fresh id. The block runs within that context (`telemetry.invocation`), so the dependencies it makes
    and the records it logs join the host's request."""

    def decorate(handler: Handler) -> Registered:
        def wrapper(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
            with telemetry.invocation_of(context) as trace_id:
                record = RequestRecord(route=route, trace_id=trace_id or trace_id_of(req))
                token = _current.set(record)
                started = time.perf_counter()
                try:
                    response = handler(req)
                except Exception as error:  # noqa: BLE001 - this is the boundary; the table decides
                    response = render(error, req)
                finally:
                    _current.reset(token)
                response.headers["X-Trace-Id"] = record.trace_id
                _log_request(req, record, response.status_code, started)
                return response

        # The handler's names, not its signature: the worker and the local host read `wrapper`'s parameters.
        for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(wrapper, attribute, getattr(handler, attribute))
        return wrapper

    return decorate


def problem_boundary(route: str) -> Callable[[Handler], Registered]:
    """Any error raised by the handler becomes a problem+json response; unknown ones a 500 with an
    error-log id and nothing internal."""
    return _boundary(route, lambda error, req: problem_response(error, trace_id=current_trace_id(req), route=route))


def txn_boundary(route: str) -> Callable[[Handler], Registered]:
    """The txn routes' boundary: the seed's `{errorKey, error}` body instead of problem+json."""
    return _boundary(route, lambda error, _req: txn_error_response(error, route=route))
