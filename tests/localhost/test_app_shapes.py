"""The trigger shapes function_app.py is about to use index as the worker indexes them and run on the local host."""

import importlib
import typing

import azure.functions as func
import pytest

from core.bootstrap import Runtime
from localhost.indexing import IndexingError, index_functions, index_module
from localhost.retry import RetryPolicy
from tests.localhost.conftest import StartHost


def test_the_coming_trigger_shapes_index_and_run(
    start_host: StartHost, runtime: Runtime, app_settings: dict[str, str]
) -> None:
    runtime.store  # noqa: B018 - the containers exist before the listener starts, as the run command ensures
    functions = {f.name: f for f in index_module(importlib.import_module("tests.localhost.shapes_app"))}
    projection, retry, sweep = (functions[n] for n in ("shapes_projection", "shapes_projection_retry", "shapes_sweep"))
    assert projection.trigger["startFromBeginning"] is True
    assert projection.trigger["leaseContainerName"] == "%COSMOS_LEASES_CONTAINER%"
    assert projection.retry == RetryPolicy("exponential_backoff", 5, minimum_interval=1, maximum_interval=60)
    assert retry.trigger["queueName"] == "%PROJECTION_RETRY_QUEUE%"
    assert sweep.retry == RetryPolicy("fixed_delay", 2, delay_interval=10)
    settings = {**app_settings, "PROJECTION_RETRY_QUEUE": "projection-retry"}
    host = start_host(list(functions.values()), settings=settings)
    database, container = app_settings["COSMOS_DATABASE"], app_settings["COSMOS_ASSIGNMENTS_CONTAINER"]
    assert sorted(host.descriptions) == [
        f"shapes_projection: cosmosDBTrigger on {database}/{container}; retry exponential_backoff, 5 retries, "
        "1 s to 60 s apart",
        "shapes_projection_retry: queueTrigger on projection-retry (poison: projection-retry-poison)",
        f"shapes_sweep: timerTrigger ({app_settings['SWEEP_SCHEDULE']}); retry fixed_delay, 2 retries, 10 s apart",
    ]


def test_a_list_output_must_be_typing_list_not_the_builtin_generic() -> None:
    """The worker checks `func.Out[X]` with the binding's `check_output_type_annotation(X)`, which accepts
    `typing.List[str]` but not `list[str]` (typing_inspect does not see the builtin generic as generic)."""
    builtin, legacy = func.FunctionApp(), func.FunctionApp()

    @builtin.timer_trigger(arg_name="timer", schedule="0 * * * * *")
    @builtin.queue_output(arg_name="out", queue_name="q", connection="AzureWebJobsStorage")
    def with_builtin(timer: func.TimerRequest, out: func.Out[list[str]]) -> None: ...

    @legacy.timer_trigger(arg_name="timer", schedule="0 * * * * *")
    @legacy.queue_output(arg_name="out", queue_name="q", connection="AzureWebJobsStorage")
    def with_typing(timer: func.TimerRequest, out: func.Out[typing.List[str]]) -> None: ...  # noqa: UP006

    with pytest.raises(IndexingError, match=r"out: .*list\[str\].* does not suit a queue binding"):
        index_functions(builtin)
    assert index_functions(legacy)


def test_only_a_context_parameter_that_is_no_binding_gets_the_invocations_context() -> None:
    """The worker's rule: an output binding that happens to be named `context` is that binding, not the Context."""
    app = func.FunctionApp()

    @app.timer_trigger(arg_name="timer", schedule="0 * * * * *")
    def with_context(timer: func.TimerRequest, context: func.Context) -> str:
        return context.function_name

    @app.timer_trigger(arg_name="timer", schedule="0 * * * * *")
    @app.queue_output(arg_name="context", queue_name="q", connection="AzureWebJobsStorage")
    def with_binding(timer: func.TimerRequest, context: func.Out[str]) -> None: ...

    @app.timer_trigger(arg_name="timer", schedule="0 * * * * *")
    def without(timer: func.TimerRequest) -> None: ...

    functions = {f.name: f for f in index_functions(app)}
    assert {name: f.takes_context for name, f in functions.items()} == {
        "with_context": True,
        "with_binding": False,
        "without": False,
    }
    assert functions["with_context"].call(timer=None) == "with_context"
