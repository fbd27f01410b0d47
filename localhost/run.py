"""The run command (`scripts/run`, or `.venv/bin/python -m localhost`): the app, locally, in one step.

1. Refuses to run on an Azure instance (`WEBSITE_INSTANCE_ID` set).
2. Starts the Cosmos DB emulator and Azurite, unless `COSMOS_ENDPOINT` / `AzureWebJobsStorage` name services to
   use instead.
3. With `LOCAL_DEV_SIGNER` (default 1 here), starts the development token signer and trusts only it; once the host
   listens, shares the signer's key with `scripts/token` (`localhost.shared_signer`).
4. Creates the database and containers, seeds the demo data, and starts the local host on `PORT` (default
   7071; 0 picks a free port) with `function_app.py`'s own functions.
   With `Host.CORS` in local.settings.json (or `--cors`), the host does CORS as `func start` does.
5. Prints what runs where, tokens for the demo users, an admin app and a reporter app, and a curl command that
   answers 200.

Ctrl-C (SIGINT), SIGTERM and SIGHUP stop the host, the signer and the emulators it started, and remove their
temporary folders.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient
from pydantic import ValidationError

from core.bootstrap import Runtime, get_runtime, set_runtime
from core.settings import Settings
from localhost.app_settings import app_settings_of
from localhost.cors import CorsConfigError, CorsPolicy, read_host_section
from localhost.demo import GRACE, WELCOME_ID, DemoData, DemoUser, seed_demo_data
from localhost.dev_signer import (
    DEV_TOKEN_LIFETIME_SECONDS,
    LOCAL_ADMIN_APP,
    LOCAL_REPORTER_APP,
    DevSigner,
    DevSignerRefused,
    refuse_in_azure,
)
from localhost.host import LocalHost
from localhost.indexing import index_app
from localhost.services import RunningService, start_azurite, start_cosmos
from localhost.shared_signer import SharedSignerError

log = logging.getLogger("localhost")

DEFAULT_PORT = 7071
# Read from the current directory, as func start reads it; scripts/run runs at the repository root. Only its Host
# section's CORS keys are used: the Values are func start's, and would point the run command at other services.
LOCAL_SETTINGS_FILE = "local.settings.json"
EPILOG = """settings (environment variables):
  PORT                 the HTTP port (default 7071; 0 picks a free one)
  LOCAL_DEV_SIGNER     1 (default here) trusts the development token signer; 0 uses the AUTH_* settings
  COSMOS_ENDPOINT      use this Cosmos DB account (with COSMOS_KEY) instead of starting the emulator
  AzureWebJobsStorage  use this Storage account instead of starting Azurite
  XDG_RUNTIME_DIR      where the signer is shared with scripts/token (default <tmp>/assignments-localhost-<uid>)
Every other setting of local.settings.sample.json is read from the environment too.
scripts/token mints more tokens while this runs: scripts/token --help"""


class StartupError(Exception):
    """A reason not to start that the user can fix; printed without a traceback."""


class _StopOnSignal:
    """The handler of every stop signal: the first one unwinds `run` (its ExitStack stops everything it started);
    later ones are ignored, so an impatient second Ctrl-C cannot cut that cleanup short and leave emulators and
    their folders behind."""

    def __init__(self) -> None:
        self.stopping = False  # also set by `run` once it unwinds for any other reason

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            return
        self.stopping = True
        raise KeyboardInterrupt

    def install(self) -> None:
        # SIGINT even when inherited as ignored: a shell starts background jobs (`scripts/run &` in a script) and
        # some CI runners start their steps that way, and their `kill -INT` (a runner's cancel, a test's Ctrl-C)
        # must still stop the run command.
        # SIGHUP (the terminal went away) unless inherited as ignored: that is `nohup`, asking for exactly that.
        signal.signal(signal.SIGINT, self)
        signal.signal(signal.SIGTERM, self)
        if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
            signal.signal(signal.SIGHUP, self)


def _say(text: str) -> None:
    """Print, even when the terminal is gone (after SIGHUP): then stdout goes to /dev/null instead of raising."""
    try:
        print(text, flush=True)
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


_STOP = _StopOnSignal()


def _start_services(environ: Mapping[str, str], stack: contextlib.ExitStack) -> tuple[dict[str, str], list[str]]:
    values: dict[str, str] = {}
    lines: list[str] = []

    def started(service: RunningService, label: str) -> None:
        stack.callback(service.stop)
        lines.append(f"  {label:<22} {service.endpoint}  (started here, pid {service.pid}, log {service.log_path})")

    if environ.get("COSMOS_ENDPOINT"):
        lines.append(f"  {'Cosmos DB':<22} {environ['COSMOS_ENDPOINT']}  (COSMOS_ENDPOINT)")
    else:
        cosmos = start_cosmos()
        started(cosmos, "Cosmos DB emulator")
        values.update(COSMOS_ENDPOINT=cosmos.endpoint, COSMOS_KEY=cosmos.key, CosmosDB=cosmos.connection_string)
    if environ.get("AzureWebJobsStorage"):
        lines.append(f"  {'Storage':<22} (AzureWebJobsStorage)")
    else:
        azurite = start_azurite()
        started(azurite, "Azurite")
        values["AzureWebJobsStorage"] = azurite.connection_string
    return values, lines


def _settings(values: Mapping[str, str]) -> Settings:
    os.environ.update(values)  # app settings are environment variables, on Azure as under `func start`
    try:
        return Settings()
    except ValidationError as error:
        missing = ", ".join(str(e["loc"][0]) for e in error.errors())
        raise StartupError(
            f"these settings are missing or invalid: {missing} (with LOCAL_DEV_SIGNER=0 the AUTH_* settings "
            "must name a real identity provider)"
        ) from None


def _token_name(user: DemoUser) -> str:
    return user.upn.split("@")[0].upper()


def _create_queues(settings: Settings) -> None:
    """The queues infra/ provisions in Azure: a queue trigger's queue is not created by the host."""
    connection = settings.azure_web_jobs_storage
    if not connection:
        return
    for name in (settings.notifications_queue, settings.changes_retry_queue):
        for queue in (name, f"{name}-poison"):
            with contextlib.suppress(ResourceExistsError):
                QueueClient.from_connection_string(connection, queue).create_queue()


