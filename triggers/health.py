"""GET /health: anonymous, and it really asks Cosmos and Storage."""

import json

import azure.functions as func

from core.bootstrap import get_runtime
from core.health import check_health
from triggers.http_support import http_function

bp = func.Blueprint()


@http_function(bp, "health", func.HttpMethod.GET, "health")
def health(req: func.HttpRequest) -> func.HttpResponse:
    report = check_health(get_runtime().health_probes())
    return func.HttpResponse(
        json.dumps(report.to_json()), status_code=200 if report.healthy else 503, mimetype="application/json"
    )
