"""Queue trigger functions fed from Azurite as the host feeds them: base64 bodies and message metadata, deletion on
success, visibilityTimeout and maxDequeueCount, the poison queue, batchSize/newBatchThreshold, and host.json
`extensions.queues`."""

import base64
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from localhost.app_settings import AppSettings, BindingConfigError
from localhost.host import HOST_JSON, LocalHost
from localhost.host_json import HostJson, QueuesOptions, read_host_json
from localhost.invocation import QueueOutput
from localhost.probe_app import QUEUE, QUEUE_CONCURRENCY, QUEUE_GATE, QueueCall
from localhost.queues import QueueListener, QueueTriggerBinding, QueueWatcher, decode_body
from tests.localhost.conftest import StartHost, probe_functions
from tests.support.polling import eventually

PROBE = "localhost.probe_app"
T = TypeVar("T")
WriteHostJson = Callable[..., Path]


def wait_until(condition: Callable[[], T | None]) -> T:
    """Poll `condition` until it is truthy; fail after ten seconds."""
    return eventually(condition, "the condition", timeout=10.0, interval=0.05)


@pytest.fixture
def host_json(tmp_path: Path) -> WriteHostJson:
    """Write a host.json like the repository's, with these `extensions.queues` settings."""

    def write(**queues: Any) -> Path:
        path = tmp_path / "host.json"
        document = json.loads(HOST_JSON.read_text())
        document["extensions"]["queues"] = queues
        path.write_text(json.dumps(document))
        return path

    return write


@pytest.fixture
def queue_name(app_settings: dict[str, str]) -> str:
    return app_settings["QUEUE_PROBE_QUEUE"]


@pytest.fixture
def sender(app_settings: dict[str, str], queue_name: str) -> QueueClient:
    """Sends as a producer must for the Functions queue trigger: base64 (FACTS.md)."""
    return QueueClient.from_connection_string(
        app_settings["AzureWebJobsStorage"], queue_name, message_encode_policy=TextBase64EncodePolicy()
    )


@pytest.fixture
def raw(app_settings: dict[str, str]) -> Callable[[str], QueueClient]:
    """A client that sends and reads message content as stored."""
    return lambda name: QueueClient.from_connection_string(app_settings["AzureWebJobsStorage"], name)


@pytest.fixture
def poison(raw: Callable[[str], QueueClient], queue_name: str) -> QueueClient:
    """The probe queue's poison queue, read as stored."""
    return raw(f"{queue_name}-poison")


@pytest.fixture
def gate() -> Iterator[None]:
    QUEUE_GATE.clear()
    QUEUE_CONCURRENCY.reset()
    yield
    QUEUE_GATE.set()  # never leave a probe waiting


def start_queue_host(start_host: StartHost, path: Path) -> LocalHost:
    return start_host(probe_functions(PROBE, "queue_probe"), host_json=path)


def calls_of(run: str) -> list[QueueCall]:
    return [call for _, call in QUEUE.entries() if call.fields.get("run") == run]


def queue_exists(client: QueueClient) -> bool:
    try:
        client.get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True


def message_count(client: QueueClient) -> int:
    """Visible and invisible messages (Azurite counts exactly)."""
    return client.get_queue_properties().approximate_message_count or 0


# host.json extensions.queues


def test_queue_options_default_as_the_extension_does() -> None:
    assert QueuesOptions.from_section({}, processor_count=1) == QueuesOptions(16, 8, 60.0, 0.0, 5, "base64")
    assert QueuesOptions.from_section({}, processor_count=4).new_batch_threshold == 32
    assert QueuesOptions.from_section({"batchSize": 5}, processor_count=2).new_batch_threshold == 4
    assert read_host_json(HOST_JSON) == HostJson(route_prefix="", queues=QueuesOptions.from_section({}))


