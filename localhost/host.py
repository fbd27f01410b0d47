"""The local host: runs a function app's own registered functions, as indexed from its metadata.

It takes the functions `localhost.indexing` produced (the worker's checks already passed), the app settings and
host.json, and wires each function's trigger: HTTP triggers to the HTTP front end, Cosmos DB triggers to change-feed
listeners, timer triggers to schedulers, queue triggers to queue listeners. Output bindings go through
`localhost.invocation`. A binding it cannot honour (an unresolved `%SETTING%`, an unsupported binding type, a missing
container) stops it at construction or start, loudly, instead of silently dropping the function.

A retry policy (`@app.retry`) is honoured on Cosmos DB and timer triggers; on any other trigger the host ignores it,
and says so with a warning, as the real host does.

`AzureWebJobs.<function>.Disabled` set to true/1 disables a function, as on the real host.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from core.clock import Clock, utc_now
from localhost.app_settings import AppSettings, BindingConfigError
from localhost.change_feed import ChangeFeedListener, CosmosTriggerBinding
from localhost.cors import CorsPolicy
from localhost.host_json import read_host_json
from localhost.http_server import HttpFrontEnd, HttpFunction
from localhost.indexing import IndexedFunction
from localhost.invocation import FunctionInvoker
from localhost.queues import QueueListener, QueueTriggerBinding, QueueWatcher
from localhost.retry import RETRY_TRIGGERS
from localhost.routing import Route, RouteTable, RouteTemplateError, join_prefix
from localhost.services import REPO_ROOT
from localhost.timers import ScheduleStatusStore, Sleep, TimerBinding, TimerListener, describe_next

log = logging.getLogger("localhost")

HOST_JSON = REPO_ROOT / "host.json"

Listener = ChangeFeedListener | TimerListener | QueueListener


class LocalHost:
    def __init__(
        self,
        functions: Sequence[IndexedFunction],
        app_settings: Mapping[str, str],
        *,
        address: str = "127.0.0.1",
        port: int = 7071,
        route_prefix: str | None = None,
        clock: Clock = utc_now,
        timer_sleep: Sleep | None = None,
        schedule_status: ScheduleStatusStore | None = None,
        cors: CorsPolicy | None = None,
        host_json: Path = HOST_JSON,
    ) -> None:
        settings = AppSettings(app_settings)
        names = [function.name for function in functions]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise BindingConfigError(f"duplicate function names: {duplicates}")
        config = read_host_json(host_json)
        prefix = config.route_prefix if route_prefix is None else route_prefix
        self._clock = clock
        self.descriptions: list[str] = []
        routes: list[Route[HttpFunction]] = []
        self.change_feeds: list[ChangeFeedListener] = []
        self.timers: list[TimerListener] = []
        self.queues: list[QueueListener] = []
        self.queue_watcher = QueueWatcher()
        for function in functions:
            if settings.is_true(f"AzureWebJobs.{function.name}.Disabled"):
                self.descriptions.append(f"{function.name}: disabled")
                continue
            invoker = FunctionInvoker(function, settings, queues=config.queues, on_queue_sent=self.queue_watcher.notify)
            trigger = function.trigger
            kind = trigger["type"]
            retry = function.retry
            if retry is not None and kind not in RETRY_TRIGGERS:
                log.warning(
                    "Retries are not supported for function '%s' (a %s): its retry policy is ignored, as on Azure",
                    function.name,
                    kind,
                )
                retry = None
            retrying = f"; {retry.describe()}" if retry is not None else ""
            if kind == "httpTrigger":
                routes.append(self._route(function, invoker, prefix))
            elif kind == "cosmosDBTrigger":
                binding = CosmosTriggerBinding.from_raw(function.name, trigger, settings)
                self.change_feeds.append(ChangeFeedListener(binding, invoker, clock=clock, retry=retry))
                self.descriptions.append(
                    f"{function.name}: cosmosDBTrigger on {binding.database}/{binding.container}{retrying}"
                )
            elif kind == "timerTrigger":
                timer = TimerBinding.from_raw(function.name, trigger, settings)
                self.timers.append(
                    TimerListener(
                        timer, invoker, clock=clock, sleep=timer_sleep, status_store=schedule_status, retry=retry
                    )
                )
                self.descriptions.append(f"{function.name}: timerTrigger ({timer.schedule}){retrying}")
            elif kind == "queueTrigger":
                queue = QueueTriggerBinding.from_raw(function.name, trigger, settings)
                self.queues.append(QueueListener(queue, invoker, config.queues, watcher=self.queue_watcher))
                poison = queue.poison_queue_name or "none"
                self.descriptions.append(f"{function.name}: queueTrigger on {queue.queue_name} (poison: {poison})")
            else:
                raise BindingConfigError(f"function {function.name}: the local host does not support {kind} triggers")
        self.http = HttpFrontEnd(RouteTable(routes), address=address, port=port, cors=cors)
        self.descriptions[:0] = [
            f"{route.target.invoker.name}: [{','.join(sorted(route.methods or {'*'}))}] {self.url}/{route.template}"
            for route in routes
        ]
        self._started: list[Listener] = []

    def _route(self, function: IndexedFunction, invoker: FunctionInvoker, prefix: str) -> Route[HttpFunction]:
        trigger = function.trigger
        methods = trigger.get("methods")
        response_binding = next(
            (str(b["name"]) for b in function.raw_bindings if b["type"] == "http" and b["direction"] == "OUT"),
            "$return",
        )
        template = join_prefix(prefix, str(trigger.get("route") or function.name))
        try:
            return Route(
                template,
                frozenset(str(m).upper() for m in methods) if methods else None,
                HttpFunction(invoker, response_binding),
            )
        except RouteTemplateError as error:
            raise BindingConfigError(f"function {function.name}: {error}") from None

    @property
    def url(self) -> str:
        return self.http.url

    def start(self) -> None:
        self.http.start()
        try:
            listeners: list[Listener] = [*self.change_feeds, *self.timers, *self.queues]
            for listener in listeners:
                listener.start()
                self._started.append(listener)
        except BaseException:
            self.stop()
            raise
        for timer in self.timers:
            upcoming = ", ".join(
                f"{moment:%Y-%m-%d %H:%M:%S}Z" for moment in describe_next(timer.binding, self._clock())
            )
            log.info("Timer %s next fires at %s", timer.binding.function_name, upcoming)

    def stop(self) -> None:
        for listener in reversed(self._started):
            listener.stop()
        self._started.clear()
        self.http.stop()

    def __enter__(self) -> LocalHost:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
