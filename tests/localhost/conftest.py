"""Fixtures for the local host's tests: app settings for the session's services, and hosts on free ports."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from core.bootstrap import Runtime
from core.settings import Settings
from localhost.app_settings import app_settings_of
from localhost.host import LocalHost
from localhost.indexing import IndexedFunction, index_app

StartHost = Callable[..., LocalHost]


@pytest.fixture
def app_settings(settings: Settings) -> dict[str, str]:
    """The session's services as the host's app settings, plus the probes' own settings (fresh queue names)."""
    values = app_settings_of(settings)
    values.update(
        PROBE_QUEUE=f"probe-{uuid.uuid4().hex[:12]}",
        FEED_PROBE_QUEUE=f"feed-probe-{uuid.uuid4().hex[:12]}",
        TIMER_PROBE_SCHEDULE="* * * * * *",
    )
    return values


def probe_functions(module: str, *names: str) -> list[IndexedFunction]:
    """Functions of a test-only app module, all or those named."""
    functions = index_app(module)
    return [f for f in functions if not names or f.name in names]


@pytest.fixture
def start_host(runtime: Runtime, app_settings: dict[str, str]) -> Iterator[StartHost]:
    """Start a LocalHost on a free port; every host started is stopped after the test."""
    hosts: list[LocalHost] = []

    def start(
        functions: Sequence[IndexedFunction], *, settings: dict[str, str] | None = None, **options: Any
    ) -> LocalHost:
        options.setdefault("port", 0)
        host = LocalHost(functions, settings if settings is not None else app_settings, **options)
        host.start()
        hosts.append(host)
        return host

    yield start
    for host in reversed(hosts):
        host.stop()