def test_queue_options_are_read_whatever_the_case_with_timespans() -> None:
    options = QueuesOptions.from_section(
        {
            "BatchSize": 1,
            "newbatchthreshold": 0,
            "maxPollingInterval": "00:00:00.500",
            "visibilityTimeout": "1.00:00:30",
            "MAXDEQUEUECOUNT": 2,
            "messageEncoding": "None",
        }
    )
    assert options == QueuesOptions(1, 0, 0.5, 86430.0, 2, "none")
    assert options.max_concurrency == 1


@pytest.mark.parametrize(
    ("section", "complaint"),
    [
        ({"batchSize": 33}, "batchSize must be 1 to 32"),
        ({"batchSize": 0}, "batchSize must be 1 to 32"),
        ({"newBatchThreshold": -1}, "must not be negative"),
        ({"maxDequeueCount": 0}, "maxDequeueCount must not be less than 1"),
        ({"maxPollingInterval": "00:00:00.050"}, "must not be less than 00:00:00.100"),
        ({"maxPollingInterval": 2000}, "a bare number would be days"),
        ({"visibilityTimeout": "30"}, "a bare number would be days"),
        ({"visibilityTimeout": "00:61:00"}, "not a valid TimeSpan"),
        ({"messageEncoding": "utf8"}, "'base64' or 'none'"),
        ({"batchSize": "many"}, "must be an integer"),
    ],
)
def test_queue_options_the_host_would_refuse_are_refused(section: dict[str, Any], complaint: str) -> None:
    with pytest.raises(BindingConfigError, match=complaint):
        QueuesOptions.from_section(section)


def test_an_unknown_queue_option_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        QueuesOptions.from_section({"maxDequeueCout": 3})
    assert "extensions.queues.maxDequeueCout is not a setting of the queues extension" in caplog.text


def test_a_host_level_retry_section_is_refused_not_ignored() -> None:
    document = {"version": "2.0", "retry": {"strategy": "fixedDelay", "maxRetryCount": 2}}
    with pytest.raises(BindingConfigError, match="does not implement host-level retry"):
        HostJson.from_document(document)


# The binding


