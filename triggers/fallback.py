"""Catch-alls under our own path prefixes: a known path with the wrong method gets 405 (with `Allow`),
an unknown one 404, both as problem+json.

Route precedence puts literal and parameter segments before a catch-all, so these functions only see
requests no other function accepted. They stay under our prefixes, never a bare `{*path}`: with an
empty routePrefix that would shadow the host's own `/admin` and `/runtime` routes. Register them last.
"""

import azure.functions as func

from core.errors import NotFound
from triggers.http_errors import MethodNotAllowed
from triggers.http_support import allowed_methods, problem_boundary

bp = func.Blueprint()

PREFIXES = ("assignments", "users", "health", "targets", "ops")


def _register_not_found_under(prefix: str) -> None:
    @bp.function_name(f"{prefix}_not_found")
    @bp.route(route=f"{prefix}/{{*rest}}", auth_level=func.AuthLevel.ANONYMOUS)
    @problem_boundary(f"/{prefix} fallback")
    def not_found(req: func.HttpRequest) -> func.HttpResponse:
        path = f"/{prefix}/" + str(req.route_params.get("rest") or "").strip("/")
        path = path.rstrip("/")
        allowed = allowed_methods(path)
        if allowed:
            raise MethodNotAllowed(f"{req.method} is not allowed on {path}", allowed=allowed)
        raise NotFound(f"No route matches {path}")


for _prefix in PREFIXES:
    _register_not_found_under(_prefix)
