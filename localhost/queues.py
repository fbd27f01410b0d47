"""Queue trigger functions, fed from the Storage queue their binding names, as the Storage queues extension
(Microsoft.Azure.WebJobs.Extensions.Storage.Queues 5.x: `QueueListener`, `QueueProcessor`) feeds them.

- The queue name resolves `%SETTING%`, is lower-cased and must be a valid queue name. The connection is the setting
  the binding names (default `AzureWebJobsStorage`; `AzureWebJobs<name>` also answers for `<name>`).
- The host does not create a trigger's queue: it waits for it, polling with back-off. So does the local host, and it
  says so with a warning at start.
- Messages are received in batches of `batchSize`, invisible for 10 minutes (renewed at half time while the function
  runs). Each message is processed on a thread of its own; a new batch is fetched once no more than
  `newBatchThreshold` are still being processed, so at most `batchSize + newBatchThreshold` run at once.
- Bodies are base64, decoded before the call (`messageEncoding: none` passes them as they are). A body that does not
  decode is moved to the poison queue without a call, as the host does ("Message decoding has failed!").
- The function gets a `func.QueueMessage`: `get_body()`, `id`, `dequeue_count`, `insertion_time`,
  `expiration_time`, `time_next_visible`, `pop_receipt`.
- A call that succeeds deletes the message. A call that raises makes it visible again after `visibilityTimeout`
  (default 0), and its dequeue count grows when it is received again; when a call fails on a message already
  dequeued `maxDequeueCount` times, the message is copied to `<queue>-poison` (created if missing) and deleted.
  A message received with a dequeue count above `maxDequeueCount` goes to the poison queue without a call.
  A queue whose name ends in `-poison` (or is too long to take the suffix) has no poison queue: a failed message is
  then left invisible (10 minutes), not released, as the host does.
- An empty queue is polled with the host's randomized exponential back-off from 100 ms up to `maxPollingInterval`.
  Locally the wait never exceeds `LOCAL_MAX_POLLING_INTERVAL` (2 s, the documented local-development default of
  Core Tools), and a message this host's own queue output (or poison move) sends to the queue wakes the listener at
  once, as the host's shared queue watcher does.

Retry policies (`@app.retry`) do not apply to queue triggers: the host ignores them (with a warning).
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage as TriggerMessage  # what the worker hands a queue trigger
from azure.storage.queue import QueueClient
from azure.storage.queue import QueueMessage as StorageMessage

from localhost.app_settings import AppSettings, BindingConfigError
from localhost.backoff import RandomizedExponentialBackoff
from localhost.host_json import MIN_POLLING_INTERVAL, QueuesOptions
from localhost.invocation import FunctionInvoker
from localhost.listener_thread import STOP_TIMEOUT_S, ListenerThread

log = logging.getLogger("localhost.queues")

POISON_SUFFIX = "-poison"
RECEIVE_VISIBILITY_TIMEOUT_S = 600  # the host receives for 10 minutes and renews at half time while the call runs
LOCAL_MAX_POLLING_INTERVAL = 2.0
# 3-63 characters: lower-case letters, digits and single hyphens, starting and ending with a letter or digit.
_QUEUE_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")


def is_valid_queue_name(name: str) -> bool:
    return _QUEUE_NAME.match(name) is not None


def poison_queue_name(queue_name: str) -> str | None:
    """`<queue>-poison`, unless the queue is a poison queue itself or the name would be too long."""
    if queue_name.endswith(POISON_SUFFIX):
        return None
    candidate = queue_name + POISON_SUFFIX
    return candidate if is_valid_queue_name(candidate) else None


def decode_body(content: str, encoding: str) -> bytes:
    """A message's body as the function sees it; ValueError when it is not the base64 the host expects."""
    if encoding == "none":
        return content.encode("utf-8")
    try:
        return base64.b64decode("".join(content.split()), validate=True)
    except binascii.Error as error:
        raise ValueError(f"not base64: {error}") from None


