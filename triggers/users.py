"""HTTP triggers of the Cosmos user directory: PUT and GET /users/{userKey}, for admins of the tenant."""

from urllib.parse import quote

import azure.functions as func

from core import services
from core.auth import require_admin
from triggers.http_support import authenticate, http_function, json_body, json_response

bp = func.Blueprint()


@http_function(bp, "put_user", func.HttpMethod.PUT, "users/{userKey}")
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


@http_function(bp, "get_user", func.HttpMethod.GET, "users/{userKey}")
def get_user(req: func.HttpRequest) -> func.HttpResponse:
    principal, runtime = authenticate(req)
    outcome = services.get_user(req.route_params["userKey"], principal, runtime.user_registry)
    return json_response(outcome.to_json())
