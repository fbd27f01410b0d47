"""HTTP triggers for the assignment resource."""

import azure.functions as func

from core import services
from triggers.http_support import assignment_response, authenticate, json_body, problem_boundary

bp = func.Blueprint()


@bp.function_name("create_assignment")
@bp.route(route="assignments", methods=[func.HttpMethod.POST], auth_level=func.AuthLevel.ANONYMOUS)
@problem_boundary("POST /assignments")
def create_assignment(req: func.HttpRequest) -> func.HttpResponse:
    principal, runtime = authenticate(req)
    body = json_body(req)
    outcome = services.create_assignment(
        body, principal, runtime.deps(), idempotency_key=req.headers.get("idempotency-key")
    )
    return assignment_response(outcome)


@bp.function_name("get_assignment")
@bp.route(route="assignments/{id}", methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.ANONYMOUS)
@problem_boundary("GET /assignments/{id}")
def get_assignment(req: func.HttpRequest) -> func.HttpResponse:
    principal, runtime = authenticate(req)
    outcome = services.get_assignment(req.route_params["id"], principal, runtime.deps())
    return assignment_response(outcome)
