"""`scripts/token`: a development token for any user or app, tenant, scopes and roles, signed by the running run
command's development signer, so its host accepts it. Prints just the token.

The signer's key exists only while the run command runs; it shares it through a private file (see
`localhost.shared_signer`). Like the signer, this refuses to run on an Azure instance (`WEBSITE_INSTANCE_ID`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.request
import uuid
from collections.abc import Mapping, Sequence

from localhost.demo import DEMO_USERS
from localhost.dev_signer import (
    DEV_TOKEN_LIFETIME_SECONDS,
    LOCAL_ADMIN_APP,
    LOCAL_REPORTER_APP,
    SigningKey,
    TokenFactory,
    is_azure_instance,
)
from localhost.shared_signer import SharedSigner, SharedSignerError, read_shared

DEFAULT_SCOPE = "Assignments.ReadWrite"
# Keys derived for users and apps not named with --oid: stable across runs, so a user keeps their identity.
KEY_NAMESPACE = uuid.UUID("0d5c3a52-6c1e-4f0b-9a8e-2b7d4c6e1f30")

EPILOG = f"""examples:
  scripts/token --upn dora@contoso.com --oid 0b6f2c1e-5d5e-4c4f-9a43-1f0e0f1d2c3b
  scripts/token --upn ada@contoso.com --roles Assignments.Admin         a delegated admin (user token)
  scripts/token --app my-etl-app --roles Assignments.Report             an app-only token
  export TOKEN_DORA=$(scripts/token --upn dora@contoso.com)

defaults:
  --oid     for ada, grace and alan @contoso.com their demo keys; for {LOCAL_ADMIN_APP.app_id} and
            {LOCAL_REPORTER_APP.app_id} (the banner's apps) their object ids; otherwise a key derived from the
            tenant and the UPN or app id, the same in every run
  --groups  for the demo users their groups; otherwise none (a token without `groups`, as for overage)
  --scp     {DEFAULT_SCOPE} for a user token; --scp "" leaves `scp` out. An app-only token never has `scp`.
  --tid     the run command's first tenant (the demo data's). It trusts a second, empty one too; a token of any
            other tenant is refused by the host (401), which this warns about.
  --port    the only run command running; with several, name one by its HTTP port"""


class MintError(Exception):
    """A reason not to mint that the user can fix; printed without a traceback."""


def _names(values: Sequence[str] | None) -> list[str]:
    """Values given comma- or space-separated, or by repeating the option."""
    return [name for value in values or () for name in re.split(r"[,\s]+", value) if name]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/token",
        description="Mint a development token, signed by the running run command's (scripts/run) development "
        "signer, and print just the token. --upn makes a user (delegated) token; without it, --app makes an "
        "app-only token (no scp, idtyp app, sub = oid).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--upn", help="the user's UPN (preferred_username): a user token")
    parser.add_argument("--oid", help="the user's or app's object id (oid): its user key")
    parser.add_argument("--tid", help="the tenant id (tid)")
    parser.add_argument("--scp", action="append", help=f"delegated scopes (default {DEFAULT_SCOPE})")
    parser.add_argument("--roles", action="append", help="app roles, e.g. Assignments.Admin, Assignments.Report")
    parser.add_argument("--groups", action="append", help="group object ids (groups)")
    parser.add_argument(
        "--app", help="the client app id (azp): the calling app of a user token, or the app of an app-only token"
    )
    parser.add_argument(
        "--lifetime",
        type=int,
        default=DEV_TOKEN_LIFETIME_SECONDS,
        help=f"seconds until it expires (default {DEV_TOKEN_LIFETIME_SECONDS}); negative gives an expired token",
    )
    parser.add_argument("--port", type=int, help="the HTTP port of the run command whose signer signs it")
    return parser


def _serves_its_key(signer: SharedSigner) -> bool:
    """Whether the run command that shared `signer` still runs: its JWKS answers with that key."""
    if not signer.jwks_uri.startswith("http://127.0.0.1:"):
        return False  # only ever a loopback URL the signer wrote; anything else is not ours to fetch
    try:
        with urllib.request.urlopen(signer.jwks_uri, timeout=3) as response:  # noqa: S310 - loopback http, checked above
            keys = json.loads(response.read())["keys"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return any(isinstance(key, dict) and key.get("kid") == signer.kid for key in keys)


def choose_signer(environ: Mapping[str, str], port: int | None) -> SharedSigner:
    try:
        running = [signer for signer in read_shared(environ) if _serves_its_key(signer)]
    except SharedSignerError as error:
        raise MintError(f"no run command is sharing a development signer ({error}); start scripts/run") from None
    if port is not None:
        chosen = [signer for signer in running if signer.port == port]
        if not chosen:
            raise MintError(f"no run command with a development signer is running on port {port}")
        return chosen[0]
    if not running:
        raise MintError("no run command with a development signer is running; start scripts/run")
    if len(running) > 1:
        ports = ", ".join(str(signer.port) for signer in running)
        raise MintError(f"run commands are running on ports {ports}: choose one with --port")
    return running[0]


def _derived_key(tenant_id: str, name: str) -> str:
    return str(uuid.uuid5(KEY_NAMESPACE, f"{tenant_id}:{name}"))


def mint(args: argparse.Namespace, signer: SharedSigner) -> str:
    tenant_id = args.tid or signer.tenant_ids[0]
    if tenant_id not in signer.tenant_ids:
        trusted = ", ".join(signer.tenant_ids)
        print(f"warning: the run command trusts tenants {trusted}: its host refuses this token (401)", file=sys.stderr)
    factory = TokenFactory(
        tenant_id=tenant_id,
        audience=signer.audience,
        key=SigningKey.from_pem(signer.kid, signer.private_pem),
        client_app_id=args.app or signer.client_app_id,
    )
    roles = _names(args.roles)
    if args.upn is None:
        if args.app is None:
            raise MintError("give --upn for a user token, or --app for an app-only token")
        if args.scp is not None:
            raise MintError("an app-only token has no scp (that is what makes it app-only); drop --scp or add --upn")
        if args.groups is not None:
            raise MintError("--groups is for user tokens; add --upn")
        local_apps = {app.app_id: app.object_id for app in (LOCAL_ADMIN_APP, LOCAL_REPORTER_APP)}
        oid = args.oid or local_apps.get(args.app) or _derived_key(tenant_id, f"app:{args.app}")
        return factory.app_token(app_id=args.app, oid=oid, roles=roles, lifetime=args.lifetime)
    upn = args.upn.strip()
    demo = next((user for user in DEMO_USERS if user.upn == upn.lower()), None)
    oid = args.oid or (demo.user_key if demo else _derived_key(tenant_id, upn.lower()))
    groups = _names(args.groups) if args.groups is not None else list(demo.groups if demo else ())
    scopes = " ".join(_names(args.scp)) if args.scp is not None else DEFAULT_SCOPE
    return factory.user_token(
        oid=oid, upn=upn, scopes=scopes or None, roles=roles, groups=groups, lifetime=args.lifetime
    )


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    args = _parser().parse_args(argv)
    try:
        if is_azure_instance(environ):
            raise MintError(
                "refusing to mint a development token: WEBSITE_INSTANCE_ID is set, so this is an Azure instance, "
                "where no development signer may run"
            )
        token = mint(args, choose_signer(environ, args.port))
    except MintError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(token)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
