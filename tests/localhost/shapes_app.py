"""The binding shapes function_app.py is about to use, on a blueprint as function_app.py registers them: a Cosmos DB
trigger on the assignments container from the beginning, with its lease container from a setting and a retry
policy; a queue trigger on a `%SETTING%` queue with a queue output; a timer on `%SWEEP_SCHEDULE%` with a retry
policy. test_app_shapes.py checks that they index and run on the local host.

`func.Out[list[str]]` would not index (the worker's check wants `typing.List[str]`, see test_app_shapes.py)."""

import azure.functions as func

from triggers.feed import assignments_feed

bp = func.Blueprint()


@bp.function_name("shapes_projection")
@bp.retry(strategy="exponential_backoff", max_retry_count="5", minimum_interval="00:00:01", maximum_interval="00:01:00")
@bp.cosmos_db_trigger(
    arg_name="documents",
    **assignments_feed("shapes-"),
    start_from_beginning=True,  # type: ignore[arg-type]  # azure-functions 1.26 annotates it datetime.time
)
@bp.queue_output(arg_name="retries", queue_name="%PROJECTION_RETRY_QUEUE%", connection="AzureWebJobsStorage")
def shapes_projection(documents: func.DocumentList, retries: func.Out[str]) -> None:
    return None


@bp.function_name("shapes_projection_retry")
@bp.queue_trigger(arg_name="message", queue_name="%PROJECTION_RETRY_QUEUE%", connection="AzureWebJobsStorage")
def shapes_projection_retry(message: func.QueueMessage) -> None:
    return None


@bp.function_name("shapes_sweep")
@bp.retry(strategy="fixed_delay", max_retry_count="2", delay_interval="00:00:10")
@bp.timer_trigger(arg_name="timer", schedule="%SWEEP_SCHEDULE%", run_on_startup=False, use_monitor=True)
def shapes_sweep(timer: func.TimerRequest, context: func.Context) -> None:
    return None


app = func.FunctionApp()
app.register_functions(bp)
