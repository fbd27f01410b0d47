"""An HTTP server that serves from a daemon thread of its own: the local host's front end, and the development
signer's JWKS endpoint."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer


class BackgroundServer:
    """Serves `server` on a daemon thread between `start()` and `stop()`. `address` is the one its URL names."""

    def __init__(self, server: ThreadingHTTPServer, *, address: str, thread_name: str, poll_interval: float) -> None:
        self.address = address
        self._server = server
        self._thread_name = thread_name
        self._poll_interval = poll_interval
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": self._poll_interval},
            name=self._thread_name,
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