class QueueWatcher:
    """The host's shared queue watcher: whoever sends to a queue in this host wakes the listeners of that queue."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Callable[[], None]]] = {}
        self._lock = threading.Lock()

    def register(self, queue_url: str, wake: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.setdefault(queue_url.rstrip("/").lower(), []).append(wake)

    def notify(self, queue_url: str) -> None:
        with self._lock:
            listeners = list(self._listeners.get(queue_url.rstrip("/").lower(), []))
        for wake in listeners:
            wake()


@dataclass(frozen=True)
class QueueTriggerBinding:
    """A `queueTrigger` binding with its settings resolved."""

    function_name: str
    queue_name: str
    connection_string: str

    @property
    def poison_queue_name(self) -> str | None:
        return poison_queue_name(self.queue_name)

    @classmethod
    def from_raw(cls, function_name: str, raw: Mapping[str, Any], settings: AppSettings) -> QueueTriggerBinding:
        where = f"function {function_name}, binding {raw['name']}"
        if not raw.get("queueName"):
            raise BindingConfigError(f"{where}: queueName is required")
        name = settings.resolve(str(raw["queueName"]), where=where).lower()  # the host lower-cases it
        if not is_valid_queue_name(name):
            raise BindingConfigError(
                f"{where}: {name!r} is not a valid queue name (3-63 lower-case letters, digits and single hyphens, "
                "starting and ending with a letter or digit)"
            )
        connection = settings.storage_connection_string(raw.get("connection") or None, where=where)
        return cls(function_name=function_name, queue_name=name, connection_string=connection)


@dataclass
class _Received:
    """A message this listener holds: its pop receipt changes with every visibility update."""

    message: StorageMessage
    pop_receipt: str
    renew_at: float
    lock: threading.Lock = field(default_factory=threading.Lock)


class QueueListener:
    """Feeds one queue trigger function. `start()` returns at once; the queue may not exist yet."""

    def __init__(
        self,
        binding: QueueTriggerBinding,
        invoker: FunctionInvoker,
        options: QueuesOptions,
        *,
        watcher: QueueWatcher | None = None,
        max_polling_interval: float = LOCAL_MAX_POLLING_INTERVAL,
    ) -> None:
        self.binding = binding
        self.options = options
        self._invoker = invoker
        self._watcher = watcher
        self._max_polling = max(MIN_POLLING_INTERVAL, min(options.max_polling_interval, max_polling_interval))
        # Raw clients: bodies are decoded here, so one that does not decode can be moved to the poison queue as is.
        self._queue = QueueClient.from_connection_string(binding.connection_string, binding.queue_name)
        poison = binding.poison_queue_name
        self._poison = QueueClient.from_connection_string(binding.connection_string, poison) if poison else None
        self._exists = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._changed = threading.Condition()
        self._held: dict[str, _Received] = {}
        self._futures: dict[concurrent.futures.Future[None], _Received] = {}
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=options.max_concurrency, thread_name_prefix=f"queue-{binding.function_name}"
        )
        self._thread = ListenerThread(f"queue-{binding.function_name}", self._run, self._stop)

    @property
    def queue_url(self) -> str:
        return str(self._queue.url)

    def start(self) -> None:
        if not self._queue_exists():
            log.warning(
                "Queue '%s' of function %s does not exist. The host does not create a trigger's queue: the function "
                "will run once the queue is created (in Azure, by the deployment)",
                self.binding.queue_name,
                self.binding.function_name,
            )
        if self._watcher is not None:
            self._watcher.register(self.queue_url, self._wake.set)
        self._thread.start()

    def stop(self) -> None:
        """Stop fetching, let the calls under way finish (as the host does), and release what never started."""
        self._stop.set()
        self._wake.set()
        with self._changed:
            self._changed.notify_all()
        self._thread.stop()
        with self._changed:
            pending = dict(self._futures)
        concurrent.futures.wait(list(pending), timeout=STOP_TIMEOUT_S)
        self._executor.shutdown(wait=False, cancel_futures=True)
        for future, received in pending.items():
            if future.cancelled():  # received but never started: visible again at once
                self._release(received, visibility_timeout=0)

    # The poller thread.

    def _run(self) -> None:
        backoff = RandomizedExponentialBackoff(MIN_POLLING_INTERVAL, self._max_polling)
        found_since_last_delay = False
        while not self._stop.is_set():
            self._renew_visibility()
            try:
                messages = self._receive()
            except AzureError as error:
                self._exists = False
                log.warning("Queue '%s': polling failed (%s); backing off", self.binding.queue_name, error)
                messages = []
            if messages:
                for message in messages:
                    self._dispatch(message)
                found_since_last_delay = True
                self._wait_for_new_batch_threshold()
                continue
            delay = backoff.next_delay(succeeded=found_since_last_delay)
            found_since_last_delay = False
            self._wake.wait(delay)
            self._wake.clear()

    def _queue_exists(self) -> bool:
        if not self._exists:
            try:
                self._queue.get_queue_properties()
                self._exists = True
            except ResourceNotFoundError:
                self._exists = False
        return self._exists

    def _receive(self) -> list[StorageMessage]:
        if not self._queue_exists():
            return []
        count = self.options.batch_size
        return list(
            self._queue.receive_messages(
                messages_per_page=count, max_messages=count, visibility_timeout=RECEIVE_VISIBILITY_TIMEOUT_S
            )
        )

    def _dispatch(self, message: StorageMessage) -> None:
        received = _Received(message, str(message.pop_receipt), time.monotonic() + RECEIVE_VISIBILITY_TIMEOUT_S / 2)
        with self._changed:
            self._held[str(message.id)] = received
        future = self._executor.submit(self._process, received)
        with self._changed:
            self._futures[future] = received
        future.add_done_callback(self._forget)

    def _forget(self, future: concurrent.futures.Future[None]) -> None:
        with self._changed:
            self._futures.pop(future, None)

    def _wait_for_new_batch_threshold(self) -> None:
        """The host's WaitForNewBatchThreshold: fetch again once at most `newBatchThreshold` messages are held."""
        while not self._stop.is_set():
            with self._changed:
                if len(self._held) <= self.options.new_batch_threshold:
                    return
                self._changed.wait(timeout=1.0)
            self._renew_visibility()

    def _renew_visibility(self) -> None:
        """Keep the messages being processed invisible, as the host's visibility timer does."""
        with self._changed:
            due = [r for r in self._held.values() if r.renew_at <= time.monotonic()]
        for received in due:
            with received.lock:
                try:
                    updated = self._queue.update_message(
                        received.message.id, received.pop_receipt, visibility_timeout=RECEIVE_VISIBILITY_TIMEOUT_S
                    )
                except AzureError as error:
                    log.warning("Queue %s: renewing %s failed: %s", self.binding.queue_name, received.message.id, error)
                    continue
                received.pop_receipt = str(updated.pop_receipt)
                received.renew_at = time.monotonic() + RECEIVE_VISIBILITY_TIMEOUT_S / 2

    # The processing threads.

    def _process(self, received: _Received) -> None:
        message = received.message
        try:
            if message.dequeue_count is not None and message.dequeue_count > self.options.max_dequeue_count:
                self._move_to_poison(received)
                return
            try:
                body = decode_body(str(message.content or ""), self.options.message_encoding)
            except ValueError:
                log.warning(
                    "Message decoding has failed! Check MessageEncoding settings. MessageId=%s (queue '%s')",
                    message.id,
                    self.binding.queue_name,
                )
                self._move_to_poison(received)
                return
            value = TriggerMessage(
                id=message.id,
                body=body,
                dequeue_count=message.dequeue_count,
                expiration_time=message.expires_on,
                insertion_time=message.inserted_on,
                time_next_visible=message.next_visible_on,
                pop_receipt=received.pop_receipt,
            )
            try:
                self._invoker(value, reason=f"New queue message detected on '{self.binding.queue_name}'.")
            except Exception:  # noqa: BLE001 - _failed logs it with its traceback
                self._failed(received)
            else:
                self._delete(received)
        except Exception:  # a Storage error while completing: the message reappears after its visibility timeout
            log.exception("Queue '%s': could not complete message %s", self.binding.queue_name, message.id)
        finally:
            with self._changed:
                self._held.pop(str(message.id), None)
                self._changed.notify_all()

    def _failed(self, received: _Received) -> None:
        message = received.message
        count, most = message.dequeue_count or 0, self.options.max_dequeue_count
        name, queue = self.binding.function_name, self.binding.queue_name
        if self._poison is None:
            log.exception(
                "Queue trigger function %s FAILED on message %s of '%s' (dequeue count %d), which has no poison queue: "
                "the message stays invisible for %d s and is not released",
                name,
                message.id,
                queue,
                count,
                RECEIVE_VISIBILITY_TIMEOUT_S,
            )
        elif count >= most:
            log.exception(
                "Queue trigger function %s FAILED on message %s of '%s' (dequeue count %d of maxDequeueCount %d): "
                "it goes to the poison queue",
                name,
                message.id,
                queue,
                count,
                most,
            )
            self._move_to_poison(received)
        else:
            log.exception(
                "Queue trigger function %s FAILED on message %s of '%s' (dequeue count %d of maxDequeueCount %d): "
                "it is retried in %g s",
                name,
                message.id,
                queue,
                count,
                most,
                self.options.visibility_timeout,
            )
            self._release(received, visibility_timeout=int(self.options.visibility_timeout))

    def _move_to_poison(self, received: _Received) -> None:
        if self._poison is None:  # the host's HandlePoisonMessage does nothing then: the message stays invisible
            return
        log.warning(
            "Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
            self.options.max_dequeue_count,
            self._poison.queue_name,
        )
        content = received.message.content  # as stored: still encoded, as the host copies it
        try:
            self._poison.send_message(content)
        except ResourceNotFoundError:  # AddMessageAndCreateIfNotExists
            with contextlib.suppress(ResourceExistsError):
                self._poison.create_queue()
            self._poison.send_message(content)
        if self._watcher is not None:
            self._watcher.notify(str(self._poison.url))
        self._delete(received)

    def _delete(self, received: _Received) -> None:
        with received.lock:
            try:
                self._queue.delete_message(received.message.id, received.pop_receipt)
            except (ResourceNotFoundError, HttpResponseError) as error:
                # Gone already, or another receiver holds it now (pop receipt mismatch): theirs to finish.
                log.debug("Queue '%s': message %s not deleted: %s", self.binding.queue_name, received.message.id, error)

    def _release(self, received: _Received, *, visibility_timeout: int) -> None:
        message_id = received.message.id
        with received.lock:
            try:
                self._queue.update_message(message_id, received.pop_receipt, visibility_timeout=visibility_timeout)
            except (ResourceNotFoundError, HttpResponseError) as error:
                log.debug("Queue '%s': message %s not released: %s", self.binding.queue_name, message_id, error)
