"""HTTP triggers for the assignment resource: create, read, history, and the lists the views serve."""

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


@http_function(bp, "create_assignment", func.HttpMethod.POST, "assignments")
def create_assignment(req: func.HttpRequest) -> func.HttpResponse:
    return run_use_case(req, services.create_assignment)


@http_function(bp, "get_assignment", func.HttpMethod.GET, "assignments/{id}")
def get_assignment(req: func.HttpRequest) -> func.HttpResponse:
    principal, runtime = authenticate(req)
    return assignment_response(services.get_assignment(command_of(req, principal), runtime.deps()))


@http_function(bp, "list_assignments", func.HttpMethod.GET, "assignments")
def list_assignments(req: func.HttpRequest) -> func.HttpResponse:
    principal, runtime = authenticate(req)
    return json_response(services.list_assignments(dict(req.params), principal, runtime.deps()))


@http_function(bp, "get_history", func.HttpMethod.GET, "assignments/{id}/history")
def get_history(req: func.HttpRequest) -> func.HttpResponse:
    principal, runtime = authenticate(req)
    return json_response(services.get_history(command_of(req, principal), dict(req.params), runtime.deps()))


@http_function(bp, "summarize_assignments", func.HttpMethod.GET, "assignments/summary")
def summarize_assignments(req: func.HttpRequest) -> func.HttpResponse:
    principal, runtime = authenticate(req)
    return json_response(services.summarize_assignments(dict(req.params), principal, runtime.deps()))


@http_function(bp, "list_roster", func.HttpMethod.GET, "targets/{targetType}/{targetId}/assignments")
def list_roster(req: func.HttpRequest) -> func.HttpResponse:
    principal, runtime = authenticate(req)
    target_type, target_id = req.route_params["targetType"], req.route_params["targetId"]
    return json_response(services.list_roster(target_type, target_id, dict(req.params), principal, runtime.deps()))


@http_function(bp, "summarize_roster", func.HttpMethod.GET, "targets/{targetType}/{targetId}/summary")
def summarize_roster(req: func.HttpRequest) -> func.HttpResponse:
    principal, runtime = authenticate(req)
    target_type, target_id = req.route_params["targetType"], req.route_params["targetId"]
    return json_response(services.summarize_roster(target_type, target_id, dict(req.params), principal, runtime.deps()))
