"""How the run command lets `scripts/token` sign with its development signer's key, which exists only in that run.

The run command writes the signer's private key, with what a token needs (JWKS URI, trusted tenants, audience),
to `signer-<port>.json` (named by the HTTP port it serves), and removes it when it stops. `scripts/token` reads it
and signs locally; before that it checks that the signer still serves that key, so a file left behind by a run
that was killed is never mistaken for a running one.

Only this user can read the key: the file is created 0600 and atomically renamed into place, in a directory this
user owns and only this user can open (0700), checked on every use so a directory someone else prepared (a
symlink, another owner, a wider mode) is refused rather than trusted. The directory is `$XDG_RUNTIME_DIR/
assignments-localhost` (a per-user tmpfs, cleared at logout), else `<tmp>/assignments-localhost-<uid>`.

The key can sign only tokens that this run's host accepts: nothing else trusts its JWKS, and the next run
generates another key. So a file left behind by `kill -9` is harmless, and is replaced by the next run on that
port.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DIRECTORY_NAME = "assignments-localhost"
FILE_PREFIX = "signer-"


class SharedSignerError(RuntimeError):
    """No usable shared signer: the reason is for the user, without a traceback."""


@dataclass(frozen=True)
class SharedSigner:
    port: int  # the run command's HTTP port
    jwks_uri: str
    tenant_ids: tuple[str, ...]  # the tenants the run command trusts; the first holds the demo data
    audience: str
    client_app_id: str  # `azp` of user tokens, unless told otherwise
    kid: str
    private_pem: bytes

    def to_json(self) -> str:
        return json.dumps(
            {
                "port": self.port,
                "jwksUri": self.jwks_uri,
                "tenantIds": list(self.tenant_ids),
                "audience": self.audience,
                "clientAppId": self.client_app_id,
                "kid": self.kid,
                "privateKey": self.private_pem.decode("ascii"),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SharedSigner:
        value = json.loads(text)
        return cls(
            port=int(value["port"]),
            jwks_uri=str(value["jwksUri"]),
            tenant_ids=tuple(str(tid) for tid in value["tenantIds"]),
            audience=str(value["audience"]),
            client_app_id=str(value["clientAppId"]),
            kid=str(value["kid"]),
            private_pem=str(value["privateKey"]).encode("ascii"),
        )


def shared_directory(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the run command shares its signer (see the module's docstring); not checked here."""
    runtime_dir = environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        return Path(runtime_dir) / DIRECTORY_NAME
    return Path(tempfile.gettempdir()) / f"{DIRECTORY_NAME}-{os.geteuid()}"


def private_directory(path: Path, *, create: bool) -> Path:
    """`path`, once it is known to be a real directory of this user's that nobody else can open."""
    if create:
        with contextlib.suppress(FileExistsError):  # then it is checked like any other
            path.mkdir(mode=0o700)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise SharedSignerError(f"{path} does not exist: no run command has shared a signer there") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise SharedSignerError(
            f"{path} must be a directory (not a link) owned by you with mode 0700, since it holds signing keys; "
            "it is not, so it is not used: remove it, or set XDG_RUNTIME_DIR to a private directory"
        )
    return path


def write_shared(signer: SharedSigner, environ: Mapping[str, str] = os.environ) -> Path:
    """Write `signer` for `scripts/token`, replacing any file a killed run left for the same port."""
    directory = private_directory(shared_directory(environ), create=True)
    final = directory / f"{FILE_PREFIX}{signer.port}.json"
    partial = directory / f".{FILE_PREFIX}{signer.port}.{uuid.uuid4().hex}.tmp"
    # 0600 from the start (never readable by others, not even briefly), and renamed into place so a reader never
    # sees half a file.
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(signer.to_json())
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return final


def read_shared(environ: Mapping[str, str] = os.environ) -> list[SharedSigner]:
    """Every signer shared in this user's directory, running or left behind, by port."""
    directory = private_directory(shared_directory(environ), create=False)
    signers: list[SharedSigner] = []
    for path in sorted(directory.glob(f"{FILE_PREFIX}*.json")):
        try:
            signers.append(SharedSigner.from_json(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced, or not ours to read: the others still count
    return sorted(signers, key=lambda signer: signer.port)
