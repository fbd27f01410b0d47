"""`scripts/token` mints tokens that the running run command's host accepts, for any user or app, tenant, scopes
and roles; the key it signs with is shared privately, for as long as the run command runs; it refuses Azure."""

import os
import stat
import subprocess
import uuid
from pathlib import Path

import pytest
import requests

from localhost.dev_signer import DEV_OTHER_TENANT_ID, DEV_TENANT_ID
from localhost.services import REPO_ROOT
from localhost.shared_signer import SharedSignerError, private_directory
from tests.localhost.conftest import StartRunCommand, claims_of

TOKEN_COMMAND = REPO_ROOT / "scripts" / "token"


def scripts_token(*args: str, runtime_dir: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "WEBSITE_INSTANCE_ID"}
    env.update(XDG_RUNTIME_DIR=str(runtime_dir), **environ)
    return subprocess.run([TOKEN_COMMAND, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def minted(*args: str, runtime_dir: Path) -> str:
    result = scripts_token(*args, runtime_dir=runtime_dir)
    assert result.returncode == 0, result.stderr
    (token,) = result.stdout.splitlines()  # just the token
    return token


def test_tokens_minted_by_scripts_token_are_accepted_by_the_running_host(run_command: StartRunCommand) -> None:
    command = run_command()
    base = command.wait_for_line(r"running locally at (http://\S+)").group(1)
    command.wait_for_line(r"^curl -s ")
    runtime_dir = command.runtime_dir
    shared_dir = runtime_dir / "assignments-localhost"
    (shared,) = shared_dir.glob("signer-*.json")
    assert stat.S_IMODE(shared_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(shared.stat().st_mode) == 0o600

    # A delegated admin: a user token carrying the app role.
    key = f"dora-{uuid.uuid4().hex[:8]}"
    admin = minted("--upn", "dora@contoso.com", "--oid", key, "--roles", "Assignments.Admin", runtime_dir=runtime_dir)
    claims = claims_of(admin)
    assert (claims["preferred_username"], claims["oid"], claims["tid"]) == ("dora@contoso.com", key, DEV_TENANT_ID)
    assert (claims["idtyp"], claims["scp"], claims["roles"]) == ("user", "Assignments.ReadWrite", ["Assignments.Admin"])
    assert claims["sub"] != claims["oid"]
    dora = {"upn": "dora@contoso.com", "displayName": "Dora", "accountEnabled": True}
    put = requests.put(f"{base}/users/{key}", json=dora, headers={"Authorization": f"Bearer {admin}"}, timeout=10)
    assert put.status_code == 201, put.text

    # The same user without the role is no admin, but may use the API.
    user = {"Authorization": f"Bearer {minted('--upn', 'dora@contoso.com', '--oid', key, runtime_dir=runtime_dir)}"}
    assert requests.put(f"{base}/users/{key}", json=dora, headers=user, timeout=10).status_code == 403
    assert requests.get(f"{base}/assignments", headers=user, timeout=10).status_code == 200

    # An app-only token: no scp, idtyp app, sub = oid; a reporter reports progress on any assignment.
    reporter = minted("--app", "my-etl-app", "--roles", "Assignments.Report", runtime_dir=runtime_dir)
    claims = claims_of(reporter)
    assert (claims["idtyp"], claims["azp"], claims["roles"]) == ("app", "my-etl-app", ["Assignments.Report"])
    assert claims["sub"] == claims["oid"]
    assert "scp" not in claims
    event = {"eventId": f"evt-{uuid.uuid4().hex[:8]}", "type": "visited", "occurredAt": "2020-01-01T00:00:00Z"}
    reported = requests.post(
        f"{base}/assignments/demo-review/events",
        json=event,
        headers={"Authorization": f"Bearer {reporter}"},
        timeout=10,
    )
    assert reported.status_code == 200, reported.text

    # The second development tenant is trusted; any other tenant's token is refused, with a warning.
    other = minted("--upn", "eve@fabrikam.com", "--tid", DEV_OTHER_TENANT_ID, runtime_dir=runtime_dir)
    headers = {"Authorization": f"Bearer {other}"}
    assert requests.get(f"{base}/assignments", headers=headers, timeout=10).status_code == 200
    untrusted = scripts_token("--upn", "eve@fabrikam.com", "--tid", str(uuid.uuid4()), runtime_dir=runtime_dir)
    assert "warning" in untrusted.stderr
    headers = {"Authorization": f"Bearer {untrusted.stdout.strip()}"}
    assert requests.get(f"{base}/assignments", headers=headers, timeout=10).status_code == 401

    # Once the run command stops, its key is gone, and so is every way to mint with it.
    assert command.stop() == 0
    assert not shared.exists()
    result = scripts_token("--upn", "dora@contoso.com", runtime_dir=runtime_dir)
    assert (result.returncode, result.stdout) == (2, "")
    assert "no run command" in result.stderr


def test_scripts_token_refuses_to_run_on_an_azure_instance(tmp_path: Path) -> None:
    result = scripts_token("--upn", "dora@contoso.com", runtime_dir=tmp_path, WEBSITE_INSTANCE_ID="a1b2c3")
    assert (result.returncode, result.stdout) == (2, "")
    assert "WEBSITE_INSTANCE_ID is set" in result.stderr


def test_a_key_left_by_a_killed_run_is_never_used(run_command: StartRunCommand) -> None:
    command = run_command()
    command.wait_for_line(r"^curl -s ")
    (shared,) = (command.runtime_dir / "assignments-localhost").glob("signer-*.json")
    left_behind = shared.read_bytes()
    assert command.stop() == 0
    # What `kill -9` leaves (without leaking the emulators' folders as a real one would): the file, not the signer.
    shared.write_bytes(left_behind)
    result = scripts_token("--upn", "dora@contoso.com", runtime_dir=command.runtime_dir)
    assert (result.returncode, result.stdout) == (2, "")
    assert "no run command with a development signer is running" in result.stderr


@pytest.mark.parametrize("make", ["too-open", "symlink"])
def test_a_shared_directory_others_could_open_is_refused(tmp_path: Path, make: str) -> None:
    path = tmp_path / "assignments-localhost"
    if make == "too-open":
        path.mkdir(mode=0o755)
        path.chmod(0o755)
    else:
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(SharedSignerError, match="mode 0700"):
        private_directory(path, create=True)
