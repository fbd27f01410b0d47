"""The catch-all route: a known path with the wrong method gets 405 (with `Allow`), anything else 404.

Route precedence puts literal and parameter segments before a catch-all, so this function only sees
requests no other function accepted. Register it last.
"""

import azure.functions as func

from core.errors import NotFound
from triggers.http_errors import MethodNotAllowed
from triggers.http_support import allowed_methods, problem_boundary, route

bp = func.Blueprint()


@bp.function_name("not_found_or_method_not_allowed")
@route(
    bp,
    "{*path}",
    func.HttpMethod.GET,
    func.HttpMethod.POST,
    func.HttpMethod.PUT,
    func.HttpMethod.PATCH,
    func.HttpMethod.DELETE,
)
@problem_boundary("fallback")
def not_found_or_method_not_allowed(req: func.HttpRequest) -> func.HttpResponse:
    path = "/" + str(req.route_params.get("path", "")).strip("/")
    allowed = allowed_methods(path)
    if allowed:
        raise MethodNotAllowed(f"{req.method} is not allowed on {path}", allowed=allowed)
    raise NotFound(f"No route matches {path}")
