"""HTTP triggers for an assignment's lifecycle: progress events, complete, reject, cancel, reassign,
delegate and edit (PATCH). Each runs one use case through `run_use_case`."""

import azure.functions as func

from core import services
from triggers.http_support import JSON_TYPES, MERGE_PATCH_TYPES, http_function, run_use_case

bp = func.Blueprint()


@http_function(bp, "post_progress_event", func.HttpMethod.POST, "assignments/{id}/events")
def post_progress_event(req: func.HttpRequest) -> func.HttpResponse:
    return run_use_case(req, services.record_event, allow_reporter=True)


@http_function(bp, "complete_assignment", func.HttpMethod.POST, "assignments/{id}/complete")
def complete_assignment(req: func.HttpRequest) -> func.HttpResponse:
    return run_use_case(req, services.complete_assignment, body_optional=True)


@http_function(bp, "reject_assignment", func.HttpMethod.POST, "assignments/{id}/reject")
def reject_assignment(req: func.HttpRequest) -> func.HttpResponse:
    return run_use_case(req, services.reject_assignment, body_optional=True)


@http_function(bp, "cancel_assignment", func.HttpMethod.POST, "assignments/{id}/cancel")
def cancel_assignment(req: func.HttpRequest) -> func.HttpResponse:
    return run_use_case(req, services.cancel_assignment, body_optional=True)


@http_function(bp, "reassign_assignment", func.HttpMethod.POST, "assignments/{id}/reassign")
def reassign_assignment(req: func.HttpRequest) -> func.HttpResponse:
    return run_use_case(req, services.reassign_assignment)


@http_function(bp, "delegate_assignment", func.HttpMethod.POST, "assignments/{id}/delegate")
def delegate_assignment(req: func.HttpRequest) -> func.HttpResponse:
    # A repeated delegation (200) points at the one successor too, not only the first (201).
    return run_use_case(req, services.delegate_assignment, always_locate=True)


@http_function(bp, "edit_assignment", func.HttpMethod.PATCH, "assignments/{id}")
def edit_assignment(req: func.HttpRequest) -> func.HttpResponse:
    # RFC 7396 merge patch; plain JSON is read the same way, as clients often send it.
    return run_use_case(req, services.edit_assignment, body_types=MERGE_PATCH_TYPES + JSON_TYPES)
