"""HTTP triggers of the txn routes (seed 003): assign and unassign a task, in the seed's error format."""

from collections.abc import Callable

import azure.functions as func

from core import services
from triggers.http_errors import EndpointNotFound, MethodNotAllowed
from triggers.http_support import allowed_methods, assignment_response, authenticate, json_body, route, txn_boundary

bp = func.Blueprint()

WORKSPACES = "workspaces"
TXN_ROUTE = f"{WORKSPACES}/secure/api/v1/txn"


def _txn_write(req: func.HttpRequest, use_case: Callable[..., services.Outcome]) -> func.HttpResponse:
    principal, runtime = authenticate(req)
    outcome = use_case(
        json_body(req),
        principal,
        runtime.deps(),
        idempotency_key=req.headers.get("idempotency-key"),
        if_match=req.headers.get("if-match"),
    )
    return assignment_response(outcome)


@bp.function_name("txn_assign")
@route(bp, f"{TXN_ROUTE}/assign", func.HttpMethod.POST)
@txn_boundary(f"POST /{TXN_ROUTE}/assign")
def txn_assign(req: func.HttpRequest) -> func.HttpResponse:
    return _txn_write(req, services.assign_task)


@bp.function_name("txn_unassign")
@route(bp, f"{TXN_ROUTE}/unassign", func.HttpMethod.POST)
@txn_boundary(f"POST /{TXN_ROUTE}/unassign")
def txn_unassign(req: func.HttpRequest) -> func.HttpResponse:
    return _txn_write(req, services.unassign_task)


# Every method and every path under /workspaces that the routes above do not take, answered in the
# seed's format. Routing prefers literal segments to a catch-all, so the routes above still win, and this
# one wins over the app-wide fallback. Registered with `bp.route`, not `route`: it names no endpoint.
@bp.function_name("workspaces_not_found")
@bp.route(route=f"{WORKSPACES}/{{*rest}}", auth_level=func.AuthLevel.ANONYMOUS)
@txn_boundary(f"/{WORKSPACES} fallback")
def workspaces_not_found(req: func.HttpRequest) -> func.HttpResponse:
    path = f"/{WORKSPACES}/" + str(req.route_params.get("rest", "")).strip("/")
    allowed = allowed_methods(path)
    if allowed:
        raise MethodNotAllowed(f"{req.method} is not allowed on {path}", allowed=allowed)
    raise EndpointNotFound(f"No route matches {path}")
