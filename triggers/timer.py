"""The timer: expiry, expiry warnings and reminders, every `%SWEEP_SCHEDULE%`; and `POST /ops/sweep`, the
same sweep on an admin's request. Thin: run one use case, log its counts."""

import json
import logging

import azure.functions as func

from core import telemetry
from core.auth import require_admin
from core.bootstrap import get_runtime
from core.models import RequestModel
from core.services.pipeline import parse_model
from core.services.sweep import sweep
from triggers.http_support import authenticate, http_function, json_body, json_response

bp = func.Blueprint()
log = logging.getLogger("assignments.timer")


class SweepRequest(RequestModel):
    """The body of `POST /ops/sweep`: none, or `{}`; any field is unknown (422)."""


@bp.function_name("sweep_due")
@bp.timer_trigger(arg_name="timer", schedule="%SWEEP_SCHEDULE%", run_on_startup=False)
def sweep_due(timer: func.TimerRequest, context: func.Context) -> None:
    # The host's invocation as the current trace context: the sweep's Cosmos DB calls and its counts join its
    # operation in Application Insights (core/telemetry.py).
    with telemetry.invocation_of(context):
        if timer.past_due:
            # The host missed occurrences (a restart, a long sweep): one sweep catches up on everything due.
            log.warning("sweep: the timer is past due; sweeping what is due now")
        result = sweep(get_runtime().sweep_deps())
        log.info("sweep (timer): %s", json.dumps(result.to_json()))


@http_function(bp, "run_sweep", func.HttpMethod.POST, "ops/sweep")
def run_sweep(req: func.HttpRequest) -> func.HttpResponse:
    principal, runtime = authenticate(req)
    require_admin(principal)
    # No body, or `{}`; anything else is refused like any other body (400 not an object, 422 a field).
    parse_model(SweepRequest, json_body(req, allow_empty=True) or {})
    result = sweep(runtime.sweep_deps())
    log.info("sweep (ops): %s", json.dumps(result.to_json()))
    return json_response(result.to_json())