def test_the_binding_resolves_its_setting_lower_cases_the_name_and_names_the_poison_queue() -> None:
    settings = AppSettings({"RETRY_QUEUE": "Projection-Retry", "AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    raw = {"name": "message", "type": "queueTrigger", "queueName": "%RETRY_QUEUE%", "connection": "Storage"}
    binding = QueueTriggerBinding.from_raw("retry", raw, settings)
    assert binding.queue_name == "projection-retry"
    assert binding.poison_queue_name == "projection-retry-poison"
    assert binding.connection_string == "UseDevelopmentStorage=true"  # "Storage" names AzureWebJobsStorage
    with pytest.raises(BindingConfigError, match="set the app setting RETRY_QUEUE"):
        QueueTriggerBinding.from_raw("retry", raw, AppSettings({"AzureWebJobsStorage": "x"}))
    for bad in ("ab", "a--b", "-ab", "x" * 64, "under_score"):
        with pytest.raises(BindingConfigError, match="not a valid queue name"):
            QueueTriggerBinding.from_raw("retry", {**raw, "queueName": bad}, settings)


def test_a_poison_queue_has_no_poison_queue_nor_has_a_name_too_long_for_the_suffix() -> None:
    settings = AppSettings({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    raw = {"name": "message", "type": "queueTrigger", "connection": "AzureWebJobsStorage"}
    assert QueueTriggerBinding.from_raw("f", {**raw, "queueName": "orders-poison"}, settings).poison_queue_name is None
    assert QueueTriggerBinding.from_raw("f", {**raw, "queueName": "q" * 57}, settings).poison_queue_name is None
    assert QueueTriggerBinding.from_raw("f", {**raw, "queueName": "q" * 56}, settings).poison_queue_name is not None


def test_bodies_are_base64_unless_the_encoding_is_none() -> None:
    assert decode_body("aGVs\nbG8=", "base64") == b"hello"
    assert decode_body("plain text", "none") == b"plain text"
    with pytest.raises(ValueError, match="not base64"):
        decode_body("plain text!", "base64")


def test_a_queue_output_wakes_the_listeners_of_its_queue(app_settings: dict[str, str], queue_name: str) -> None:
    watcher = QueueWatcher()
    woken: list[str] = []
    (function,) = probe_functions(PROBE, "queue_probe")
    listener = QueueListener(
        QueueTriggerBinding.from_raw(function.name, function.trigger, AppSettings(app_settings)),
        None,  # type: ignore[arg-type]  # never called here
        QueuesOptions(),
        watcher=watcher,
    )
    watcher.register(listener.queue_url, lambda: woken.append("listener"))
    QueueOutput(app_settings["AzureWebJobsStorage"], queue_name, on_sent=watcher.notify).send("hi")
    assert woken == ["listener"]


def test_a_queue_output_with_encoding_none_sends_text_as_it_is(
    app_settings: dict[str, str], queue_name: str, raw: Callable[[str], QueueClient]
) -> None:
    QueueOutput(app_settings["AzureWebJobsStorage"], queue_name, encoding="none").send(["héllo", b"bytes"])
    assert [m.content for m in raw(queue_name).peek_messages(max_messages=5)] == ["héllo", "bytes"]


# The trigger, over Azurite


def test_a_message_arrives_base64_decoded_with_its_metadata_and_success_deletes_it(
    start_host: StartHost, host_json: WriteHostJson, sender: QueueClient, queue_name: str
) -> None:
    sender.create_queue()
    host = start_queue_host(start_host, host_json())
    assert f"queue_probe: queueTrigger on {queue_name} (poison: {queue_name}-poison)" in host.descriptions
    run = uuid.uuid4().hex
    body = json.dumps({"run": run, "text": "héllo"})
    sent = sender.send_message(body)
    (call,) = QUEUE.wait_for(lambda _: calls_of(run))
    assert call.body == body.encode("utf-8")
    assert (call.id, call.dequeue_count) == (sent.id, 1)
    assert call.insertion_time == sent.inserted_on
    assert call.expiration_time == sent.expires_on
    assert call.time_next_visible is not None
    assert call.time_next_visible > sent.inserted_on
    assert call.pop_receipt
    wait_until(lambda: message_count(sender) == 0)


def test_a_failing_message_is_retried_then_moved_to_the_poison_queue_after_max_dequeue_count(
    start_host: StartHost,
    host_json: WriteHostJson,
    sender: QueueClient,
    poison: QueueClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender.create_queue()
    with pytest.raises(ResourceNotFoundError):
        poison.get_queue_properties()  # the host creates it when it first needs it
    start_queue_host(start_host, host_json(maxDequeueCount=3, visibilityTimeout="00:00:00"))
    run = uuid.uuid4().hex
    body = json.dumps({"run": run, "failTimes": 99})
    with caplog.at_level(logging.WARNING):
        sent = sender.send_message(body)
        (moved,) = wait_until(lambda: poison.peek_messages() if queue_exists(poison) else None)
        wait_until(lambda: message_count(sender) == 0)
    assert [call.dequeue_count for call in calls_of(run)] == [1, 2, 3]
    assert {call.id for call in calls_of(run)} == {sent.id}
    assert moved.content == base64.b64encode(body.encode()).decode()  # as it was stored: still base64
    assert "Message has reached MaxDequeueCount of 3. Moving message to queue" in caplog.text
    assert "(dequeue count 1 of maxDequeueCount 3): it is retried in 0 s" in caplog.text


def test_a_message_that_succeeds_on_its_second_dequeue_is_deleted_and_never_poisoned(
    start_host: StartHost, host_json: WriteHostJson, sender: QueueClient, poison: QueueClient
) -> None:
    sender.create_queue()
    start_queue_host(start_host, host_json(maxDequeueCount=3))
    run = uuid.uuid4().hex
    sender.send_message(json.dumps({"run": run, "failTimes": 1}))
    QUEUE.wait_for(lambda _: len(calls_of(run)) >= 2)
    wait_until(lambda: message_count(sender) == 0)
    assert [call.dequeue_count for call in calls_of(run)] == [1, 2]
    assert not queue_exists(poison)


def test_a_body_that_is_not_base64_goes_to_the_poison_queue_without_a_call(
    start_host: StartHost,
    host_json: WriteHostJson,
    queue_name: str,
    raw: Callable[[str], QueueClient],
    poison: QueueClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    plain = raw(queue_name)
    plain.create_queue()
    with caplog.at_level(logging.WARNING):
        sent = plain.send_message('{"run": "not encoded"}')
        start_queue_host(start_host, host_json())
        (moved,) = wait_until(lambda: poison.peek_messages() if queue_exists(poison) else None)
    assert moved.content == '{"run": "not encoded"}'
    wait_until(lambda: message_count(plain) == 0)
    assert not [call for _, call in QUEUE.entries() if call.id == sent.id]
    assert "Message decoding has failed! Check MessageEncoding settings" in caplog.text


def test_a_message_already_dequeued_more_than_max_dequeue_count_goes_to_the_poison_queue_without_a_call(
    start_host: StartHost, host_json: WriteHostJson, sender: QueueClient, poison: QueueClient
) -> None:
    sender.create_queue()
    sent = sender.send_message(json.dumps({"run": uuid.uuid4().hex}))
    for _ in range(2):  # another consumer took it twice and let it go
        taken = sender.receive_message(visibility_timeout=1)
        assert taken is not None
        sender.update_message(taken.id, taken.pop_receipt, visibility_timeout=0)
    start_queue_host(start_host, host_json(maxDequeueCount=2))
    wait_until(lambda: queue_exists(poison) and poison.peek_messages())
    wait_until(lambda: message_count(sender) == 0)
    assert not [call for _, call in QUEUE.entries() if call.id == sent.id]


def test_a_missing_queue_is_waited_for_not_created(
    start_host: StartHost,
    host_json: WriteHostJson,
    sender: QueueClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        start_queue_host(start_host, host_json())
    assert "does not exist. The host does not create a trigger's queue" in caplog.text
    assert not queue_exists(sender)  # still missing: the host never created it
    sender.create_queue()  # as the deployment would
    run = uuid.uuid4().hex
    sender.send_message(json.dumps({"run": run}))
    QUEUE.wait_for(lambda _: calls_of(run))


def test_at_most_batch_size_plus_new_batch_threshold_messages_are_processed_at_once(
    start_host: StartHost, host_json: WriteHostJson, sender: QueueClient, gate: None
) -> None:
    sender.create_queue()
    run = uuid.uuid4().hex
    for _ in range(5):
        sender.send_message(json.dumps({"run": run, "gate": True}))
    start_queue_host(start_host, host_json(batchSize=2, newBatchThreshold=0))
    wait_until(lambda: QUEUE_CONCURRENCY.now == 2)
    # Two are held; with newBatchThreshold 0 the listener fetches again only once both are done.
    assert len(sender.peek_messages(max_messages=32)) == 3
    QUEUE_GATE.set()
    QUEUE.wait_for(lambda _: len(calls_of(run)) == 5)
    wait_until(lambda: message_count(sender) == 0)
    assert QUEUE_CONCURRENCY.most == 2


def test_with_message_encoding_none_bodies_arrive_as_sent(
    start_host: StartHost, host_json: WriteHostJson, queue_name: str, raw: Callable[[str], QueueClient]
) -> None:
    plain = raw(queue_name)
    plain.create_queue()
    start_queue_host(start_host, host_json(messageEncoding="none"))
    run = uuid.uuid4().hex
    plain.send_message(json.dumps({"run": run}))
    (call,) = QUEUE.wait_for(lambda _: calls_of(run))
    assert call.body == json.dumps({"run": run}).encode()
