"""The README's API examples, run as a user runs them: the run command started, the `export TOKEN_…` lines it
prints pasted into the environment, then every shell command of every ```bash block under "## API", in README
order, through `bash -c`, with only the URL changed to the run command's port.

Each command runs as written: `curl` is a shell function, defined in the same bash invocation, that calls the real
curl with the same arguments plus `-sS -o <file> -w '%{http_code}'` and fails on an answer that is not 2xx. The
examples that read the views (lists, summaries, rosters) show the effect of earlier examples only once the change
feed has caught up; those are run again, as written, until their answer shows it, up to a deadline.

The Operators block's commands read the app's settings from the environment, as its text says: the run command is
given the session's Cosmos DB (a fresh database) and Azurite (fresh queue names) so that the test knows those
settings and can hand the same ones to the operators' commands.

requests.http holds the same requests for editors' HTTP clients; the last test checks it matches the README.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localhost.services import REPO_ROOT, RunningService
from tests.localhost.conftest import CLEARED, StartRunCommand, claims_of, printed_exports

README = REPO_ROOT / "README.md"
REQUESTS_HTTP = REPO_ROOT / "requests.http"
README_BASE = "http://127.0.0.1:7071"
COMMAND_TIMEOUT_S = 30  # one command (an operator's command starts a Python process)
CATCH_UP_DEADLINE_S = 10  # how long a view may take to show what earlier examples did

# The real curl, with what the test needs added; the user's own arguments come last and are otherwise untouched.
CURL_WRAPPER = r"""
set -o pipefail
curl() {
  local code
  code=$(command curl -sS -o "$EXAMPLE_BODY" -w '%{http_code}' "$@") || return $?
  printf '%s\n' "$code" >> "$EXAMPLE_CODES"
  case "$code" in
    2??) return 0 ;;
    *) echo "HTTP $code: $(cat "$EXAMPLE_BODY")" >&2; return 22 ;;
  esac
}
"""

# Reads from the views, and what their answer shows once the change feed has caught up with the examples before
# them. Every such example must have a check here (the test says so), or it could pass on stale views by luck.
VIEW_ROUTE = re.compile(r"/assignments(\?|/summary|$)|/targets/")
Check = Callable[[Any], bool]
CAUGHT_UP: dict[str, tuple[str, Check]] = {
    "/assignments?role=assignee": (
        "alan's inbox holds intro-chat.1, delegated to him",
        lambda body: "intro-chat.1" in [item["id"] for item in body["items"]],
    ),
    "/assignments/summary?role=originator": (
        "ada's sent items count the delegated intro-chat",
        lambda body: body["counts"]["delegated"] >= 1,
    ),
    "/targets/chat/chat-42/assignments": ("chat-42's roster is not empty", lambda body: len(body["items"]) > 0),
    "/targets/chat/chat-42/summary": ("chat-42's summary counts something", lambda body: body["total"] > 0),
}


def api_section(readme: str) -> str:
    after = readme.split("\n## API\n", 1)[1]
    return after.split("\n## ", 1)[0]


def shell_commands(block: str) -> list[str]:
    """The commands of a bash block as the shell reads them: backslash-newline joins lines, a quoted string may span
    lines, comment lines are skipped (a trailing comment stays: the shell ignores it)."""
    commands: list[str] = []
    pending = ""
    for line in block.replace("\\\n", "").splitlines(keepends=True):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # a quote still open: the command goes on
            continue
        commands.append(pending.strip())
        pending = ""
    assert not pending, f"unterminated command in the README: {pending!r}"
    return commands


def readme_examples() -> list[str]:
    blocks = re.findall(r"^```bash\n(.*?)^```", api_section(README.read_text()), re.DOTALL | re.MULTILINE)
    return [command for block in blocks for command in shell_commands(block)]


def is_curl(command: str) -> bool:
    return command.startswith("curl ")


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    body: Any


NOW = "<now>"


def curl_request(command: str) -> Request:
    args = shlex.split(command, comments=True)
    method, headers, body, url = "GET", {}, None, ""
    position = 1
    while position < len(args):
        arg = args[position]
        if arg in ("-X", "-H", "-d"):
            value = args[position + 1]
            position += 1
            if arg == "-X":
                method = value
            elif arg == "-H":
                name, _, header = value.partition(":")
                headers[name.strip().lower()] = re.sub(r"^Bearer \$(\w+)$", r"Bearer \1", header.strip())
            else:
                body = json.loads(re.sub(r"\$\(date [^)]*\)", NOW, value))
        elif not arg.startswith("-"):
            url = arg
        position += 1
    return Request(method, url, headers, body)


@dataclass
class Outcome:
    returncode: int
    codes: list[str]
    body: str
    output: str


def run_in_bash(command: str, env: dict[str, str], scratch: Path) -> Outcome:
    body, codes = scratch / "body", scratch / "codes"
    for path in (body, codes):
        path.write_text("")
    script = CURL_WRAPPER + command
    completed = subprocess.run(
        ["bash", "-c", script],
        cwd=REPO_ROOT,
        env={**env, "EXAMPLE_BODY": str(body), "EXAMPLE_CODES": str(codes)},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    return Outcome(
        completed.returncode, codes.read_text().split(), body.read_text(), completed.stdout + completed.stderr
    )


def view_check(command: str) -> tuple[str, Check] | None:
    request = curl_request(command)
    path = request.url.removeprefix(README_BASE)
    for key, check in CAUGHT_UP.items():
        if path.startswith(key):
            return check
    assert request.method != "GET" or not VIEW_ROUTE.match(path), (
        f"{path} reads the views: give it a check in CAUGHT_UP so that it waits for the change feed"
    )
    return None


def test_every_api_example_of_the_readme_runs_as_written(
    run_command: StartRunCommand,
    cosmos_service: RunningService,
    azurite_service: RunningService,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    examples = readme_examples()
    assert sum(is_curl(command) for command in examples) >= 15, "the API section's examples were not found"
    operators = [command for command in examples if not is_curl(command)]
    assert all(command.startswith(".venv/bin/python -m ops ") for command in operators), operators

    # The app's settings, known to the test so the operators' commands can be given the same ones.
    suffix = uuid.uuid4().hex[:8]
    settings = {
        "COSMOS_ENDPOINT": cosmos_service.endpoint,
        "COSMOS_KEY": cosmos_service.key,
        "COSMOS_DATABASE": f"readme-{suffix}",
        "AzureWebJobsStorage": azurite_service.connection_string,
        "NOTIFICATIONS_QUEUE": f"readme-notifications-{suffix}",
        "CHANGES_RETRY_QUEUE": f"readme-retry-{suffix}",
    }
    command = run_command(**settings)
    base = command.wait_for_line(r"running locally at (http://\S+)").group(1)
    tokens = printed_exports(command)
    command.wait_for_line(r"^curl -s ")  # the banner is complete

    shell = {k: v for k, v in os.environ.items() if k not in CLEARED and not k.startswith(("AUTH_", "COSMOS_"))}
    shell.update(tokens)  # the pasted exports
    admin = claims_of(tokens["TOKEN_ADMIN"])
    operator_shell = {**shell, **settings, "AUTH_TENANT_ID": admin["tid"], "AUTH_AUDIENCE": admin["aud"]}

    ran = 0
    for example in examples:
        line = example.replace(README_BASE, base)
        label = " ".join(example.split())[:110]
        check = view_check(example) if is_curl(example) else None
        deadline = time.monotonic() + CATCH_UP_DEADLINE_S
        attempts = 0
        while True:
            attempts += 1
            outcome = run_in_bash(line, shell if is_curl(example) else operator_shell, tmp_path)
            caught_up = outcome.returncode == 0 and (check is None or check[1](json.loads(outcome.body)))
            if caught_up or outcome.returncode != 0 or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        ran += 1
        assert outcome.returncode == 0, (
            f"README example failed (exit {outcome.returncode}): {example}\n{outcome.output}"
        )
        if is_curl(example):
            assert outcome.codes, f"no curl ran: {example}"
            assert all(code.startswith("2") for code in outcome.codes), (example, outcome.codes)
        if check is not None:
            assert caught_up, (
                f"after {CATCH_UP_DEADLINE_S} s the views still do not show that {check[0]}: {example}\n{outcome.body}"
            )
        waited = f" (views caught up after {attempts} tries)" if attempts > 1 else ""
        print(f"{' '.join(outcome.codes) or 'exit 0'}  {label}{waited}")

    curls = sum(is_curl(example) for example in examples)
    summary = f"{ran} README examples ran ({curls} curl, {ran - curls} operators' commands)"
    print(f"{summary} in {time.monotonic() - started:.1f} s")
    assert command.stop() == 0


def http_file_requests(text: str) -> list[Request]:
    """The requests of a REST Client file: `@name = value` variables, `###` separators, `#` comments."""
    variables = dict(re.findall(r"^@(\w+) = (.*)$", text, re.MULTILINE))
    requests: list[Request] = []
    for chunk in re.split(r"^###.*$", text, flags=re.MULTILINE)[1:]:
        lines = [line for line in chunk.strip().splitlines() if not line.startswith(("#", "//"))]
        head, _, body = "\n".join(lines).partition("\n\n")
        request_line, *header_lines = head.splitlines()
        method, url = request_line.split()[:2]

        def resolve(value: str) -> str:
            value = re.sub(r"\{\{(\w+)\}\}", lambda match: variables[match.group(1)], value)
            return re.sub(r"\{\{\$processEnv (\w+)\}\}", r"\1", value)

        headers = {}
        for header in header_lines:
            name, _, value = header.partition(":")
            headers[name.strip().lower()] = resolve(value.strip())
        parsed = json.loads(body.replace("{{$datetime iso8601}}", NOW)) if body.strip() else None
        requests.append(Request(method, resolve(url), headers, parsed))
    return requests


def test_requests_http_holds_the_readme_examples_in_order() -> None:
    readme = [curl_request(command) for command in readme_examples() if is_curl(command)]
    http_file = http_file_requests(REQUESTS_HTTP.read_text())
    assert http_file == readme
