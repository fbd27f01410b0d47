"""The notifications queue: the port the notifier sends through, and its Azure Storage adapter.

Messages are base64, as the Functions queue trigger reads them (docs/api-rules.md, "Events and
notifications"). The queue is created at first use.
"""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any, Protocol

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from core.errors import ServiceUnavailable

# A queue message may be 64 KiB; base64 grows a body by a third, so messages stay under 48 KiB before it.
MAX_MESSAGE_BYTES = 48 * 1024


class MessageQueue(Protocol):
    def send(self, message: dict[str, Any]) -> None:
        """Put one message on the queue; `ServiceUnavailable` when Storage does not take it."""
        ...


class CreateQueueOnce:
    """Creates a client's queue the first time it is called, however many threads call it; a queue that exists
    already is fine. Later calls cost nothing, so a sender may call it before every send."""

    def __init__(self, client: QueueClient) -> None:
        self._client = client
        self._created = False
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            if self._created:
                return
            with contextlib.suppress(ResourceExistsError):
                self._client.create_queue()
            self._created = True


class StorageQueue:
    def __init__(self, client: QueueClient) -> None:
        self._client = client
        self._ensure = CreateQueueOnce(client)

    @classmethod
    def build(
        cls, queue_name: str, *, connection_string: str | None, account_url: str | None, credential: Any
    ) -> StorageQueue:
        encode = TextBase64EncodePolicy()
        if connection_string:
            return cls(QueueClient.from_connection_string(connection_string, queue_name, message_encode_policy=encode))
        assert account_url is not None, "a queue needs a connection string or an account"
        return cls(QueueClient(account_url, queue_name, credential=credential, message_encode_policy=encode))

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        if len(body.encode()) > MAX_MESSAGE_BYTES:
            raise ValueError(f"a notification of {len(body.encode())} bytes exceeds {MAX_MESSAGE_BYTES}")
        try:
            self._ensure()
            self._client.send_message(body)
        except AzureError as error:
            raise ServiceUnavailable("The notifications queue is unavailable", retry_after=5) from error
