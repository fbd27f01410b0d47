"""The HTTP front end: a threaded HTTP/1.1 server that routes requests to HTTP-triggered functions.

Each request runs on its own thread, so concurrent requests are served concurrently. A request becomes a
`func.HttpRequest` (method, full URL, headers, query parameters, route values, body), and the function's
`func.HttpResponse` (or `str`) is written back with the Content-Type the worker derives from its mimetype. A
function that raises answers 500 with an empty body, as the real host does; the exception goes to the log only.
With a CORS policy (`Host.CORS`), the host answers preflights itself and adds CORS headers, as `func start` does
(`localhost.cors`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
from azure.functions.http import HttpResponseConverter

from localhost.background_server import BackgroundServer
from localhost.cors import CorsPolicy
from localhost.invocation import FunctionInvoker
from localhost.routing import NoMatch, RouteTable

log = logging.getLogger("localhost.http")

# The Functions host's default request body limit (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT): 100 MB.
MAX_REQUEST_BODY_BYTES = 100 * 1024 * 1024
IDLE_CONNECTION_TIMEOUT_S = 120
# Response headers the server sets itself from the body it writes.
_FRAMING_HEADERS = {"content-length", "transfer-encoding", "connection"}


@dataclass(frozen=True)
class HttpFunction:
    invoker: FunctionInvoker
    response_binding: str  # "$return", or the name of a `func.Out[func.HttpResponse]` parameter


@dataclass(frozen=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class _RequestError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def reply_of(value: Any) -> Reply:
    """What the host writes back for a function's HTTP output, as the worker encodes it."""
    if value is None:
        return Reply(204, [], b"")
    if isinstance(value, str):
        value = func.HttpResponse(value)
    datum = HttpResponseConverter.encode(value, expected_type=None)
    encoded = datum.value
    headers = [(str(name), str(header.value)) for name, header in encoded["headers"].items()]
    for cookie in encoded.get("cookies") or []:
        headers += [("Set-Cookie", morsel.OutputString()) for morsel in cookie.values()]
    return Reply(int(encoded["status_code"].value), headers, bytes(encoded["body"].value))


class HttpFrontEnd(BackgroundServer):
    def __init__(
        self,
        routes: RouteTable[HttpFunction],
        *,
        address: str = "127.0.0.1",
        port: int = 7071,
        cors: CorsPolicy | None = None,
    ) -> None:
        self.routes = routes
        self.cors = cors
        server = _Server((address, port), _Handler)
        server.front_end = self
        super().__init__(server, address=address, thread_name="localhost-http", poll_interval=0.1)

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes, host: str) -> Reply:
        """The reply to a request (`headers` with lower-case names), CORS applied."""
        if self.cors is not None and self.cors.is_preflight(method, headers):
            # The host's CORS middleware answers every preflight itself; no function ever sees one.
            return Reply(204, self.cors.preflight_headers(headers), b"")
        return self.with_cors(headers, self._invoke(method, target, headers, body, host))

    def with_cors(self, request_headers: dict[str, str], reply: Reply) -> Reply:
        if self.cors is None:
            return reply
        return Reply(reply.status, self.cors.response_headers(request_headers, reply.headers), reply.body)

    def _invoke(self, method: str, target: str, headers: dict[str, str], body: bytes, host: str) -> Reply:
        parts = urlsplit(target)
        resolution = self.routes.resolve(method, parts.path)
        if isinstance(resolution, NoMatch):
            if resolution.allowed:
                return Reply(405, [("Allow", ", ".join(sorted(resolution.allowed)))], b"")
            return Reply(404, [], b"")
        function = resolution.target
        request = func.HttpRequest(
            method,
            f"http://{host}{target}",
            headers=headers,
            params=_query_params(parts.query),
            route_params=resolution.route_params,
            body=body,
        )
        try:
            invocation = function.invoker(request, reason=f"{method} {parts.path}")
            return reply_of(invocation.value_of(function.response_binding))
        except Exception:
            # The real host answers 500 with an empty body; the details belong in the log only.
            log.exception("Function %s failed on %s %s", function.invoker.name, method, parts.path)
            return Reply(500, [], b"")


def _query_params(query: str) -> dict[str, str]:
    # The host hands the worker one string per name; a repeated name's values are joined with commas.
    values: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        values.setdefault(name, []).append(value)
    return {name: ",".join(items) for name, items in values.items()}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    front_end: HttpFrontEnd


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_TIMEOUT_S
    # Headers and body go out in two writes; with Nagle the second waits for the client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    server: _Server

    def _serve(self) -> None:
        started = time.perf_counter()
        front_end = self.server.front_end
        headers = dict(self._joined_headers())
        try:
            body = self._read_body()
        except _RequestError as error:
            self.close_connection = True
            self._write(front_end.with_cors(headers, Reply(error.status, [], b"")))
            return
        host = self.headers.get("host") or f"{front_end.address}:{front_end.port}"
        reply = front_end.handle(self.command, self.path, headers, body, host)
        self._write(reply)
        log.debug(
            "%s %s -> %d (%.0f ms)", self.command, self.path, reply.status, (time.perf_counter() - started) * 1000
        )

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def _joined_headers(self) -> Iterator[tuple[str, str]]:
        joined: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            joined.setdefault(name.lower(), []).append(value)
        for name, values in joined.items():
            yield name, ", ".join(values)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            return self._read_chunked()
        length_header = self.headers.get("content-length")
        if length_header is None:
            return b""
        if not length_header.isdigit():
            raise _RequestError(400)
        length = int(length_header)
        if length > MAX_REQUEST_BODY_BYTES:
            raise _RequestError(413)
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise _RequestError(400) from None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_REQUEST_BODY_BYTES:
                raise _RequestError(413)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(16)  # the CRLF after each chunk

    def _write(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            for name, value in reply.headers:
                if name.lower() not in _FRAMING_HEADERS:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)
