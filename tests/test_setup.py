"""scripts/setup explains itself, and the dependency locks agree with each other.

setup runs in a copy of the files it reads, with a PATH of fakes (`python3`, `python3.11`, `node`, `npm`) and the
few real tools it uses, so no test touches .venv, the network or the machine's own Python and Node.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BASH = shutil.which("bash") or "/bin/bash"
REAL_TOOLS = ("dirname", "sha256sum", "cut", "cat", "grep", "rm", "mkdir", "cp", "touch")

# A stand-in for a Python interpreter of one version. Copied into a venv's bin/, it keeps its version; that
# venv has pip when bin/pip exists beside it. `-m venv` fails half-way, as Debian's does without python3-venv,
# when NO_ENSUREPIP is set.
FAKE_PYTHON = """#!{bash}
here=$(dirname "$0")
case "$1" in
  -c) echo "{version}" ;;
  -m)
    case "$2" in
      venv)
        mkdir -p "$3/bin" && cp "$0" "$3/bin/python"
        if [ -n "${{NO_ENSUREPIP:-}}" ]; then echo "ensurepip is not available" >&2; exit 1; fi
        touch "$3/bin/pip" ;;
      pip)
        [ -e "$here/pip" ] || {{ echo "No module named pip" >&2; exit 1; }}
        if [ "$3" = install ]; then echo "pip $*" >> "$CALLS"; fi ;;
    esac ;;
