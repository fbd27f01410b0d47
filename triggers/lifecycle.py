"""HTTP triggers for an assignment's lifecycle: progress events, complete, reject, cancel, reassign,
edit (PATCH), and the list of one's assignments."""

from collections.abc import Callable

import azure.functions as func

from core import services
from triggers.http_support import (
    MERGE_PATCH_TYPES,
    assignment_response,
    authenticate,
    json_body,
    json_response,
    problem_boundary,
    route,
)

bp = func.Blueprint()

WriteUseCase = Callable[..., services.Outcome]


def _write(
    req: func.HttpRequest, use_case: WriteUseCase, *, body_optional: bool, allow_reporter: bool = False
) -> func.HttpResponse:
    """The shape every lifecycle POST shares: authenticate, read the body, run one use case."""
    principal, runtime = authenticate(req, allow_reporter=allow_reporter)
    body = json_body(req, allow_empty=body_optional)
    outcome = use_case(
        req.route_params["id"],
        body,
        principal,
        runtime.deps(),
        idempotency_key=req.headers.get("idempotency-key"),
        if_match=req.headers.get("if-match"),
    )
    return assignment_response(outcome)


@bp.function_name("post_progress_event")
@route(bp, "assignments/{id}/events", func.HttpMethod.POST)
@problem_boundary("POST /assignments/{id}/events")
def post_progress_event(req: func.HttpRequest) -> func.HttpResponse:
    return _write(req, services.record_event, body_optional=False, allow_reporter=True)


@bp.function_name("complete_assignment")
@route(bp, "assignments/{id}/complete", func.HttpMethod.POST)
@problem_boundary("POST /assignments/{id}/complete")
def complete_assignment(req: func.HttpRequest) -> func.HttpResponse:
    return _write(req, services.complete_assignment, body_optional=True)


@bp.function_name("reject_assignment")
@route(bp, "assignments/{id}/reject", func.HttpMethod.POST)
@problem_boundary("POST /assignments/{id}/reject")
def reject_assignment(req: func.HttpRequest) -> func.HttpResponse:
    return _write(req, services.reject_assignment, body_optional=True)


@bp.function_name("cancel_assignment")
@route(bp, "assignments/{id}/cancel", func.HttpMethod.POST)
@problem_boundary("POST /assignments/{id}/cancel")
def cancel_assignment(req: func.HttpRequest) -> func.HttpResponse:
    return _write(req, services.cancel_assignment, body_optional=True)


@bp.function_name("reassign_assignment")
@route(bp, "assignments/{id}/reassign", func.HttpMethod.POST)
@problem_boundary("POST /assignments/{id}/reassign")
def reassign_assignment(req: func.HttpRequest) -> func.HttpResponse:
    return _write(req, services.reassign_assignment, body_optional=False)


@bp.function_name("edit_assignment")
@route(bp, "assignments/{id}", func.HttpMethod.PATCH)
@problem_boundary("PATCH /assignments/{id}")
def edit_assignment(req: func.HttpRequest) -> func.HttpResponse:
    principal, runtime = authenticate(req)
    body = json_body(req, content_types=MERGE_PATCH_TYPES)
    outcome = services.edit_assignment(
        req.route_params["id"],
        body,
        principal,
        runtime.deps(),
        if_match=req.headers.get("if-match"),
        idempotency_key=req.headers.get("idempotency-key"),
    )
    return assignment_response(outcome)


@bp.function_name("list_assignments")
@route(bp, "assignments", func.HttpMethod.GET)
@problem_boundary("GET /assignments")
def list_assignments(req: func.HttpRequest) -> func.HttpResponse:
    principal, runtime = authenticate(req)
    return json_response(services.list_assignments(dict(req.params), principal, runtime.deps()))
