"""Fuzzing: schemathesis sends generated requests to function_app's own functions over a real socket (the local
host on a free port) and judges every answer against the document the app serves at /openapi.json.

One run per kind of caller, each with its own database holding the demo data of `scripts/run` (the document's
examples name it): a user with the API's scope (grace, who holds `demo-welcome` and may claim `demo-task`), an
app-only admin, an app-only reporter, and a run in which every request carries one of a set of bad
credentials (none, expired, forged, another tenant's or audience's, no scope, no role).

Bounded: `MAX_EXAMPLES` generated requests per operation in the fuzzing phase (valid and invalid ones mixed;
fewer only where an operation has fewer distinct requests), for every caller, besides the document's examples,
the coverage phase's boundary cases (for the user) and the stateful scenarios; a fixed seed; two workers; and
one budget of wall time for the four runs, past which a run is stopped and fails rather than let CI hang. Each
run prints its wall time and the CPU time it took: the first grows with whatever else shares the cores.

The checks: no 5xx (`not_a_server_error`), and every answer as documented: its status, content type, body
schema and required headers; an operation that answered 2xx with a token must refuse the same request
without one (`ignored_auth`). Stateful runs follow the document's OpenAPI links (create -> read -> delegate,
...) and the links schemathesis infers. When this fails, the output names the operation, the request (as a
curl command) and the answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from core.bootstrap import Runtime
from core.openapi import EXAMPLE_TARGET_ID, EXAMPLE_TARGET_TYPE
from localhost.app_settings import app_settings_of
from localhost.demo import GRACE, WELCOME_ID, seed_demo_data
from localhost.indexing import index_app
from localhost.services import REPO_ROOT
from localhost.stack import make_settings
from tests.localhost.conftest import StartHost
from tests.localhost.fuzz_hooks import AUTHORIZATIONS_VARIABLE
from tests.support.app import TEST_AUDIENCE, TEST_TENANT, InstallRuntime, Tokens
from tests.support.services import RunningService
from tests.support.tokens import JwksServer, SigningKey, TokenFactory, unsigned_token, v2_issuer

MAX_EXAMPLES = 50
SEED = 20261201
WORKERS = 2
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "ignored_auth",
)
ALL_PHASES = "examples,coverage,fuzzing,stateful"
# One budget for the four runs together. With 22 operations they take about 70 s on two cores with little
# else to do (15-25 s each; schemathesis itself 50-70 s of CPU), and up to twice that while other work shares
# the cores. Past the budget a run is stopped and its test fails, so the whole suite (8-9 minutes without
# fuzzing) stays under 15 minutes even when fuzzing hangs.
FUZZ_BUDGET_S = 300
# The local host answers TRACE and QUERY with http.server's own 501 (it serves the methods the Functions host
# routes to functions); the coverage phase's unexpected-method probes keep to the others.
CONFIG = """\
[phases.coverage]
unexpected-methods = ["get", "put", "post", "delete", "options", "patch"]
"""
OTHER_TENANT = "11111111-1111-1111-1111-111111111111"


def _bearer(token: str) -> str:
    return f"Bearer {token}"


def _bad_authorizations(tokens: Tokens) -> list[str | None]:
    """Credentials the API must refuse: 401 for the unusable ones, 403 for valid tokens without access."""
    grace: dict[str, Any] = {"oid": GRACE.user_key, "groups": GRACE.groups}
    claims = tokens.factory.user_claims(upn=GRACE.upn, oid=GRACE.user_key)
    stranger = TokenFactory(tenant_id=TEST_TENANT, audience=TEST_AUDIENCE, key=SigningKey())
    return [
        None,
        "Bearer",
        "Basic Z3JhY2U6c2VjcmV0",
        "Bearer not-a-jwt",
        _bearer(tokens.user(GRACE.upn, lifetime=-600, **grace)),
        _bearer(tokens.user(GRACE.upn, aud="api://another-api", **grace)),
        _bearer(tokens.user(GRACE.upn, tid=OTHER_TENANT, iss=v2_issuer(OTHER_TENANT), **grace)),
        _bearer(stranger.user_token(upn=GRACE.upn, oid=GRACE.user_key)),
        _bearer(unsigned_token(claims)),
        _bearer(tokens.user(GRACE.upn, scopes=None, **grace)),
        _bearer(tokens.user(GRACE.upn, scopes="User.Read", **grace)),
        _bearer(tokens.factory.app_token(app_id="no-role-app", roles=())),
    ]


def _authorizations(who: str, tokens: Tokens) -> list[str | None]:
    if who == "user":
        return [_bearer(tokens.user(GRACE.upn, oid=GRACE.user_key, groups=GRACE.groups))]
    if who == "admin":
        return [_bearer(tokens.admin_app())]
    if who == "reporter":
        return [_bearer(tokens.reporter_app())]
    return _bad_authorizations(tokens)


@pytest.fixture
def fuzz_host(
    start_host: StartHost,
    own_runtime: InstallRuntime,
    cosmos_service: RunningService,
    azurite_service: RunningService,
    jwks_server: JwksServer,
) -> str:
    """function_app on the local host, over a database and queues of its own holding the demo data; its URL.

    The host's bindings (the change feed the views are projected from, the retry and notification queues)
    name this runtime's database and queues, not the session's: the lists, rosters and summaries the
    fuzzer reads are the projections of what it writes."""
    suffix = uuid.uuid4().hex[:12]
    settings = make_settings(
        cosmos_service,
        azurite_service,
        jwks_server,
        CHANGES_RETRY_QUEUE=f"fuzz-retry-{suffix}",
        NOTIFICATIONS_QUEUE=f"fuzz-notify-{suffix}",
    )
    runtime = Runtime(settings)
    own_runtime(runtime)
    assert settings.azure_web_jobs_storage is not None
    for queue in (settings.changes_retry_queue, settings.notifications_queue):  # as infra/ provisions them
        QueueClient.from_connection_string(settings.azure_web_jobs_storage, queue).create_queue()
    seed_demo_data(runtime)  # creates the containers the change-feed listener checks for at start
    welcome = runtime.store.read(settings.auth_tenant_ids[0], WELCOME_ID)
    assert welcome is not None
    assert (welcome.target_type, welcome.target_id) == (EXAMPLE_TARGET_TYPE, EXAMPLE_TARGET_ID), (
        "the document's target examples name the demo welcome's target"
    )
    return start_host(index_app("function_app"), settings=app_settings_of(settings)).url


@pytest.fixture(scope="module")
def fuzz_deadline() -> float:
    """When the module's fuzzing must be over (`time.monotonic()`), counted from its first run."""
    return time.monotonic() + FUZZ_BUDGET_S


