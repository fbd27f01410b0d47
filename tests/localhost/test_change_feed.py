"""Cosmos DB trigger functions fed from the emulator's change feed: order, batches, leases, failures."""

import base64
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Protocol, cast

import pytest
from azure.cosmos import ContainerProxy, DatabaseProxy, PartitionKey
from azure.storage.queue import QueueClient

from core.bootstrap import Runtime
from core.cosmos.client import make_cosmos_client
from core.settings import Settings
from localhost.app_settings import AppSettings, BindingConfigError, CosmosConnection
from localhost.change_feed import ChangeFeedListener, CosmosTriggerBinding
from localhost.indexing import IndexedFunction
from localhost.invocation import FunctionInvoker
from localhost.probe_app import FEED, FEED_POLL_DELAY_MS, RETRY_FEED
from localhost.retry import RetryPolicy, RetryState
from tests.localhost.conftest import probe_functions

FEED_PROBE = "localhost.probe_app"


@pytest.fixture
def database(runtime: Runtime, settings: Settings) -> DatabaseProxy:
    client = make_cosmos_client(settings.cosmos_endpoint, settings.cosmos_key)
    return client.create_database_if_not_exists(settings.cosmos_database)


@pytest.fixture
def container(database: DatabaseProxy) -> ContainerProxy:
    return database.create_container(f"feed-{uuid.uuid4().hex[:10]}", partition_key=PartitionKey("/pk"))


@pytest.fixture
def binding(settings: Settings, container: ContainerProxy) -> CosmosTriggerBinding:
    connection = CosmosConnection(settings.cosmos_endpoint, settings.cosmos_key)
    return CosmosTriggerBinding(
        function_name="feed_probe",
        connection=connection,
        database=settings.cosmos_database,
        container=container.id,
        lease_connection=connection,
        lease_database=settings.cosmos_database,
        lease_container=f"leases-{uuid.uuid4().hex[:10]}",
        lease_prefix="test-",
        create_lease_container=True,
        max_items=100,
        poll_delay_seconds=FEED_POLL_DELAY_MS / 1000,
        start_from_beginning=True,
        start_from_time=None,
    )


@pytest.fixture
def invoker(app_settings: dict[str, str]) -> FunctionInvoker:
    (function,) = probe_functions(FEED_PROBE, "feed_probe")
    return FunctionInvoker(function, AppSettings(app_settings))


@pytest.fixture
def listeners() -> Iterator[list[ChangeFeedListener]]:
    started: list[ChangeFeedListener] = []
    yield started
    for listener in started:
        listener.stop()


class StartListener(Protocol):
    def __call__(self, binding: CosmosTriggerBinding, *, poll: bool = False) -> ChangeFeedListener: ...


@pytest.fixture
def start(listeners: list[ChangeFeedListener], invoker: FunctionInvoker) -> StartListener:
    """Starts a listener of `binding` calling the probe, stopped after the test. With `poll`, it is only opened:
    the test drives it with `poll_once()`."""

    def start_listener(binding: CosmosTriggerBinding, *, poll: bool = False) -> ChangeFeedListener:
        listener = ChangeFeedListener(binding, invoker)
        if poll:
            listener.open()
        else:
            listener.start()
            listeners.append(listener)
        return listener

    return start_listener


def batches_of(run: str) -> list[list[dict[str, Any]]]:
    return [batch for _, batch in FEED.entries() if batch and batch[0].get("run") == run]


def write(container: ContainerProxy, run: str, *names: str, **fields: Any) -> None:
    for name in names:
        container.upsert_item({"id": f"{run}-{name}", "pk": name, "run": run, **fields})


def ids(batches: list[list[dict[str, Any]]], run: str) -> list[list[str]]:
    return [[document["id"].removeprefix(f"{run}-") for document in batch] for batch in batches]


