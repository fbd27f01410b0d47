"""Start the local emulators (patched Cosmos DB-compatible server, Azurite) as child processes.

Used by the run command (`python -m localhost`), the pytest session fixtures and the benches. Both run from
`emulators/node_modules`, installed by `scripts/setup` (`npm ci --prefix emulators`). Missing tools raise a
RuntimeError that says what to install: tests never skip.
"""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from azure.cosmos import CosmosClient

REPO_ROOT = Path(__file__).resolve().parents[1]
EMULATORS_DIR = REPO_ROOT / "emulators"
NODE_MODULES = EMULATORS_DIR / "node_modules"
COSMOS_LAUNCHER = EMULATORS_DIR / "cosmos-server.js"

# Well-known, public emulator credentials (documented by Microsoft); not secrets.
COSMOS_EMULATOR_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
INSTALL_HINT = (
    "Install Node.js >= 20 with npm (Debian: `apt-get install -y nodejs npm`), then run "
    "`npm ci --prefix emulators` from the repository root (the README's test command does this)."
)


@dataclass
class RunningService:
    """A started emulator process. `endpoint` is the main URL (Cosmos account, or Azurite's blob service)."""

    name: str
    endpoint: str
    key: str
    connection_string: str
    process: subprocess.Popen[bytes]
    workdir: Path
    endpoints: Mapping[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / "service.log"

    def log_tail(self, max_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the process by PID, SIGKILL it if it has not exited after `timeout` seconds."""
        terminate(self.process, timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RunningService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def terminate(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM `process` unless it has exited, and SIGKILL it if it has not exited after `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def _require_node_package(package: str) -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError(f"`node` was not found on PATH, so the local emulators cannot start. {INSTALL_HINT}")
    if not (NODE_MODULES / package / "package.json").is_file():
        raise RuntimeError(f"The npm package `{package}` is not installed in {NODE_MODULES}. {INSTALL_HINT}")
    return node


def _die_with_parent() -> None:
    # Runs in the child before exec: if the test process dies without cleanup, the kernel sends SIGTERM to the
    # emulator instead of leaving it orphaned. Linux-only; elsewhere stop() is the only cleanup.
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def _spawn(args: list[str], workdir: Path) -> subprocess.Popen[bytes]:
    with (workdir / "service.log").open("wb") as log:
        return subprocess.Popen(  # noqa: S603 - argv of the pinned emulators, no shell
            args,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            # A session of its own: Ctrl-C in a terminal reaches only the parent, which stops its users (the local
            # host's change-feed listeners) before the emulators, instead of racing them.
            start_new_session=True,
        )


def _wait_until(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} while starting:\n{_read(log)}")
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not become ready within {STARTUP_TIMEOUT_S:.0f} s:\n{_read(log)}")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-4000:]
    except OSError:
        return "(no log)"


def _free_ports(count: int) -> list[int]:
    # Sockets stay open until all ports are chosen, so the ports are distinct. Another process could still take
    # one before the emulator binds it; callers retry on that.
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def _all_accept_connections(ports: tuple[int, ...]) -> bool:
    return all(_accepts_connections(port) for port in ports)


def connection_string(parts: dict[str, str]) -> str:
    """`Name=value;` pairs, the format of Cosmos and Storage connection strings."""
    return "".join(f"{name}={value};" for name, value in parts.items())


def cosmos_connection_string(endpoint: str, key: str = COSMOS_EMULATOR_KEY) -> str:
    return connection_string({"AccountEndpoint": endpoint, "AccountKey": key})


def start_cosmos() -> RunningService:
    """Start the patched Cosmos DB-compatible server on a free port and wait until it answers."""
    node = _require_node_package("@vercel/cosmosdb-server")
    workdir = Path(tempfile.mkdtemp(prefix="cosmos-emulator-"))
    # Port 0: the server binds a free port itself and prints it, so there is no port race to retry.
    process = _spawn([node, str(COSMOS_LAUNCHER), "--host", HOST, "--port", "0"], workdir)
    log = workdir / "service.log"
    found: list[str] = []

    def ready() -> bool:
        match = re.search(r"Ready to accept HTTP connections at (http://\S+/)", _read(log))
        if match is None:
            return False
        found.append(match.group(1))
        return True

    try:
        _wait_until(ready, process, "The Cosmos DB emulator (emulators/cosmos-server.js)", log)
        endpoint = found[0]
        with urllib.request.urlopen(endpoint, timeout=5) as response:  # noqa: S310 - the http URL it printed
            json.loads(response.read())
    except BaseException:
        _kill(process)
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return RunningService(
        name="cosmos",
        endpoint=endpoint,
        key=COSMOS_EMULATOR_KEY,
        connection_string=cosmos_connection_string(endpoint),
        process=process,
        workdir=workdir,
        endpoints={"cosmos": endpoint},
    )


def azurite_connection_string(blob_port: int, queue_port: int, table_port: int) -> str:
    return connection_string(
        {
            "DefaultEndpointsProtocol": "http",
            "AccountName": AZURITE_ACCOUNT,
            "AccountKey": AZURITE_KEY,
            "BlobEndpoint": f"http://{HOST}:{blob_port}/{AZURITE_ACCOUNT}",
            "QueueEndpoint": f"http://{HOST}:{queue_port}/{AZURITE_ACCOUNT}",
            "TableEndpoint": f"http://{HOST}:{table_port}/{AZURITE_ACCOUNT}",
        }
    )


def _azurite_script() -> Path:
    package = json.loads((NODE_MODULES / "azurite" / "package.json").read_text())
    bins: Any = package["bin"]
    return NODE_MODULES / "azurite" / str(bins["azurite"])


def start_azurite(attempts: int = 3) -> RunningService:
    """Start Azurite (blob, queue, table; in memory) on free ports and wait until all three accept connections."""
    node = _require_node_package("azurite")
    last_error: RuntimeError | None = None
    for _ in range(attempts):
        blob, queue, table = _free_ports(3)
        workdir = Path(tempfile.mkdtemp(prefix="azurite-"))
        args = [
            node, str(_azurite_script()), "--silent", "--inMemoryPersistence", "--disableTelemetry",
            "--skipApiVersionCheck", "--blobHost", HOST, "--queueHost", HOST, "--tableHost", HOST,
            "--blobPort", str(blob), "--queuePort", str(queue), "--tablePort", str(table),
        ]  # fmt: skip
        process = _spawn(args, workdir)
        try:
            _wait_until(
                partial(_all_accept_connections, (blob, queue, table)), process, "Azurite", workdir / "service.log"
            )
        except RuntimeError as error:  # most likely a port taken between choosing and binding it
            _kill(process)
            shutil.rmtree(workdir, ignore_errors=True)
            last_error = error
            continue
        except BaseException:
            _kill(process)
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        endpoints = {
            name: f"http://{HOST}:{port}/{AZURITE_ACCOUNT}"
            for name, port in (("blob", blob), ("queue", queue), ("table", table))
        }
        return RunningService(
            name="azurite",
            endpoint=endpoints["blob"],
            key=AZURITE_KEY,
            connection_string=azurite_connection_string(blob, queue, table),
            process=process,
            workdir=workdir,
            endpoints=endpoints,
        )
    assert last_error is not None
    raise last_error


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


def make_cosmos_client(endpoint: str, key: str = COSMOS_EMULATOR_KEY, **kwargs: Any) -> CosmosClient:
    """A CosmosClient for the local server: plain HTTP, no endpoint discovery, pooled keep-alive connections.

    Discovery is off because a real account lists regional endpoints to fail over to; the local server has one.
    The SDK skips TLS verification for 127.0.0.1/localhost by itself, and its requests transport keeps connections
    alive in a pool.
    """
    options: dict[str, Any] = {"enable_endpoint_discovery": False, "connection_timeout": 5}
    options.update(kwargs)
    return CosmosClient(endpoint, credential=key, **options)
