"""The run command as a user runs it: `python -m localhost` (what scripts/run execs after setup) starts the
emulators, seeds demo data, prints a curl command that answers 200, and Ctrl-C stops everything it started."""

import json
import os
import re
import shlex
import signal
import uuid
from pathlib import Path

import pytest
import requests

from localhost.services import RunningService
from tests.localhost.conftest import StartRunCommand, claims_of, printed_exports


def get_with_the_printed_curl(curl: str, exports: dict[str, str]) -> requests.Response:
    argv = shlex.split(curl)  # it is one shell command, ready to paste after the exports
    assert argv[:2] == ["curl", "-s"]
    header = re.sub(r"\$(\w+)", lambda match: exports[match.group(1)], argv[argv.index("-H") + 1])
    name, _, value = header.partition(": ")
    return requests.get(argv[2], headers={name: value}, timeout=10)


def test_the_printed_curl_answers_200_health_is_up_and_ctrl_c_stops_everything(
    run_command: StartRunCommand,
) -> None:
    command = run_command()
    emulator_pids = [int(command.wait_for_line(r"\(started here, pid (\d+)").group(1)) for _ in range(2)]
    exports = printed_exports(command)
    curl = command.wait_for_line(r"^curl -s .*Bearer .*$").group(0)
    assert "Bearer $TOKEN_GRACE" in curl  # a variable to paste, not a 900-character token

    response = get_with_the_printed_curl(curl, exports)
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


@pytest.mark.parametrize(
    ("signum", "sigint"),
    [
        pytest.param(signal.SIGINT, "ignored", id="SIGINT-inherited-as-ignored"),
        pytest.param(signal.SIGTERM, "default", id="SIGTERM"),
        pytest.param(signal.SIGHUP, "default", id="SIGHUP"),
    ],
)
def test_each_stop_signal_stops_everything_and_removes_its_files(
    run_command: StartRunCommand, signum: int, sigint: str
) -> None:
    command = run_command(sigint=sigint)
    started = [command.wait_for_line(r"\(started here, pid (\d+), log (\S+)\)") for _ in range(2)]
    command.wait_for_line(r"^curl -s ")  # the banner is complete: everything has started
    shared = list((command.runtime_dir / "assignments-localhost").glob("signer-*.json"))
    assert len(shared) == 1  # the signer's key, shared with scripts/token

    command.process.send_signal(signum)

    assert command.wait_for_exit() == 0
    assert not shared[0].exists(), "the shared signer's key was left behind"
    for match in started:
        pid, folder = int(match.group(1)), Path(match.group(2)).parent
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert not folder.exists(), f"{folder} was left behind"


def test_with_cosmos_endpoint_set_it_uses_that_account_and_seeds_it_only_once(
    run_command: StartRunCommand, cosmos_service: RunningService
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
        exports = printed_exports(command)
        curl = command.wait_for_line(r"^curl -s .*Bearer .*$").group(0)
        assert get_with_the_printed_curl(curl, exports).status_code == 200
        assert command.stop() == 0
    assert not any("started here" in line and "Cosmos" in line for line in command.output)


def test_the_printed_tokens_cover_every_role_and_each_does_what_its_role_allows(
    run_command: StartRunCommand,
) -> None:
    command = run_command()
    base = command.wait_for_line(r"running locally at (http://\S+)").group(1)
    tokens = printed_exports(command)

    for name in ("TOKEN_ADA", "TOKEN_GRACE", "TOKEN_ALAN"):
        claims = claims_of(tokens[name])
        assert (claims["idtyp"], claims["scp"]) == ("user", "Assignments.ReadWrite")
        assert claims["sub"] != claims["oid"]
        assert "roles" not in claims
    for name, role in (("TOKEN_ADMIN", "Assignments.Admin"), ("TOKEN_REPORTER", "Assignments.Report")):
        claims = claims_of(tokens[name])
        assert (claims["idtyp"], claims["roles"]) == ("app", [role])
        assert claims["sub"] == claims["oid"]
        assert "scp" not in claims

    def auth(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[name]}"}

    dora = {"upn": "dora@contoso.com", "displayName": "Dora", "accountEnabled": True}
    key = f"dora-{uuid.uuid4().hex[:8]}"
    for name in ("TOKEN_ADA", "TOKEN_REPORTER"):  # only admins write the directory
        assert requests.put(f"{base}/users/{key}", json=dora, headers=auth(name), timeout=10).status_code == 403
    created = requests.put(f"{base}/users/{key}", json=dora, headers=auth("TOKEN_ADMIN"), timeout=10)
    assert created.status_code == 201, created.text

    event = {"eventId": f"evt-{uuid.uuid4().hex[:8]}", "type": "visited", "occurredAt": "2020-01-01T00:00:00Z"}
    reported = requests.post(
        f"{base}/assignments/demo-welcome/events", json=event, headers=auth("TOKEN_REPORTER"), timeout=10
    )
    assert reported.status_code == 200, reported.text
    assert reported.json()["status"] == "completed"  # demo-welcome completes when visited
    assert command.stop() == 0


def test_cors_comes_from_the_host_section_of_local_settings_json(run_command: StartRunCommand, tmp_path: Path) -> None:
    origin = "http://localhost:3000"
    settings = {
        # Values are func start's, never the run command's: this one would otherwise skip the Cosmos emulator.
        "Values": {"COSMOS_ENDPOINT": "http://127.0.0.1:9/"},
        "Host": {"LocalHttpPort": 7071, "CORS": origin, "CORSCredentials": True},
    }
    (tmp_path / "local.settings.json").write_text(json.dumps(settings))
    command = run_command(cwd=tmp_path)  # read from the current directory, as func start reads it
    base = command.wait_for_line(r"running locally at (http://\S+)").group(1)
    command.wait_for_line(r"Cosmos DB emulator .*\(started here")
    command.wait_for_line(rf"^CORS: +{re.escape(origin)} \(with credentials\)")
    tokens = printed_exports(command)

    preflight = requests.options(
        f"{base}/assignments/demo-welcome",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
        timeout=10,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    assert preflight.headers["Access-Control-Allow-Headers"] == "authorization"

    headers = {"Origin": origin, "Authorization": f"Bearer {tokens['TOKEN_GRACE']}"}
    read = requests.get(f"{base}/assignments/demo-welcome", headers=headers, timeout=10)
    assert read.status_code == 200
    assert read.headers["Access-Control-Allow-Origin"] == origin
    other = requests.get(f"{base}/health", headers={"Origin": "https://elsewhere.example"}, timeout=10)
    assert "Access-Control-Allow-Origin" not in other.headers
    assert command.stop() == 0