def test_the_binding_resolves_from_the_functions_own_metadata(app_settings: dict[str, str], settings: Settings) -> None:
    (function,) = probe_functions(FEED_PROBE, "feed_probe")
    binding = CosmosTriggerBinding.from_raw(function.name, function.trigger, AppSettings(app_settings))
    assert binding.connection == CosmosConnection(settings.cosmos_endpoint, settings.cosmos_key)
    assert (binding.database, binding.container) == (settings.cosmos_database, settings.cosmos_assignments_container)
    assert (binding.lease_database, binding.lease_container) == (
        settings.cosmos_database,
        settings.cosmos_leases_container,
    )
    assert binding.lease_prefix == "feed-probe-"
    assert binding.create_lease_container
    assert binding.poll_delay_seconds == FEED_POLL_DELAY_MS / 1000
    assert binding.max_items == 100
    assert not binding.start_from_beginning


def test_an_unknown_connection_setting_is_refused(app_settings: dict[str, str]) -> None:
    (function,) = probe_functions(FEED_PROBE, "feed_probe")
    settings = AppSettings({k: v for k, v in app_settings.items() if not k.startswith("CosmosDB")})
    with pytest.raises(BindingConfigError, match="set the app setting CosmosDB"):
        CosmosTriggerBinding.from_raw(function.name, function.trigger, settings)


def test_modification_order_in_batches_of_at_most_max_items(
    container: ContainerProxy, binding: CosmosTriggerBinding, start: StartListener
) -> None:
    run = uuid.uuid4().hex
    write(container, run, "a", "b", "c", "d", "e")
    write(container, run, "a", touched=True)  # the latest version of `a` now comes last
    listener = start(replace(binding, max_items=2), poll=True)
    assert listener.poll_once() == 5
    assert ids(batches_of(run), run) == [["b", "c"], ["d", "e"], ["a"]]
    assert batches_of(run)[-1][0]["touched"] is True


def test_a_restart_resumes_from_the_lease(
    container: ContainerProxy, binding: CosmosTriggerBinding, start: StartListener, database: DatabaseProxy
) -> None:
    run = uuid.uuid4().hex
    write(container, run, "a", "b")
    start(binding, poll=True).poll_once()
    write(container, run, "c")
    assert start(binding, poll=True).poll_once() == 1
    assert ids(batches_of(run), run) == [["a", "b"], ["c"]]
    lease = database.get_container_client(binding.lease_container).read_item(binding.lease_id, binding.lease_id)
    assert lease["ContinuationToken"]
    assert binding.lease_id == f"test-feed_probe.{binding.database}.{binding.container}"


def test_a_second_host_on_the_same_lease_never_moves_it_backwards(
    container: ContainerProxy,
    binding: CosmosTriggerBinding,
    invoker: FunctionInvoker,
    listeners: list[ChangeFeedListener],
    start: StartListener,
    database: DatabaseProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = uuid.uuid4().hex
    leases = database.get_container_client(binding.lease_container)
    write(container, run, "a")
    ahead = start(binding, poll=True)
    ahead.poll_once()
    leases_seen: list[str] = []

    def observing(batch: Any, *, reason: str) -> None:
        leases_seen.append(leases.read_item(binding.lease_id, binding.lease_id)["ContinuationToken"])
        invoker(batch, reason=reason)

    behind = ChangeFeedListener(replace(binding, max_items=1), cast(FunctionInvoker, observing))
    behind.open()  # it holds the lease as it is now: after "a"
    listeners.append(behind)
    write(container, run, "b", "c")
    ahead.poll_once()
    newest = leases.read_item(binding.lease_id, binding.lease_id)["ContinuationToken"]
    # `behind` delivers "b" and "c" again (at least once), one per page. Its checkpoint after "b" is older
    # than the lease: it must lose to the newer lease, so the lease is never seen to go backwards.
    behind.poll_once()
    assert leases_seen == [newest, newest]
    assert leases.read_item(binding.lease_id, binding.lease_id)["ContinuationToken"] == newest
    assert "advanced by another host" in caplog.text


def test_when_the_function_raises_the_checkpoint_still_advances_and_it_is_logged(
    container: ContainerProxy, binding: CosmosTriggerBinding, start: StartListener, caplog: pytest.LogCaptureFixture
) -> None:
    run = uuid.uuid4().hex
    write(container, run, "bad", failProbe=True)
    listener = start(binding, poll=True)
    with caplog.at_level(logging.ERROR):
        assert listener.poll_once() == 1
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR and "feed_probe FAILED" in r.getMessage()]
    assert "will NOT be retried" in record.getMessage()
    assert record.exc_info is not None
    write(container, run, "good")
    assert listener.poll_once() == 1
    assert start(binding, poll=True).poll_once() == 0  # a restart does not redeliver either
    assert ids(batches_of(run), run) == [["bad"], ["good"]]


