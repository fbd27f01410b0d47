"""HTTP trigger: PUT /users/{userKey}, the admins' write to the Cosmos user directory."""

from urllib.parse import quote

import azure.functions as func

from core import services
from core.auth import require_admin
from triggers.http_support import authenticate, json_body, json_response, problem_boundary, route

bp = func.Blueprint()


@bp.function_name("put_user")
@route(bp, "users/{userKey}", func.HttpMethod.PUT)
@problem_boundary("PUT /users/{userKey}")
def put_user(req: func.HttpRequest) -> func.HttpResponse:
    principal, runtime = authenticate(req)
    # The route's role comes before the body (403 before 400/422); the use case checks it again for itself.
    require_admin(principal)
    body = json_body(req)
    outcome = services.put_user(
        req.route_params["userKey"], body, principal, runtime.user_registry, forget=runtime.forget_user
    )
    response = json_response(outcome.to_json(), status=201 if outcome.created else 200)
    if outcome.created:
        response.headers["Location"] = f"/users/{quote(outcome.user.user_key, safe='')}"
    return response
