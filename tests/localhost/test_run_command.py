"""The run command as a user runs it: `python -m localhost` (what scripts/run execs after setup) starts the
emulators, seeds demo data, prints a curl command that answers 200, and Ctrl-C stops everything it started."""

import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
import requests

from localhost.services import REPO_ROOT, RunningService

STARTUP_TIMEOUT_S = 45
# Settings a developer's shell might hold that would point the run command elsewhere.
CLEARED = ("COSMOS_ENDPOINT", "COSMOS_KEY", "AzureWebJobsStorage", "CosmosDB", "WEBSITE_INSTANCE_ID", "PORT")


class RunCommand:
    def __init__(self, **settings: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in CLEARED and not k.startswith(("AUTH_", "COSMOS_"))}
        env.update(PORT="0", LOCAL_DEV_SIGNER="1", PYTHONUNBUFFERED="1", **settings)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "localhost"],
            cwd=REPO_ROOT,
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

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=20)


@pytest.fixture
def run_command() -> Iterator[Callable[..., RunCommand]]:
    commands: list[RunCommand] = []

    def start(**settings: str) -> RunCommand:
        commands.append(RunCommand(**settings))
        return commands[-1]

    yield start
    for command in commands:
        if command.process.poll() is None:
            command.process.kill()
            command.process.wait()


def get_with_the_printed_curl(curl: str) -> requests.Response:
    argv = shlex.split(curl)  # it is one shell command, ready to paste
    assert argv[:2] == ["curl", "-s"]
    name, _, value = argv[argv.index("-H") + 1].partition(": ")
    return requests.get(argv[2], headers={name: value}, timeout=10)


def test_the_printed_curl_answers_200_health_is_up_and_ctrl_c_stops_everything(
    run_command: Callable[..., RunCommand],
) -> None:
    command = run_command()
    emulator_pids = [int(command.wait_for_line(r"\(started here, pid (\d+)\)").group(1)) for _ in range(2)]
    curl = command.wait_for_line(r"^curl -s .*Bearer .*$").group(0)

    response = get_with_the_printed_curl(curl)
    assert response.status_code == 200
    assert response.json()["id"] == "demo-welcome"

    base = response.url.split("/assignments/")[0]
    health = requests.get(f"{base}/health", timeout=10).json()
    assert health["status"] == "healthy"
    assert {name: dependency["status"] for name, dependency in health["dependencies"].items()} == {
        "cosmos": "up",
        "storage": "up",
    }

    assert command.stop() == 0
    command.wait_for_line(r"^Stopped\.$")
    for pid in emulator_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_with_cosmos_endpoint_set_it_uses_that_account_and_seeds_it_only_once(
    run_command: Callable[..., RunCommand], cosmos_service: RunningService
) -> None:
    account = {
        "COSMOS_ENDPOINT": cosmos_service.endpoint,
        "COSMOS_KEY": cosmos_service.key,
        "COSMOS_DATABASE": f"run-{uuid.uuid4().hex[:8]}",
    }
    for _ in range(2):  # the second run finds the demo data already there
        command = run_command(**account)
        command.wait_for_line(rf"Cosmos DB +{re.escape(cosmos_service.endpoint)} +\(COSMOS_ENDPOINT\)")
        command.wait_for_line(r"Azurite .*\(started here")
        assert get_with_the_printed_curl(command.wait_for_line(r"^curl -s .*Bearer .*$").group(0)).status_code == 200
        assert command.stop() == 0
    assert not any("started here" in line and "Cosmos" in line for line in command.output)