def test_without_a_lease_it_starts_from_now(
    container: ContainerProxy, binding: CosmosTriggerBinding, start: StartListener
) -> None:
    run = uuid.uuid4().hex
    write(container, run, "before")
    start(replace(binding, start_from_beginning=False))
    write(container, run, "after")
    FEED.wait_for(lambda _: batches_of(run))
    assert ids(batches_of(run), run) == [["after"]]


def test_the_lease_container_must_exist_unless_the_binding_creates_it(
    binding: CosmosTriggerBinding, start: StartListener
) -> None:
    with pytest.raises(BindingConfigError, match=r"lease container .* does not exist"):
        start(replace(binding, create_lease_container=False))


def test_the_monitored_container_must_exist(binding: CosmosTriggerBinding, start: StartListener) -> None:
    with pytest.raises(BindingConfigError, match=r"monitored container .* does not exist"):
        start(replace(binding, container="no-such-container"))


def test_the_functions_queue_output_gets_each_batch(
    container: ContainerProxy, binding: CosmosTriggerBinding, start: StartListener, app_settings: dict[str, str]
) -> None:
    run = uuid.uuid4().hex
    write(container, run, "a", "b")
    start(binding, poll=True).poll_once()
    queue = QueueClient.from_connection_string(app_settings["AzureWebJobsStorage"], app_settings["FEED_PROBE_QUEUE"])
    (message,) = list(queue.receive_messages())
    assert json.loads(base64.b64decode(message.content)) == [f"{run}-a", f"{run}-b"]


@pytest.fixture
def retry_function() -> IndexedFunction:
    (function,) = probe_functions(FEED_PROBE, "retry_feed_probe")
    return function


def retry_calls(run: str) -> list[dict[str, Any]]:
    return [call for _, call in RETRY_FEED.entries() if call["batch"] and call["batch"][0].get("run") == run]


def lease_token(database: DatabaseProxy, binding: CosmosTriggerBinding) -> str:
    leases = database.get_container_client(binding.lease_container)
    return str(leases.read_item(binding.lease_id, binding.lease_id)["ContinuationToken"])


def observed(invoker: FunctionInvoker, before_each_call: Any) -> FunctionInvoker:
    def call(value: Any, *, reason: str, retry: RetryState | None = None) -> Any:
        before_each_call()
        return invoker(value, reason=reason, retry=retry)

    return cast(FunctionInvoker, call)


