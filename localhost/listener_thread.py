"""The daemon thread a trigger listener polls on, and how a stop ends it."""

from __future__ import annotations

import threading
from collections.abc import Callable

STOP_TIMEOUT_S = 30.0


class ListenerThread:
    """Runs a listener's loop on a daemon thread of its own. The loop ends once `stopping` is set: it checks the
    event between steps and sleeps on it, so that a stop cuts its waits short."""

    def __init__(self, name: str, loop: Callable[[], None], stopping: threading.Event) -> None:
        self.name = name
        self._loop = loop
        self._stopping = stopping
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Set `stopping` and wait (up to `STOP_TIMEOUT_S`) for the loop to end."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_S)
