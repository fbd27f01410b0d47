"""HTTP trigger: POST /assignments/{id}/delegate."""

import azure.functions as func

from core import services
from triggers.http_support import assignment_response, authenticate, json_body, problem_boundary, route

bp = func.Blueprint()


@bp.function_name("delegate_assignment")
@route(bp, "assignments/{id}/delegate", func.HttpMethod.POST)
@problem_boundary("POST /assignments/{id}/delegate")
def delegate_assignment(req: func.HttpRequest) -> func.HttpResponse:
    principal, runtime = authenticate(req)
    body = json_body(req)
    outcome = services.delegate_assignment(
        req.route_params["id"],
        body,
        principal,
        runtime.deps(),
        if_match=req.headers.get("if-match"),
        idempotency_key=req.headers.get("idempotency-key"),
    )
    response = assignment_response(outcome)
    # A repeated delegation (200) points at the one successor too, not only the first (201).
    response.headers["Location"] = f"/assignments/{outcome.id}"
    return response