def _operator_exports(settings: Settings) -> str:
    """The settings `python -m ops` needs, to point it at this run (the emulators' keys are public)."""
    values = {
        "COSMOS_ENDPOINT": settings.cosmos_endpoint,
        "COSMOS_KEY": settings.cosmos_key or "",
        "COSMOS_DATABASE": settings.cosmos_database,
        "AzureWebJobsStorage": settings.azure_web_jobs_storage or "",
        "AUTH_TENANT_ID": ",".join(settings.auth_tenant_ids),
        "AUTH_AUDIENCE": ",".join(settings.auth_audiences),
    }
    return "  export " + " ".join(f"{name}='{value}'" for name, value in values.items())


def _banner(
    host: LocalHost, services: list[str], signer: DevSigner | None, demo: DemoData, cors: CorsPolicy | None
) -> str:
    url = host.url
    lines = [
        "",
        f"Assignments is running locally at {url}   (Ctrl-C stops it and everything it started)",
        "",
        "Functions:",
        *(f"  {description}" for description in host.descriptions),
        "",
        "Services:",
        *services,
    ]
    if signer is not None:
        lines.append(
            f"  {'Development signer':<22} {signer.jwks_uri}  (tokens for this run only; scripts/token mints more)"
        )
    lines += [
        "",
        "Demo data: users " + ", ".join(f"{u.upn} (key {u.user_key})" for u in demo.users),
        f"  assignments {', '.join(demo.assignment_ids)}; unassigned task {demo.task_id} "
        f"for candidate group {demo.candidate_group}",
        "",
        f"Health:  curl -s {url}/health",
        "Operators (python -m ops …) against this run:",
        _operator_exports(get_runtime().settings),
        f"CORS:    {cors.describe() if cors else 'off'}  (Host.CORS / Host.CORSCredentials of local.settings.json)",
        "",
    ]
    if signer is None:
        lines.append("(LOCAL_DEV_SIGNER=0: bring a token from your identity provider.)")
        return "\n".join(lines)
    hours = DEV_TOKEN_LIFETIME_SECONDS // 3600
    users = " / ".join(f"TOKEN_{_token_name(user)}" for user in demo.users)
    lines += [
        f"Tokens (valid {hours} h, for this run only); paste these lines into your shell:",
        *(
            f"  export TOKEN_{_token_name(user)}="
            + signer.user_token(oid=user.user_key, upn=user.upn, groups=user.groups)
            for user in demo.users
        ),
        f"  export TOKEN_ADMIN={signer.app_token(LOCAL_ADMIN_APP)}",
        f"  export TOKEN_REPORTER={signer.app_token(LOCAL_REPORTER_APP)}",
        f"  # {users}: the demo users, delegated, scope Assignments.ReadWrite",
        f"  # TOKEN_ADMIN: app-only, app {LOCAL_ADMIN_APP.name} (appId {LOCAL_ADMIN_APP.app_id}), role "
        "Assignments.Admin: what an operator's script holds",
        f"  # TOKEN_REPORTER: app-only, app {LOCAL_REPORTER_APP.name} (appId {LOCAL_REPORTER_APP.app_id}), role "
        "Assignments.Report",
        f"  # Any other user, tenant ({', '.join(signer.tenant_ids)} are trusted), scope or role: scripts/token --help",
        "",
        "Then, for example, ada creates an assignment for alan:",
        f'  curl -s -X POST {url}/assignments -H "Authorization: Bearer $TOKEN_ADA" '
        """-H "Content-Type: application/json" -d '{"targetType": "document", "targetId": "handbook", """
        """"assigneeEmail": "alan@contoso.com", "completionCriteria": "manual"}'""",
        "",
        f"Try it: {GRACE.upn} reads the assignment made for her (answers 200 once the exports above are pasted):",
        "",
        f'curl -s {url}/assignments/{WELCOME_ID} -H "Authorization: Bearer $TOKEN_{_token_name(GRACE)}"',
        "",
    ]
    return "\n".join(lines)


