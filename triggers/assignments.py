"""HTTP triggers for the assignment resource."""

import azure.functions as func

from core import services
from triggers.http_support import assignment_response, authenticate, json_body, problem_boundary, route

bp = func.Blueprint()


@bp.function_name("create_assignment")
@route(bp, "assignments", func.HttpMethod.POST)
@problem_boundary("POST /assignments")
def create_assignment(req: func.HttpRequest) -> func.HttpResponse:
    principal, runtime = authenticate(req)
    body = json_body(req)
    outcome = services.create_assignment(
        body, principal, runtime.deps(), idempotency_key=req.headers.get("idempotency-key")
    )
    return assignment_response(outcome)


@bp.function_name("get_assignment")
@route(bp, "assignments/{id}", func.HttpMethod.GET)
@problem_boundary("GET /assignments/{id}")
def get_assignment(req: func.HttpRequest) -> func.HttpResponse:
    principal, runtime = authenticate(req)
    outcome = services.get_assignment(req.route_params["id"], principal, runtime.deps())
    return assignment_response(outcome)
