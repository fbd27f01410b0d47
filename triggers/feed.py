"""The change feed of the assignments container: the projector keeps the views, the notifier sends one
message per event. Thin: parse the batch, call one use case, hand failed documents to the retry queue, log.

The Cosmos DB trigger checkpoints even when the function raises (FACTS: webjobs extension issues 716, 723,
837), so a failure must never be left to the trigger: a document that fails goes to the retry queue, apart
from its batch, and the queue trigger retries it (then poisons it after `maxDequeueCount`). Only when even
that queue is unreachable does the function raise; its retry policy then runs the same batch again, which
is safe because projection and notification are idempotent.
"""

import json
import logging
import typing

import azure.functions as func

from core import telemetry
from core.bootstrap import get_runtime
from core.services.projection import ChangeRef, handle_changes, retry_change

bp = func.Blueprint()
log = logging.getLogger("assignments.feed")


def assignments_feed(lease_container_prefix: str) -> dict[str, typing.Any]:
    """The Cosmos DB trigger arguments that watch the assignments container, as the names of the settings the host
    resolves (nothing is read at import). The probe and shape apps of the local host's tests watch it with these
    too, so they test what is deployed. Each function needs a lease prefix of its own: functions sharing leases
    would split the feed between them instead of each reading all of it."""
    return {
        "connection": "CosmosDB",
        "database_name": "%COSMOS_DATABASE%",
        "container_name": "%COSMOS_ASSIGNMENTS_CONTAINER%",
        "lease_container_name": "%COSMOS_LEASES_CONTAINER%",
        "lease_container_prefix": lease_container_prefix,
    }


@bp.function_name("project_changes")
@bp.cosmos_db_trigger(
    arg_name="documents",
    **assignments_feed("views-"),
    create_lease_container_if_not_exists=True,
    # A first deployment projects what exists already. (The library types this flag as a time; the host
    # reads the boolean the binding carries.)
    start_from_beginning=True,  # type: ignore[arg-type]
    # An idle feed is read again after this many ms (the host's default is 5000): views catch up within a
    # second (docs/api-rules.md, "Lists, views and history"), for an empty read every half second per lease.
    feed_poll_delay=500,
)
@bp.retry(strategy="exponential_backoff", max_retry_count="8", minimum_interval="00:00:01", maximum_interval="00:01:00")
@bp.queue_output(arg_name="retries", queue_name="%CHANGES_RETRY_QUEUE%", connection="AzureWebJobsStorage")
# `typing.List`, not `list`: the binding registry's check recognises only typing's generics.
def project_changes(
    documents: func.DocumentList,
    retries: func.Out[typing.List[str]],  # noqa: UP006
    context: func.Context,
) -> None:
    with telemetry.invocation_of(context):
        result = handle_changes([document.to_dict() for document in documents], get_runtime().feed_deps())
        if result.failed:
            retries.set([json.dumps(ref.to_json()) for ref in result.failed])
        log.info(
            "change feed batch: %d documents, %d projected, %d skipped, %d notified, %d sent to retry",
            len(documents),
            result.projected,
            result.skipped,
            result.notified,
            len(result.failed),
        )


@bp.function_name("retry_changes")
@bp.queue_trigger(arg_name="message", queue_name="%CHANGES_RETRY_QUEUE%", connection="AzureWebJobsStorage")
def retry_changes(message: func.QueueMessage, context: func.Context) -> None:
    with telemetry.invocation_of(context):
        ref = ChangeRef.from_json(json.loads(message.get_body()))
        result = retry_change(ref, get_runtime().feed_deps())
        log.info(
            "retried %s %s (attempt %d): %d projected, %d notified",
            ref.doc_type,
            ref.id,
            message.dequeue_count or 0,
            result.projected,
            result.notified,
        )