def cors_policy(cors: str | None, credentials: bool | None, settings_file: Path) -> CorsPolicy | None:
    """CORS as `func start` resolves it: `--cors` / `--cors-credentials` when given, else the `Host` section of
    local.settings.json in the current directory."""
    try:
        host = read_host_section(settings_file)
        return CorsPolicy.from_setting(
            host.cors if cors is None else cors,
            credentials=host.cors_credentials if credentials is None else credentials,
        )
    except CorsConfigError as error:
        raise StartupError(str(error)) from None


def _start(environ: Mapping[str, str], port: int, cors: CorsPolicy | None, stack: contextlib.ExitStack) -> str:
    """Start everything, each registered on `stack` to be stopped; returns the banner."""
    values, service_lines = _start_services(environ, stack)
    signer: DevSigner | None = None
    if environ.get("LOCAL_DEV_SIGNER", "1").strip().lower() in ("1", "true"):
        signer = DevSigner(environ=environ)
        stack.callback(signer.stop)
        values.update(signer.app_settings())
    settings = _settings({**environ, **values})
    app_settings = {**app_settings_of(settings), **environ, **values}
    os.environ.update(app_settings)
    runtime = Runtime(settings)
    set_runtime(runtime)
    runtime.store  # noqa: B018 - creates the database and containers now rather than at the first request
    _create_queues(settings)
    demo = seed_demo_data(runtime)
    try:
        host = LocalHost(index_app("function_app"), app_settings, port=port, cors=cors)
    except OSError as error:
        raise StartupError(f"cannot listen on 127.0.0.1:{port} ({error.strerror}); set PORT to another port") from None
    stack.callback(host.stop)
    host.start()
    if signer is not None:
        try:
            signer.share(host.http.port, environ)
        except SharedSignerError as error:
            raise StartupError(f"cannot share the development signer with scripts/token: {error}") from None
        # Unshared before the host lets go of its port, so the file named by the port is this run's until removed.
        stack.callback(signer.unshare)
    return _banner(host, service_lines, signer, demo, cors)


def run(environ: Mapping[str, str], *, cors: CorsPolicy | None = None) -> None:
    refuse_in_azure(environ)
    try:
        port = int(environ.get("PORT") or DEFAULT_PORT)
    except ValueError:
        raise StartupError(f"PORT must be a port number, not {environ['PORT']!r}") from None
    with contextlib.ExitStack() as stack:
        try:
            _say(_start(environ, port, cors, stack))
            while True:
                time.sleep(3600)  # until a stop signal; the ExitStack then stops everything, newest first
        finally:
            _STOP.stopping = True  # the stack unwinds now: no signal may interrupt that


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localhost",
        description="Serve function_app.py locally with the emulators, demo data and a development token signer.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--cors",
        help="comma-separated allowed CORS origins with no spaces, or * (as func start --cors; default: Host.CORS of "
        "local.settings.json, else CORS off)",
    )
    parser.add_argument(
        "--cors-credentials",
        action="store_const",
        const=True,
        help="allow cross-origin requests with credentials (as func start --cors-credentials; default: "
        "Host.CORSCredentials of local.settings.json, else false)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%X")
    logging.getLogger("azure").setLevel(logging.WARNING)
    _STOP.install()
    try:
        cors = cors_policy(args.cors, args.cors_credentials, Path.cwd() / LOCAL_SETTINGS_FILE)
        run(os.environ, cors=cors)
    except KeyboardInterrupt:
        _say("\nStopped.")
    except (StartupError, DevSignerRefused) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    return 0
