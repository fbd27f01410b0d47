"""HTTP triggers for an assignment's lifecycle: progress events, complete, reject, cancel, reassign,
delegate and edit (PATCH). Each runs one use case through `run_use_case`; the table is the API."""

from dataclasses import dataclass

import azure.functions as func

from core import services
from triggers.http_support import JSON_TYPES, MERGE_PATCH_TYPES, http_function, run_use_case

bp = func.Blueprint()


@dataclass(frozen=True)
class LifecycleRoute:
    function_name: str
    # The last segment of `assignments/{id}/{action}`; none for PATCH `assignments/{id}`.
    action: str | None
    use_case: services.UseCase
    method: func.HttpMethod = func.HttpMethod.POST
    body_types: tuple[str, ...] = JSON_TYPES
    body_optional: bool = False
    allow_reporter: bool = False
    # A repeated delegation (200) points at the one successor too, not only the first (201).
    always_locate: bool = False

    @property
    def template(self) -> str:
        return "assignments/{id}" + (f"/{self.action}" if self.action else "")


ROUTES = (
    LifecycleRoute("post_progress_event", "events", services.record_event, allow_reporter=True),
    LifecycleRoute("complete_assignment", "complete", services.complete_assignment, body_optional=True),
    LifecycleRoute("reject_assignment", "reject", services.reject_assignment, body_optional=True),
    LifecycleRoute("cancel_assignment", "cancel", services.cancel_assignment, body_optional=True),
    LifecycleRoute("reassign_assignment", "reassign", services.reassign_assignment),
    LifecycleRoute("delegate_assignment", "delegate", services.delegate_assignment, always_locate=True),
    # RFC 7396 merge patch; plain JSON is read the same way, as clients often send it.
    LifecycleRoute(
        "edit_assignment",
        None,
        services.edit_assignment,
        method=func.HttpMethod.PATCH,
        body_types=MERGE_PATCH_TYPES + JSON_TYPES,
    ),
)


def _register(route: LifecycleRoute) -> None:
    @http_function(bp, route.function_name, route.method, route.template)
    def handle(req: func.HttpRequest) -> func.HttpResponse:
        return run_use_case(
            req,
            route.use_case,
            body_types=route.body_types,
            body_optional=route.body_optional,
            allow_reporter=route.allow_reporter,
            always_locate=route.always_locate,
        )


for _route in ROUTES:
    _register(_route)