def test_a_retry_policy_calls_again_with_the_same_batch_before_the_checkpoint_moves(
    container: ContainerProxy,
    binding: CosmosTriggerBinding,
    retry_function: IndexedFunction,
    app_settings: dict[str, str],
    database: DatabaseProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert retry_function.retry == RetryPolicy("fixed_delay", 2, delay_interval=0)
    binding = replace(binding, function_name=retry_function.name)
    run = uuid.uuid4().hex
    write(container, run, "first")
    leases_seen: list[str] = []
    invoker = FunctionInvoker(retry_function, AppSettings(app_settings))
    watching = observed(invoker, lambda: leases_seen.append(lease_token(database, binding)))
    listener = ChangeFeedListener(binding, invoker, retry=retry_function.retry)
    listener.open()
    assert listener.poll_once() == 1  # "first" succeeds: the lease is now after it
    before = lease_token(database, binding)
    write(container, run, "bad", failTries=99, nested={"n": 1})
    listener = ChangeFeedListener(binding, watching, retry=retry_function.retry)
    listener.open()
    with caplog.at_level(logging.WARNING):
        assert listener.poll_once() == 1
    calls = [call for call in retry_calls(run) if call["batch"][0]["id"] == f"{run}-bad"]
    assert [call["retry_count"] for call in calls] == [0, 1, 2]  # the first call and max_retry_count retries
    assert {call["max_retry_count"] for call in calls} == {2}
    failures = ["retry_feed_probe fails try 0", "retry_feed_probe fails try 1"]
    assert [call["previous"] for call in calls] == [None, *failures]
    assert calls[1]["batch"] == calls[0]["batch"] == calls[2]["batch"]  # the same batch, unchanged by earlier calls
    assert calls[2]["batch"][0]["nested"] == {"n": 1}
    assert leases_seen == [before, before, before]  # the lease waited for the retries
    assert lease_token(database, binding) != before  # and then advanced, the batch failed for good
    (failure,) = [r for r in caplog.records if r.levelno == logging.ERROR and "FAILED" in r.getMessage()]
    assert "and 2 retries; the checkpoint advances and the batch will NOT be retried" in failure.getMessage()
    waits = [r.getMessage() for r in caplog.records if "before retrying function execution" in r.getMessage()]
    assert len(waits) == 2
    restarted = ChangeFeedListener(binding, invoker, retry=retry_function.retry)
    restarted.open()
    assert restarted.poll_once() == 0


def test_a_batch_that_succeeds_on_a_retry_is_delivered_once_and_not_lost(
    container: ContainerProxy,
    binding: CosmosTriggerBinding,
    retry_function: IndexedFunction,
    app_settings: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    binding = replace(binding, function_name=retry_function.name)
    run = uuid.uuid4().hex
    write(container, run, "a", "b", failTries=1)
    listener = ChangeFeedListener(
        binding, FunctionInvoker(retry_function, AppSettings(app_settings)), retry=retry_function.retry
    )
    listener.open()
    with caplog.at_level(logging.ERROR):
        assert listener.poll_once() == 2
    assert [call["retry_count"] for call in retry_calls(run)] == [0, 1]
    assert not [r for r in caplog.records if r.levelno == logging.ERROR]
    queue = QueueClient.from_connection_string(app_settings["AzureWebJobsStorage"], app_settings["FEED_PROBE_QUEUE"])
    (message,) = list(queue.receive_messages())  # the output binding of the call that succeeded, only
    assert json.loads(base64.b64decode(message.content)) == [f"{run}-a", f"{run}-b"]


def test_a_stop_while_waiting_to_retry_leaves_the_lease_so_a_restart_delivers_the_batch_again(
    container: ContainerProxy,
    binding: CosmosTriggerBinding,
    retry_function: IndexedFunction,
    app_settings: dict[str, str],
    listeners: list[ChangeFeedListener],
) -> None:
    binding = replace(binding, function_name=retry_function.name)
    invoker = FunctionInvoker(retry_function, AppSettings(app_settings))
    run = uuid.uuid4().hex
    write(container, run, "slow", failTries=99)
    waiting = ChangeFeedListener(binding, invoker, retry=RetryPolicy("fixed_delay", 3, delay_interval=3600))
    waiting.start()
    listeners.append(waiting)
    RETRY_FEED.wait_for(lambda _: retry_calls(run))  # the first call failed; an hour's wait for its retry began
    waiting.stop()
    restarted = ChangeFeedListener(binding, invoker, retry=RetryPolicy("fixed_delay", 0, delay_interval=0))
    restarted.open()
    assert restarted.poll_once() == 1
    assert [call["retry_count"] for call in retry_calls(run)] == [0, 0]