esac
"""
FAKE_NODE = '#!{bash}\necho "{version}"\n'
FAKE_NPM = '#!{bash}\necho "npm $*" >> "$CALLS"\nmkdir -p emulators/node_modules\n'


@dataclass
class Run:
    code: int
    out: str
    calls: list[str]


class Machine:
    """A copy of what scripts/setup reads, and a PATH that holds only what a test puts there."""

    def __init__(self, tmp: Path) -> None:
        self.repo = tmp / "repo"
        self.bin = tmp / "bin"
        self.calls = tmp / "calls.log"
        (self.repo / "scripts").mkdir(parents=True)
        (self.repo / "emulators").mkdir()
        self.bin.mkdir()
        shutil.copy(ROOT / "scripts" / "setup", self.repo / "scripts" / "setup")
        shutil.copy(ROOT / "requirements-dev.txt", self.repo / "requirements-dev.txt")
        shutil.copy(ROOT / "emulators" / "package-lock.json", self.repo / "emulators" / "package-lock.json")
        for tool in REAL_TOOLS:
            found = shutil.which(tool)
            assert found, f"{tool} is needed to run scripts/setup"
            (self.bin / tool).symlink_to(found)

    def fake(self, name: str, text: str) -> None:
        path = self.bin / name
        path.write_text(text)
        path.chmod(0o755)

    def python(self, name: str, version: str) -> None:
        self.fake(name, FAKE_PYTHON.format(bash=BASH, version=version))

    def node(self, version: str = "v20.11.1") -> None:
        self.fake("node", FAKE_NODE.format(bash=BASH, version=version))
        self.fake("npm", FAKE_NPM.format(bash=BASH))

    def venv(self, version: str, *, pip: bool) -> None:
        """A .venv left by an earlier run."""
        (self.repo / ".venv" / "bin").mkdir(parents=True)
        (self.repo / ".venv" / "bin" / "python").write_text(FAKE_PYTHON.format(bash=BASH, version=version))
        (self.repo / ".venv" / "bin" / "python").chmod(0o755)
        if pip:
            (self.repo / ".venv" / "bin" / "pip").touch()

    def setup(self, *args: str, **env: str) -> Run:
        result = subprocess.run(
            [BASH, str(self.repo / "scripts" / "setup"), *args],
            env={"PATH": str(self.bin), "CALLS": str(self.calls), **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        calls = self.calls.read_text().splitlines() if self.calls.exists() else []
        self.calls.unlink(missing_ok=True)
        return Run(result.returncode, result.stdout + result.stderr, calls)


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


def test_a_default_python3_of_another_version_is_named_with_what_to_install(machine: Machine) -> None:
    machine.python("python3", "3.13")
    machine.node()
    run = machine.setup("--check")
    assert run.code == 1
    assert "needs Python 3.11" in run.out
    assert "python3 is 3.13" in run.out
    assert "apt-get install python3.11 python3.11-venv" in run.out
    assert "pyenv install 3.11" in run.out


def test_python3_11_is_found_beside_a_newer_default(machine: Machine) -> None:
    machine.python("python3", "3.13")
    machine.python("python3.11", "3.11")
    machine.node()
    run = machine.setup("--check")
    assert run.code == 0, run.out
    assert "Python 3.11" in run.out


def test_python_names_the_interpreter_to_use(machine: Machine) -> None:
    machine.python("python3", "3.13")
    machine.python("py311", "3.11")
    machine.node()
    assert machine.setup("--check", PYTHON="py311").code == 0
    wrong = machine.setup("--check", PYTHON="python3")
    assert wrong.code == 1
    assert "python3 is 3.13" in wrong.out


@pytest.mark.parametrize(("node", "message"), [(None, "Node.js is not installed"), ("v18.19.0", "v18.19.0 is too old")])
def test_node_20_or_later_is_required_with_the_way_to_get_it(machine: Machine, node: str | None, message: str) -> None:
    machine.python("python3.11", "3.11")
    if node:
        machine.node(node)
    run = machine.setup("--check")
    assert run.code == 1
    assert message in run.out
    assert "nvm install 20" in run.out


def test_a_fresh_setup_installs_from_the_locks_with_hashes(machine: Machine) -> None:
    machine.python("python3.11", "3.11")
    machine.node()
    run = machine.setup()
    assert run.code == 0, run.out
    assert "creating .venv" in run.out
    assert re.search(r"installing \d+ Python packages from requirements-dev.txt", run.out)
    [pip] = [call for call in run.calls if call.startswith("pip")]
    assert "--require-hashes -r requirements-dev.txt" in pip
    assert any(call.startswith("npm ci --prefix emulators") for call in run.calls)
    again = machine.setup()
    assert again.code == 0
    assert again.calls == []  # nothing changed, nothing reinstalled


@pytest.mark.parametrize(
    ("version", "pip", "reason"),
    [("3.11", False, "has no pip"), ("3.13", True, "is Python 3.13, not 3.11")],
)
def test_a_half_made_or_foreign_venv_is_rebuilt(machine: Machine, version: str, pip: bool, reason: str) -> None:
    machine.python("python3.11", "3.11")
    machine.node()
    machine.venv(version, pip=pip)
    run = machine.setup()
    assert run.code == 0, run.out
    assert f".venv {reason}" in run.out
    assert "rebuilding" in run.out
    assert (machine.repo / ".venv" / "bin" / "pip").exists()


def test_a_python_without_venv_support_says_which_package_to_add(machine: Machine) -> None:
    machine.python("python3.11", "3.11")
    machine.node()
    run = machine.setup(NO_ENSUREPIP="1")
    assert run.code == 1
    assert "apt-get install python3.11-venv" in run.out
    assert not (machine.repo / ".venv").exists()  # no half-made venv is left for the next run to trip on


def _pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    return {
        re.sub(r"[-_.]+", "-", name).lower(): version
        for name, version in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", text, flags=re.MULTILINE)
    }


@pytest.mark.parametrize("lock", ["requirements.txt", "requirements-dev.txt"])
def test_every_locked_package_is_pinned_with_hashes(lock: str) -> None:
    entries = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / lock).read_text().split("\n", 2)[2])
    assert entries
    for entry in entries:
        assert re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*==\S+", entry), entry
        assert "--hash=sha256:" in entry, entry


def test_the_locks_agree_with_their_inputs_and_each_other() -> None:
    runtime, dev = _pins("requirements.txt"), _pins("requirements-dev.txt")
    for name, version in runtime.items():
        assert dev.get(name) == version, f"{name}: {version} at runtime, {dev.get(name)} in the dev lock"
    for source, pins in (("requirements.in", runtime), ("requirements-dev.in", dev)):
        for line in (ROOT / source).read_text().splitlines():
            wanted = re.match(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==(\S+)", line)
            if wanted:
                name = re.sub(r"[-_.]+", "-", wanted.group(1)).lower()
                assert pins.get(name) == wanted.group(2), f"{source} wants {line}; the lock has {pins.get(name)}"
