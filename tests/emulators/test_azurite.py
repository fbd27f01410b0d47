"""Azurite: the queue service our triggers use can be reached with azure-storage-queue."""

from __future__ import annotations

import uuid

from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from tests.support.services import RunningService


def test_a_queue_message_can_be_sent_and_received(azurite_service: RunningService) -> None:
    # Base64 bodies, as the Functions queue trigger expects.
    queue = QueueClient.from_connection_string(
        azurite_service.connection_string,
        f"q-{uuid.uuid4().hex[:12]}",
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )
    queue.create_queue()
    queue.send_message('{"hello": "world"}')

    messages = list(queue.receive_messages(max_messages=5, visibility_timeout=5))

    assert [message.content for message in messages] == ['{"hello": "world"}']
    queue.delete_message(messages[0])
    assert list(queue.peek_messages()) == []


def test_the_service_exposes_explicit_endpoints(azurite_service: RunningService) -> None:
    for name in ("blob", "queue", "table"):
        assert f"{name.capitalize()}Endpoint={azurite_service.endpoints[name]};" in azurite_service.connection_string
    assert azurite_service.is_running()
