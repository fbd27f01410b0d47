"""The local development token signer: real RS256 tokens, Entra-shaped, and a JWKS endpoint that serves its key.

With `LOCAL_DEV_SIGNER=1` the local host starts a `DevSigner`: a fresh RSA key, a JWKS server on 127.0.0.1, and
the `AUTH_*` settings that make the app's own token validation trust it. Nothing about validation changes: the
app fetches the signer's JWKS and verifies signatures, issuer, audience, tenant and lifetime as it does in Azure.

The signer must never run in Azure, where it would let anyone holding its key mint accepted tokens: it refuses to
start when `WEBSITE_INSTANCE_ID` (set on every App Service / Functions instance) is present, and `.funcignore`
keeps this package out of every deployment. The tests reuse these pieces (`tests/support/tokens.py`).

The run command shares the key with `scripts/token` (`localhost.mint`) for as long as it runs; see
`localhost.shared_signer` for how, and why that is safe.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from localhost.background_server import BackgroundServer
from localhost.shared_signer import SharedSigner, write_shared

# The tenant and audience of `local.settings.sample.json`, so both ways of running share them. Not a real tenant.
DEV_TENANT_ID = "00000000-0000-0000-0000-000000000000"
# A second tenant the run command trusts too, with no data, so tenant isolation can be tried locally
# (`scripts/token --tid`). Not a real tenant either.
DEV_OTHER_TENANT_ID = "11111111-1111-1111-1111-111111111111"
DEV_AUDIENCE = "api://assignments-local"
DEV_TOKEN_LIFETIME_SECONDS = 12 * 3600


@dataclass(frozen=True)
class LocalApp:
    """A client application the development signer issues app-only (client-credentials) tokens for."""

    name: str
    app_id: str  # the client id: `azp` (v2) / `appid` (v1), and `app:{app_id}` in actor fields
    object_id: str  # its service principal's object id: the token's `oid`, and its `sub`
    roles: tuple[str, ...]


# Fixed ids, so actor fields (`app:{app_id}`) read the same in every run. Not real applications.
LOCAL_ADMIN_APP = LocalApp(
    "assignments-local-admin",
    app_id="5e0a1c2d-3b4f-4a6e-8d7c-9f1e2d3c0a01",
    object_id="5e0a1c2d-3b4f-4a6e-8d7c-9f1e2d3c0b01",
    roles=("Assignments.Admin",),
)
LOCAL_REPORTER_APP = LocalApp(
    "assignments-local-reporter",
    app_id="5e0a1c2d-3b4f-4a6e-8d7c-9f1e2d3c0a02",
    object_id="5e0a1c2d-3b4f-4a6e-8d7c-9f1e2d3c0b02",
    roles=("Assignments.Report",),
)


class DevSignerRefused(RuntimeError):
    """The development signer was asked to start where it must not run (in Azure)."""


def is_azure_instance(environ: Mapping[str, str]) -> bool:
    """Whether the process runs on an Azure App Service / Functions instance, which sets WEBSITE_INSTANCE_ID."""
    return bool(environ.get("WEBSITE_INSTANCE_ID"))


def refuse_in_azure(environ: Mapping[str, str]) -> None:
    """Raise when the process runs on an Azure App Service / Functions instance."""
    if is_azure_instance(environ):
        raise DevSignerRefused(
            "Refusing to start the local development token signer: WEBSITE_INSTANCE_ID is set, so this is an Azure "
            "instance, where a development signer would let anyone mint accepted tokens. Unset LOCAL_DEV_SIGNER."
        )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def json_segment(value: Mapping[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def pairwise_subject(client_app_id: str, oid: str) -> str:
    """A user's `sub`: Entra makes it pairwise (one value per user and application), never the `oid`; only an
    app-only token's `sub` equals its `oid`. Same shape as Entra's: 43 base64url characters."""
    return b64url(hashlib.sha256(f"{client_app_id}:{oid}".encode()).digest())


def v2_issuer(tenant_id: str) -> str:
    return f"https://login.microsoftonline.com/{tenant_id}/v2.0"


def v1_issuer(tenant_id: str) -> str:
    return f"https://sts.windows.net/{tenant_id}/"


class SigningKey:
    """An RSA 2048 key pair with a `kid`: freshly generated, or loaded with `from_pem`."""

    def __init__(self, kid: str | None = None, private_key: rsa.RSAPrivateKey | None = None) -> None:
        self.kid = kid or uuid.uuid4().hex
        self.private_key = private_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self.public_pem = self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def from_pem(cls, kid: str, private_pem: bytes) -> SigningKey:
        key = serialization.load_pem_private_key(private_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("not an RSA private key")
        return cls(kid, key)

    def public_jwk(self) -> dict[str, str]:
        """The public half as Entra publishes it (minus `x5c`/`x5t`, which validators do not need)."""
        numbers = self.private_key.public_key().public_numbers()
        return {"kty": "RSA", "use": "sig", "kid": self.kid, "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}

    def sign(self, signing_input: bytes) -> bytes:
        return self.private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())


def sign_token(claims: Mapping[str, Any], key: SigningKey, header: Mapping[str, Any] | None = None) -> str:
    """An RS256 compact JWS. `header` entries override the default `{"alg", "typ", "kid"}`; a None value
    removes the entry (so `{"kid": None}` yields a token without a `kid`)."""
    full_header: dict[str, Any] = {"alg": "RS256", "typ": "JWT", "kid": key.kid}
    apply_overrides(full_header, header or {})
    signing_input = f"{json_segment(full_header)}.{json_segment(claims)}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode('ascii')))}"


def apply_overrides(target: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    for name, value in overrides.items():
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value


class TokenFactory:
    """Entra-shaped access tokens for one tenant and API.

    v2 tokens carry `preferred_username` and `azp`, the v2 issuer, and `audience` (the API's client-id
    GUID). v1 tokens carry `upn` and `appid`, the `sts.windows.net` issuer, and `v1_audience`
    (`api://{audience}` unless given). As Entra issues them, user tokens carry `idtyp: user` and a pairwise
    `sub` that differs from `oid`; app-only tokens carry `idtyp: app`, no `scp`, and `sub` equal to `oid`.
    Keyword overrides replace any claim; None removes it.
    """

    def __init__(
        self,
        tenant_id: str,
        audience: str,
        key: SigningKey,
        *,
        v1_audience: str | None = None,
        client_app_id: str = "11111111-2222-3333-4444-555555555555",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tenant_id = tenant_id
        self.audience = audience
        self.v1_audience = v1_audience or f"api://{audience}"
        self.key = key
        self.client_app_id = client_app_id
        self._clock = clock

    def user_claims(
        self,
        *,
        oid: str | None = None,
        upn: str = "user@contoso.com",
        scopes: str | None = "Assignments.ReadWrite",
        roles: Iterable[str] = (),
        groups: Iterable[str] = (),
        version: int = 2,
        lifetime: int = 3600,
        **overrides: Any,
    ) -> dict[str, Any]:
        oid = oid or str(uuid.uuid4())
        claims = self._base_claims(version=version, lifetime=lifetime, oid=oid)
        claims["sub"] = pairwise_subject(self.client_app_id, oid)
        claims["name"] = upn.split("@")[0]
        claims["idtyp"] = "user"
        if version == 1:
            claims.update(upn=upn, unique_name=upn, appid=self.client_app_id, appidacr="1")
        else:
            claims.update(preferred_username=upn, azp=self.client_app_id, azpacr="1")
        if scopes is not None:
            claims["scp"] = scopes
        self._add_lists(claims, roles=roles, groups=groups)
        apply_overrides(claims, overrides)
        return claims

    def app_claims(
        self,
        *,
        app_id: str | None = None,
        oid: str | None = None,
        roles: Iterable[str] = ("Assignments.Admin",),
        version: int = 2,
        lifetime: int = 3600,
        **overrides: Any,
    ) -> dict[str, Any]:
        app_id = app_id or self.client_app_id
        oid = oid or str(uuid.uuid4())
        claims = self._base_claims(version=version, lifetime=lifetime, oid=oid)
        claims["idtyp"] = "app"
        if version == 1:
            claims.update(appid=app_id, appidacr="1")
        else:
            claims.update(azp=app_id, azpacr="1")
        self._add_lists(claims, roles=roles, groups=())
        apply_overrides(claims, overrides)
        return claims

    def user_token(
        self, *, key: SigningKey | None = None, header: Mapping[str, Any] | None = None, **claims: Any
    ) -> str:
        """A delegated token of `user_claims(**claims)`. `scopes=None` omits `scp`; empty `groups` omits the
        claim (as for overage)."""
        return sign_token(self.user_claims(**claims), key or self.key, header)

    def app_token(
        self, *, key: SigningKey | None = None, header: Mapping[str, Any] | None = None, **claims: Any
    ) -> str:
        """An app-only (client-credentials) token of `app_claims(**claims)`: no `scp`, `idtyp: app`, permissions
        in `roles`."""
        return sign_token(self.app_claims(**claims), key or self.key, header)

    def _base_claims(self, *, version: int, lifetime: int, oid: str) -> dict[str, Any]:
        if version not in (1, 2):
            raise ValueError(f"version must be 1 or 2, not {version}")
        now = int(self._clock())
        return {
            "aud": self.audience if version == 2 else self.v1_audience,
            "iss": v2_issuer(self.tenant_id) if version == 2 else v1_issuer(self.tenant_id),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "tid": self.tenant_id,
            "oid": oid,
            "sub": oid,
            "ver": "2.0" if version == 2 else "1.0",
            "uti": uuid.uuid4().hex[:22],
        }

    @staticmethod
    def _add_lists(claims: dict[str, Any], *, roles: Iterable[str], groups: Iterable[str]) -> None:
        roles, groups = list(roles), list(groups)
        if roles:
            claims["roles"] = roles
        if groups:
            claims["groups"] = groups


class JwksServer(BackgroundServer):
    """Serves `{"keys": [...]}` at `http://127.0.0.1:<port>/keys` from a background thread.

    Keys can be published or replaced while it runs (key rotation). Subclasses may override `answer`.
    """

    def __init__(self, keys: Iterable[SigningKey | Mapping[str, Any]] = (), *, port: int = 0) -> None:
        self._lock = threading.Lock()
        self._keys: list[dict[str, Any]] = [_jwk(key) for key in keys]
        server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        server.daemon_threads = True
        # A short poll interval keeps `stop()` (which waits for the serve loop to notice) fast.
        super().__init__(server, address="127.0.0.1", thread_name="jwks-server", poll_interval=0.05)
        self.start()

    @property
    def uri(self) -> str:
        return f"{self.url}/keys"

    def publish(self, key: SigningKey | Mapping[str, Any]) -> None:
        with self._lock:
            self._keys.append(_jwk(key))

    def set_keys(self, keys: Iterable[SigningKey | Mapping[str, Any]]) -> None:
        with self._lock:
            self._keys = [_jwk(key) for key in keys]

    def answer(self, path: str) -> tuple[int, bytes]:
        """The status and body for a GET of `path`."""
        if path.split("?", maxsplit=1)[0] != "/keys":
            return 404, b""
        with self._lock:
            keys = list(self._keys)
        return 200, json.dumps({"keys": keys}).encode("utf-8")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = owner.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


class DevSigner:
    """A signing key, its JWKS server, and tokens the local host's settings trust.

    `app_settings()` gives the `AUTH_*` values to configure; `tokens` mints user and app tokens.
    """

    def __init__(
        self,
        *,
        tenant_ids: Sequence[str] = (DEV_TENANT_ID, DEV_OTHER_TENANT_ID),
        audience: str = DEV_AUDIENCE,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        refuse_in_azure(environ)
        self.key = SigningKey()
        self.tenant_ids = tuple(tenant_ids)
        # Tokens of the first tenant, the one the demo data lives in.
        self.tokens = TokenFactory(tenant_id=self.tenant_ids[0], audience=audience, key=self.key)
        self._jwks = JwksServer([self.key])
        self._shared: Path | None = None

    @property
    def jwks_uri(self) -> str:
        return self._jwks.uri

    def app_settings(self) -> dict[str, str]:
        """The settings that make the app trust this signer, and only it."""
        return {
            "AUTH_JWKS_URI": self._jwks.uri,
            "AUTH_TENANT_ID": ",".join(self.tenant_ids),
            "AUTH_AUDIENCE": self.tokens.audience,
            # Explicit issuers from the environment would not match the signer's; the computed ones do.
            "AUTH_ISSUERS": "",
        }

    def user_token(
        self,
        *,
        oid: str,
        upn: str,
        groups: Iterable[str] = (),
        roles: Iterable[str] = (),
        scopes: str | None = "Assignments.ReadWrite",
    ) -> str:
        """A delegated token, with the API's scope unless told otherwise, valid for `DEV_TOKEN_LIFETIME_SECONDS`."""
        return self.tokens.user_token(
            oid=oid, upn=upn, groups=groups, roles=roles, scopes=scopes, lifetime=DEV_TOKEN_LIFETIME_SECONDS
        )

    def app_token(self, app: LocalApp) -> str:
        """An app-only token of `app` with its roles, valid for `DEV_TOKEN_LIFETIME_SECONDS`."""
        return self.tokens.app_token(
            app_id=app.app_id, oid=app.object_id, roles=app.roles, lifetime=DEV_TOKEN_LIFETIME_SECONDS
        )

    def share(self, port: int, environ: Mapping[str, str] = os.environ) -> Path:
        """Let `scripts/token` (`localhost.mint`) sign with this signer's key while the run command serves `port`.

        The key, with what a token needs (JWKS URI, tenants, audience), goes to a file only this user can read,
        in a directory only this user can open (see `localhost.shared_signer`); `unshare` removes it. Raises
        `SharedSignerError` when that directory is not private.
        """
        self._shared = write_shared(
            SharedSigner(
                port=port,
                jwks_uri=self.jwks_uri,
                tenant_ids=self.tenant_ids,
                audience=self.tokens.audience,
                client_app_id=self.tokens.client_app_id,
                kid=self.key.kid,
                private_pem=self.key.private_pem,
            ),
            environ,
        )
        return self._shared

    def unshare(self) -> None:
        if self._shared is not None:
            self._shared.unlink(missing_ok=True)
            self._shared = None

    def stop(self) -> None:
        self.unshare()
        self._jwks.stop()


def _jwk(key: SigningKey | Mapping[str, Any]) -> dict[str, Any]:
    return key.public_jwk() if isinstance(key, SigningKey) else dict(key)
