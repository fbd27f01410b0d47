"""Real Entra-shaped tokens and a real JWKS endpoint, for tests.

The signing pieces live in `localhost.dev_signer` (the local host's development signer uses them too); this
module adds what only tests need: the classic forgeries and a JWKS server that can fail, slow down and count.

Tokens are signed by hand (base64url + RSA PKCS#1 v1.5/SHA-256) rather than with `jwt.encode`, so a
test can put anything in the header, drop any claim, or sign with the wrong key, and still get a
byte-exact compact JWS. `unsigned_token` and `hs256_token` craft the classic forgeries; PyJWT refuses to
produce the latter (HMAC keyed with a PEM public key), which is exactly why it is built by hand.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from typing import Any

from localhost import dev_signer
from localhost.dev_signer import SigningKey, apply_overrides, b64url, json_segment, sign_token, v1_issuer, v2_issuer

__all__ = [
    "JwksServer",
    "SigningKey",
    "TokenFactory",
    "b64url",
    "hs256_token",
    "sign_token",
    "unsigned_token",
    "v1_issuer",
    "v2_issuer",
]


def unsigned_token(claims: Mapping[str, Any], header: Mapping[str, Any] | None = None) -> str:
    """An `alg: none` token with an empty signature."""
    full_header: dict[str, Any] = {"alg": "none", "typ": "JWT"}
    apply_overrides(full_header, header or {})
    return f"{json_segment(full_header)}.{json_segment(claims)}."


def hs256_token(claims: Mapping[str, Any], secret: bytes, header: Mapping[str, Any] | None = None) -> str:
    """An HS256 token keyed with `secret`. Passing a `SigningKey.public_pem` gives the algorithm-confusion
    forgery: a validator that lets the header pick the algorithm would verify it with the public key."""
    full_header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    apply_overrides(full_header, header or {})
    signing_input = f"{json_segment(full_header)}.{json_segment(claims)}"
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


class TokenFactory(dev_signer.TokenFactory):
    """The development signer's factory, plus the forgeries a validator must refuse."""

    def alg_none_token(self, **overrides: Any) -> str:
        """A user token that claims `alg: none`, naming the factory key's `kid`."""
        return unsigned_token(self.user_claims(**overrides), {"kid": self.key.kid})

    def hs256_public_key_token(self, **overrides: Any) -> str:
        """A user token HMAC-signed with the factory key's public PEM (algorithm confusion)."""
        return hs256_token(self.user_claims(**overrides), self.key.public_pem, {"kid": self.key.kid})


class JwksServer(dev_signer.JwksServer):
    """The signer's JWKS server, plus test knobs.

    `respond_with(status, body)` makes it answer with anything else (an error status, a non-JSON body) to
    simulate an identity-provider outage or a garbled document; `delay` slows every answer down so concurrent
    fetches overlap; `fetch_count` counts every request.
    """

    def __init__(self, keys: Iterable[SigningKey | Mapping[str, Any]] = ()) -> None:
        self._failure: tuple[int, bytes] | None = None
        self._fetch_count = 0
        self.delay = 0.0
        super().__init__(keys)

    @property
    def fetch_count(self) -> int:
        with self._lock:
            return self._fetch_count

    def respond_with(self, status: int = 500, body: bytes = b"") -> None:
        """Answer every request with `status` and `body` instead of the keys, until `respond_normally()`."""
        with self._lock:
            self._failure = (status, body)

    def respond_normally(self) -> None:
        with self._lock:
            self._failure = None

    def answer(self, path: str) -> tuple[int, bytes]:
        with self._lock:
            self._fetch_count += 1
            failure = self._failure
        if self.delay:
            time.sleep(self.delay)
        if failure is not None:
            return failure
        return super().answer(path)
