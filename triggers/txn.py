"""HTTP triggers of the txn routes (docs/api-rules.md, "The txn routes"): assign and unassign a task, in
the seed's error format."""

import azure.functions as func

from core import services
from triggers.http_errors import EndpointNotFound, MethodNotAllowed
from triggers.http_support import allowed_methods, http_function, run_use_case, txn_boundary

bp = func.Blueprint()

WORKSPACES = "workspaces"
TXN_ROUTE = f"{WORKSPACES}/secure/api/v1/txn"


@http_function(bp, "txn_assign", func.HttpMethod.POST, f"{TXN_ROUTE}/assign", txn=True)
def txn_assign(req: func.HttpRequest) -> func.HttpResponse:
    return run_use_case(req, services.assign_task)


@http_function(bp, "txn_unassign", func.HttpMethod.POST, f"{TXN_ROUTE}/unassign", txn=True)
def txn_unassign(req: func.HttpRequest) -> func.HttpResponse:
    return run_use_case(req, services.unassign_task)


# Every method and every path under /workspaces that the routes above do not take, answered in the
# seed's format. Routing prefers literal segments to a catch-all, so the routes above still win, and this
# one wins over the app-wide fallback. Registered with `bp.route`, not `http_function`: it names no endpoint.
@bp.function_name("workspaces_not_found")
@bp.route(route=f"{WORKSPACES}/{{*rest}}", auth_level=func.AuthLevel.ANONYMOUS)
@txn_boundary(f"/{WORKSPACES} fallback")
def workspaces_not_found(req: func.HttpRequest) -> func.HttpResponse:
    path = f"/{WORKSPACES}/" + str(req.route_params.get("rest", "")).strip("/")
    allowed = allowed_methods(path)
    if allowed:
        raise MethodNotAllowed(f"{req.method} is not allowed on {path}", allowed=allowed)
    raise EndpointNotFound(f"No route matches {path}")
