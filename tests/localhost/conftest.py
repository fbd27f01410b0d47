"""Fixtures for the local host's tests: app settings for the session's services, hosts on free ports, and the run
command in a process of its own."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jwt
import pytest

from core.bootstrap import Runtime
from core.settings import Settings
from localhost.app_settings import app_settings_of
from localhost.host import LocalHost
from localhost.indexing import IndexedFunction, index_app
from localhost.services import REPO_ROOT, terminate

StartHost = Callable[..., LocalHost]


@pytest.fixture
def app_settings(settings: Settings) -> dict[str, str]:
    """The session's services as the host's app settings, plus the probes' own settings (fresh queue names)."""
    values = app_settings_of(settings)
    values.update(
        PROBE_QUEUE=f"probe-{uuid.uuid4().hex[:12]}",
        FEED_PROBE_QUEUE=f"feed-probe-{uuid.uuid4().hex[:12]}",
        QUEUE_PROBE_QUEUE=f"queue-probe-{uuid.uuid4().hex[:12]}",
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
    # The session's database and containers exist before any host watches them, as infra/ makes them in Azure:
    # a change-feed trigger refuses to start on a container that does not exist.
    runtime.store  # noqa: B018
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


STARTUP_TIMEOUT_S = 45
# Generous on purpose: the machine is shared; this bounds a hang, it does not measure speed.
EXIT_TIMEOUT_S = 60
# Settings a developer's shell might hold that would point the run command elsewhere.
CLEARED = ("COSMOS_ENDPOINT", "COSMOS_KEY", "AzureWebJobsStorage", "CosmosDB", "WEBSITE_INSTANCE_ID", "PORT")
TOKEN_NAMES = ("TOKEN_ADA", "TOKEN_GRACE", "TOKEN_ALAN", "TOKEN_ADMIN", "TOKEN_REPORTER")

# Sets the signal dispositions the run command inherits, then becomes it: a disposition set to SIG_IGN survives
# exec, which is how a background job (`cmd &` in a script), `nohup` or a CI runner starts a process.
LAUNCHER = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN if sys.argv[1] == "ignored" else signal.SIG_DFL)
signal.signal(signal.SIGHUP, signal.SIG_DFL)
os.execv(sys.executable, [sys.executable, "-m", "localhost", *sys.argv[2:]])
"""


class RunCommand:
    """`python -m localhost` in a process of its own, its output read line by line.

    `runtime_dir` is its XDG_RUNTIME_DIR, private to this command, so the signer it shares with scripts/token
    lands there and never in the developer's own."""

    def __init__(
        self, *args: str, runtime_dir: Path, sigint: str = "default", cwd: Path = REPO_ROOT, **settings: str
    ) -> None:
        self.runtime_dir = runtime_dir
        env = {k: v for k, v in os.environ.items() if k not in CLEARED and not k.startswith(("AUTH_", "COSMOS_"))}
        env.update(PORT="0", LOCAL_DEV_SIGNER="1", PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO_ROOT))
        env.update(XDG_RUNTIME_DIR=str(runtime_dir), **settings)
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, sigint, *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for_line(self, pattern: str) -> re.Match[str]:
        while True:
            try:
                line = self.lines.get(timeout=STARTUP_TIMEOUT_S)
            except queue.Empty:
                raise AssertionError("no such line; output so far:\n" + "\n".join(self.output)) from None
            self.output.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def wait_for_exit(self) -> int:
        try:
            return self.process.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running {EXIT_TIMEOUT_S} s after the signal; output so far:\n" + "\n".join(self.output)
            ) from None

    def stop(self, signum: int = signal.SIGINT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.wait_for_exit()


StartRunCommand = Callable[..., RunCommand]


@pytest.fixture
def run_command(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartRunCommand]:
    """Start run commands (arguments as `RunCommand`'s); any still running after the test is killed."""
    commands: list[RunCommand] = []

    def start(*args: str, **settings: Any) -> RunCommand:
        settings.setdefault("runtime_dir", tmp_path_factory.mktemp("xdg-runtime"))
        commands.append(RunCommand(*args, **settings))
        return commands[-1]

    yield start
    for command in commands:
        # SIGTERM first: it cleans up after itself (emulators, their folders, the shared key); SIGKILL would leak.
        terminate(command.process, EXIT_TIMEOUT_S)


def printed_exports(command: RunCommand) -> dict[str, str]:
    """The `export NAME=value` lines of the banner, in the shell's terms."""
    exports: dict[str, str] = {}
    while len(exports) < len(TOKEN_NAMES):
        name, value = command.wait_for_line(r"^  export (\w+)=(\S+)$").groups()
        exports[name] = value
    assert sorted(exports) == sorted(TOKEN_NAMES)
    return exports


def claims_of(token: str) -> dict[str, Any]:
    """A token's claims, unverified: what a developer sees when decoding it."""
    return dict(jwt.decode(token, options={"verify_signature": False}))
