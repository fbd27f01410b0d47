"""HTTP triggers for the assignment resource: create, read, history, and the lists the views serve."""

import re
from collections.abc import Callable
from typing import Any

import azure.functions as func

from core import services
from triggers.http_support import (
    assignment_response,
    authenticate,
    command_of,
    http_function,
    json_response,
    run_use_case,
)

bp = func.Blueprint()

# The reads the views serve (`core.services.listing`), all GET: each use case takes the route's parameters in
# order, then the query's, the caller and the deps, and answers JSON.
VIEW_READS: tuple[tuple[str, str, Callable[..., dict[str, Any]]], ...] = (
    ("list_assignments", "assignments", services.list_assignments),
    ("summarize_assignments", "assignments/summary", services.summarize_assignments),
    ("list_roster", "targets/{targetType}/{targetId}/assignments", services.list_roster),
    ("summarize_roster", "targets/{targetType}/{targetId}/summary", services.summarize_roster),
)


@http_function(bp, "create_assignment", func.HttpMethod.POST, "assignments")
def create_assignment(req: func.HttpRequest) -> func.HttpResponse:
    return run_use_case(req, services.create_assignment)


@http_function(bp, "get_assignment", func.HttpMethod.GET, "assignments/{id}")
def get_assignment(req: func.HttpRequest) -> func.HttpResponse:
    principal, runtime = authenticate(req)
    return assignment_response(services.get_assignment(command_of(req, principal), runtime.deps()))


@http_function(bp, "get_history", func.HttpMethod.GET, "assignments/{id}/history")
def get_history(req: func.HttpRequest) -> func.HttpResponse:
    principal, runtime = authenticate(req)
    return json_response(services.get_history(command_of(req, principal), dict(req.params), runtime.deps()))


def _register_view_read(function_name: str, template: str, read: Callable[..., dict[str, Any]]) -> None:
    route_parameters = re.findall(r"\{(\w+)\}", template)

    @http_function(bp, function_name, func.HttpMethod.GET, template)
    def handle(req: func.HttpRequest) -> func.HttpResponse:
        principal, runtime = authenticate(req)
        values = [req.route_params[name] for name in route_parameters]
        return json_response(read(*values, dict(req.params), principal, runtime.deps()))


for _route in VIEW_READS:
    _register_view_read(*_route)