def run_schemathesis(
    url: str, authorizations: list[str | None], *, phases: str, workdir: Path, timeout: float
) -> tuple[int, str]:
    """The schemathesis CLI against `url`, in a process of its own; its exit code and everything it printed."""
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    env = {key: value for key, value in os.environ.items() if not key.startswith("SCHEMATHESIS_")}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        SCHEMATHESIS_HOOKS="tests.localhost.fuzz_hooks",
        **{AUTHORIZATIONS_VARIABLE: json.dumps(authorizations)},
    )
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--no-color",
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        phases,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        str(WORKERS),
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--output-sanitize",
        "false",
    ]
    try:
        done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        output = expired.stdout if isinstance(expired.stdout, str) else (expired.stdout or b"").decode()
        raise AssertionError(
            f"schemathesis was stopped: the fuzzing budget ({FUZZ_BUDGET_S} s for all runs) ran out; output so far:\n"
            + output
        ) from None
    return done.returncode, done.stdout + done.stderr


def cpu_of(before: os.times_result, after: os.times_result) -> str:
    """CPU time spent between two `os.times()`: schemathesis's own (a child process), and this process's,
    which runs the local host and the app (the emulators' is not counted)."""
    fuzzer = after.children_user + after.children_system - before.children_user - before.children_system
    host = after.user + after.system - before.user - before.system
    return f"CPU: schemathesis {fuzzer:.0f} s, the host and the app {host:.0f} s"


def figures_of(output: str) -> str:
    """The phases' figures and the summary, without the per-failure details and warnings in between."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if "Examples (in" in line or "Coverage (in" in line), 0)
    end = next((i for i, line in enumerate(lines) if i > start and line.startswith("====")), len(lines))
    summary = next((i for i, line in enumerate(lines) if "SUMMARY" in line and line.startswith("====")), len(lines))
    return "\n".join(lines[start:end] + lines[summary:])


@pytest.mark.parametrize(
    ("who", "phases"),
    [
        ("user", ALL_PHASES),
        # The coverage phase's boundary inputs are judged by the same validation whoever sends them: once, above.
        ("admin", "examples,fuzzing,stateful"),
        # A reporter creates nothing, so it has no state to explore.
        ("reporter", "examples,fuzzing"),
        # Every request is refused before its input is looked at.
        ("bad", "examples,fuzzing"),
    ],
)
def test_fuzz_against_the_served_document(
    who: str, phases: str, fuzz_host: str, tokens: Tokens, tmp_path: Path, fuzz_deadline: float
) -> None:
    started, cpu_before = time.monotonic(), os.times()
    left = fuzz_deadline - started
    assert left > 0, f"the fuzzing budget ({FUZZ_BUDGET_S} s for all runs) was spent before this run"
    authorizations = _authorizations(who, tokens)
    code, output = run_schemathesis(fuzz_host, authorizations, phases=phases, workdir=tmp_path, timeout=left)
    print(f"schemathesis as {who}, {time.monotonic() - started:.0f} s ({cpu_of(cpu_before, os.times())}):")
    print(figures_of(output))
    assert code == 0, f"schemathesis found failures as {who}:\n{output}"
