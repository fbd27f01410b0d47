"""Microsoft Entra ID bearer-token validation.

The service validates every token itself (every HTTP function is `AuthLevel.ANONYMOUS`), so this module
is the whole of authentication: it turns an `Authorization` header into a `Principal`, or refuses it with
`Unauthenticated` (401). The route-level "may this caller use the API at all" checks from docs/api-rules.md
("Who may do what") live here too; per-assignment rules belong to the use cases.

Nothing here reads settings or knows about HTTP frameworks: the composition root builds one `JwksCache`
and one `TokenValidator` per process from `core.settings` and hands them to the triggers.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jwt
import jwt.utils
import requests

from core.errors import Forbidden, ServiceUnavailable, Unauthenticated

__all__ = [
    "DECODE_OPTIONS",
    "ROLE_ADMIN",
    "ROLE_REPORT",
    "SCOPE_READ_WRITE",
    "JwksCache",
    "JwksUnavailable",
    "Principal",
    "TokenValidator",
    "VersionedKey",
    "bearer_token",
    "require_access",
    "require_admin",
]

_log = logging.getLogger(__name__)

SCOPE_READ_WRITE = "Assignments.ReadWrite"
ROLE_ADMIN = "Assignments.Admin"
ROLE_REPORT = "Assignments.Report"

_ALGORITHM = "RS256"
# Public so that a benchmark's bare `jwt.decode` does the validator's work and no less. Requiring the claims
# `_verify` reads lets PyJWT refuse a token that lacks one by the claim's name.
DECODE_OPTIONS: jwt.types.Options = {"require": ["exp", "aud", "iss", "tid", "oid"], "enforce_minimum_key_length": True}


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, as the validated token describes it.

    `oid` is the caller's user key (docs/api-rules.md, "Identity and tenancy"); for an app-only token it
    is the object id of the calling app's service principal. `upn` is `preferred_username` (v2) or `upn`
    (v1), lower-cased; the `email` claim is never used, because users can set it to anything in some
    tenants.

    `groups` holds the object ids from the `groups` claim. **Groups overage:** Entra omits the `groups`
    claim for a user in more than 200 groups (it sends `_claim_names`/`hasgroups` instead), so such a
    user has an empty `groups` here and cannot act through `candidateGroups` membership. We do not call
    Graph to resolve the overage; assign such users directly.
    """

    oid: str
    tid: str
    upn: str | None = None
    app_id: str | None = None
    is_app_only: bool = False
    scopes: frozenset[str] = field(default_factory=frozenset)
    roles: frozenset[str] = field(default_factory=frozenset)
    groups: frozenset[str] = field(default_factory=frozenset)

    @property
    def actor(self) -> str:
        """The value written to actor fields (`createdBy`, `assignedBy`, ...).

        `TokenValidator` guarantees a UPN for users and an app id for apps; the `oid` fallbacks only
        matter for principals built by hand, and keep them from writing "None" into a document.
        """
        if self.is_app_only:
            return f"app:{self.app_id or self.oid}"
        return self.upn or self.oid

    @property
    def is_admin(self) -> bool:
        # Only an app role counts, in a delegated or an app-only token: a tenant admin assigns roles, while a
        # scope is a delegated permission that users may consent to themselves, whatever it is named.
        return ROLE_ADMIN in self.roles

    @property
    def is_reporter(self) -> bool:
        """Only an application reports progress for others (docs/api-rules.md, "Who may do what"); a user
        holding the role is not one."""
        return self.is_app_only and ROLE_REPORT in self.roles


class JwksUnavailable(ServiceUnavailable):
    """The identity provider's signing keys could not be fetched.

    This is an outage, not a bad token, so it answers 503 rather than 401: a client that retries later
    with the same token should succeed.
    """


@dataclass(frozen=True)
class _KeySet:
    """One fetched JWKS, replaced wholesale so that a reader outside the lock always sees keys, version and
    age that belong together."""

    keys: Mapping[str, jwt.PyJWK]
    # The JWK entries as published, canonicalized: what tells a refetch of the same keys from a changed set.
    published: frozenset[tuple[str, str]]
    version: int
    fetched_at: float | None


class VersionedKey(NamedTuple):
    """A signing key and the version of the key set it was found in (see `JwksCache.key_set_version`)."""

    key: jwt.PyJWK
    version: int


def _usable_keys(document: object) -> tuple[dict[str, jwt.PyJWK], frozenset[tuple[str, str]]]:
    """The RS256 signing keys of a JWKS document, by `kid`, and their entries as published. Keys we cannot
    use are skipped, not fatal: a provider may publish key types or uses this service never accepts."""
    if not isinstance(document, Mapping):
        return {}, frozenset()
    entries = document.get("keys")
    if not isinstance(entries, list):
        return {}, frozenset()
    keys: dict[str, jwt.PyJWK] = {}
    published: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid or entry.get("kty") != "RSA":
            continue
        if entry.get("use", "sig") != "sig" or entry.get("alg", _ALGORITHM) != _ALGORITHM:
            continue
        try:
            keys[kid] = jwt.PyJWK(entry, algorithm=_ALGORITHM)
        except jwt.PyJWTError:
            continue
        published[kid] = json.dumps(entry, sort_keys=True)
    return keys, frozenset(published.items())


class JwksCache:
    """The provider's signing keys, fetched lazily and refetched when a token names an unknown `kid`.

    PyJWKClient is deliberately not used: its default 30-second cooldown refuses every token signed with
    a freshly rotated key for up to 30 seconds. Here an unknown `kid` refetches at once, limited only to
    one fetch per `min_refetch_interval`, so a flood of tokens with made-up `kid`s cannot turn into a
    flood of requests to the provider.

    Keys older than `max_age` are refetched too, so a key the provider withdraws (say, after a
    compromise) stops being accepted. If that refresh fails, the last good keys stay in use: an outage
    of the provider should not take this service down while its keys are still valid.

    Thread-safe: lookups of known keys take no lock; fetches happen under one lock, so concurrent
    lookups of the same unknown `kid` cause a single fetch.
    """

    def __init__(
        self,
        uri: str,
        *,
        min_refetch_interval: float = 5.0,
        timeout: float = 5.0,
        max_age: float = 24 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._uri = uri
        self._min_refetch_interval = min_refetch_interval
        self._timeout = timeout
        self._max_age = max_age
        self._clock = clock
        self._session = requests.Session()
        self._lock = threading.Lock()
        self._key_set = _KeySet(keys={}, published=frozenset(), version=0, fetched_at=None)
        self._attempted_at: float | None = None
        self._failure: str | None = None
        self._fetch_count = 0

    @property
    def fetch_count(self) -> int:
        """How many times the JWKS has been requested, successfully or not."""
        return self._fetch_count

    def key_set_version(self) -> int | None:
        """The version of the keys in use, or None while they are due for a refresh (or were never fetched).

        The version changes whenever a fetch installs keys that differ from those before it, so whatever
        was verified with a key found at one version may be trusted again, without the key, for as long
        as this returns that same version. A refetch of unchanged keys keeps it: a flood of made-up `kid`s
        then cannot make every caller's token be verified again.
        """
        key_set = self._key_set
        return None if self._is_stale(key_set) else key_set.version

    def get_signing_key(self, kid: str) -> jwt.PyJWK | None:
        """The key with this `kid`, or None when the provider does not publish it.

        Raises `JwksUnavailable` when the keys cannot be fetched and no usable copy is at hand.
        """
        found = self.find_signing_key(kid)
        return None if found is None else found.key

    def find_signing_key(self, kid: str) -> VersionedKey | None:
        """`get_signing_key`, with the version of the key set the key was found in."""
        key_set = self._key_set
        key = key_set.keys.get(kid)
        if key is not None and not self._is_stale(key_set):
            return VersionedKey(key, key_set.version)
        with self._lock:
            # Another thread may have fetched while this one waited for the lock.
            key_set = self._key_set
            key = key_set.keys.get(kid)
            if key is not None and not self._is_stale(key_set):
                return VersionedKey(key, key_set.version)
            if self._may_fetch():
                self._fetch()
            key_set = self._key_set
            key = key_set.keys.get(kid)
            if key is not None:
                return VersionedKey(key, key_set.version)
            if self._failure is not None:
                # The kid may well be genuine; we cannot tell without the provider, so this is a 503.
                raise JwksUnavailable(
                    "The identity provider's signing keys are unavailable",
                    retry_after=max(1, math.ceil(self._min_refetch_interval)),
                )
            return None

    def close(self) -> None:
        self._session.close()

    def _is_stale(self, key_set: _KeySet) -> bool:
        return key_set.fetched_at is None or self._clock() - key_set.fetched_at >= self._max_age

    def _may_fetch(self) -> bool:
        return self._attempted_at is None or self._clock() - self._attempted_at >= self._min_refetch_interval

    def _fetch(self) -> None:
        """Fetch and install the keys. Call with the lock held."""
        now = self._clock()
        self._attempted_at = now
        self._fetch_count += 1
        try:
            response = self._session.get(self._uri, timeout=self._timeout)
            response.raise_for_status()
            document: object = response.json()
        except (requests.RequestException, ValueError) as error:
            self._fail(f"{type(error).__name__}: {error}")
            return
        keys, published = _usable_keys(document)
        if not keys:
            # Installing an empty set would refuse every token as "unknown key"; keep the old keys instead.
            self._fail("the document holds no usable RS256 signing keys")
            return
        previous = self._key_set
        version = previous.version if published == previous.published else previous.version + 1
        self._key_set = _KeySet(keys=keys, published=published, version=version, fetched_at=now)
        self._failure = None

    def _fail(self, reason: str) -> None:
        self._failure = reason
        _log.warning("Fetching the JWKS from %s failed: %s", self._uri, reason)


def _refuse(reason: str) -> Unauthenticated:
    return Unauthenticated(reason, token_sent=True)


_NEITHER_USER_NOR_APP = "The token does not identify a user or an application"


def _string_set(claims: Mapping[str, Any], name: str) -> frozenset[str]:
    value = claims.get(name)
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _refuse("The token's claims are malformed")
    return frozenset(value)


def _optional_string(claims: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = claims.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise _refuse("The token's claims are malformed")
        if value:
            return value
    return None


_TENANT_PLACEHOLDER = re.compile(r"\{tenantid\}", re.IGNORECASE)

_EXPIRED = "The token has expired"
_NOT_YET_VALID = "The token is not yet valid"
_MALFORMED = "The bearer token is malformed"

_JWT_REFUSALS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, _EXPIRED),
    (jwt.ImmatureSignatureError, _NOT_YET_VALID),
    (jwt.InvalidAudienceError, "The token is not intended for this API"),
    (jwt.InvalidSignatureError, "The token signature is invalid"),
    (jwt.DecodeError, _MALFORMED),
)

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def _unverified_header(token: str) -> dict[str, Any]:
    """The token's JOSE header, read only to choose the key; `jwt.decode` parses and checks it again.

    `jwt.get_unverified_header` decodes and checks all three segments, which costs a third of a first
    validation, only for `jwt.decode` to do it all again. This reads the first segment alone, under the
    rules PyJWT applies to it (base64url alphabet, at most two '=' of padding, canonical encoding, a JSON
    object, a string `kid`): it refuses no header that `jwt.decode` would accept, and whatever it lets
    through that is wrong elsewhere in the token, `jwt.decode` refuses.
    """
    segment, dot, rest = token.partition(".")
    if not dot or "." not in rest:
        raise _refuse(_MALFORMED)
    stripped = segment.rstrip("=")
    padding = len(segment) - len(stripped)
    if padding > 2 or (padding and len(segment) % 4) or len(stripped) % 4 == 1 or not _BASE64URL.fullmatch(stripped):
        raise _refuse(_MALFORMED)
    encoded = stripped.encode("ascii")
    try:
        data = jwt.utils.base64url_decode(encoded)
        if jwt.utils.base64url_encode(data) != encoded:
            raise ValueError("not the canonical encoding")
        header: object = json.loads(data)
    except (ValueError, RecursionError):
        raise _refuse(_MALFORMED) from None
    if not isinstance(header, dict) or not isinstance(header.get("kid", ""), str):
        raise _refuse(_MALFORMED)
    return header


@dataclass(frozen=True, slots=True)
class _Lifetime:
    """A validated token's time claims, read as PyJWT reads them (`int(claim)`)."""

    exp: int
    nbf: int | None
    iat: int | None

    @classmethod
    def of(cls, claims: Mapping[str, Any]) -> _Lifetime:
        """Only for claims `jwt.decode` has accepted, which has checked that these convert."""
        return cls(
            exp=int(claims["exp"]),
            nbf=int(claims["nbf"]) if "nbf" in claims else None,
            iat=int(claims["iat"]) if "iat" in claims else None,
        )

    def check(self, now: float, leeway: float) -> None:
        # PyJWT's own comparisons, in its order (`_validate_iat`, `_validate_nbf`, `_validate_exp` of
        # jwt.api_jwt), so that a cached token is refused at the very instant `jwt.decode` would refuse it.
        if self.iat is not None and self.iat > (now + leeway):
            raise _refuse(_NOT_YET_VALID)
        if self.nbf is not None and self.nbf > (now + leeway):
            raise _refuse(_NOT_YET_VALID)
        if self.exp <= (now - leeway):
            raise _refuse(_EXPIRED)


@dataclass(frozen=True, slots=True)
class _Validated:
    principal: Principal
    lifetime: _Lifetime
    key_set_version: int


class _ValidatedTokens:
    """The last `max_entries` tokens that passed validation, by their exact text; least recently used
    leave first. Entries verified with an older key set than the newest one seen are dropped at once:
    they could never be used again, and would only hold memory until evicted."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[str, _Validated] = OrderedDict()
        self._key_set_version = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str) -> _Validated | None:
        with self._lock:
            entry = self._entries.get(token)
            if entry is not None:
                self._entries.move_to_end(token)
            return entry

    def put(self, token: str, entry: _Validated) -> None:
        with self._lock:
            if entry.key_set_version < self._key_set_version:
                return
            if entry.key_set_version > self._key_set_version:
                self._entries.clear()
                self._key_set_version = entry.key_set_version
            self._entries[token] = entry
            self._entries.move_to_end(token)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def discard(self, token: str) -> None:
        with self._lock:
            self._entries.pop(token, None)


class TokenValidator:
    """Validates Entra ID access tokens (v1 and v2) the way the Microsoft identity platform documents.

    Only RS256 is accepted. The issuer must match the token's own `tid`, and that tenant must be allowed,
    so a token from another tenant (or one whose `iss` and `tid` disagree) is refused. When `issuers` is
    given it replaces the computed v1/v2 issuers; `{tenantid}` in it stands for the token's `tid`.

    A client sends the same token with every request for up to its lifetime, and verifying it costs more
    than the rest of a cached read, so the principals of the last `cache_size` accepted tokens are kept
    (0 keeps none). A kept token is accepted without its signature being checked again only while the key
    set it was verified with is still the one in use and not due for a refresh (`JwksCache.key_set_version`),
    so a withdrawn key stops working exactly when it would without the cache, and only while PyJWT would
    still accept its `exp`, `nbf` and `iat` with the same leeway, judged by `clock`. Refusals are not kept.
    Thread-safe. A kept token holds its text and its principal, measured at 2.4 KB for a user in no group
    and 37 KB for one in 200 groups: the default bound holds some 25 MB, and 370 MB only if every one of
    10,000 recent callers were in 200 groups.
    """

    def __init__(
        self,
        *,
        tenant_ids: Sequence[str],
        audiences: Sequence[str],
        jwks: JwksCache,
        issuers: Sequence[str] = (),
        leeway_seconds: int = 60,
        clock: Callable[[], float] = time.time,
        cache_size: int = 10_000,
    ) -> None:
        # An empty list would make every token fail with a misleading 401; fail at startup instead.
        if not tenant_ids:
            raise ValueError("TokenValidator needs at least one tenant id")
        if not audiences:
            raise ValueError("TokenValidator needs at least one audience")
        if cache_size < 0:
            raise ValueError("cache_size cannot be negative")
        self._tenant_ids = frozenset(tenant.strip().lower() for tenant in tenant_ids)
        self._audiences = tuple(audiences)
        self._issuer_templates = tuple(issuers)
        self._jwks = jwks
        self._leeway = leeway_seconds
        self._clock = clock
        self._validated = _ValidatedTokens(cache_size)

    @property
    def cached_token_count(self) -> int:
        return len(self._validated)

    def validate(self, token: str) -> Principal:
        """The principal the token describes; `Unauthenticated` if it is not acceptable, `JwksUnavailable`
        if the signing keys cannot be fetched."""
        cached = self._validated.get(token)
        if cached is not None:
            if cached.key_set_version == self._jwks.key_set_version():
                try:
                    cached.lifetime.check(self._clock(), self._leeway)
                except Unauthenticated:
                    self._validated.discard(token)
                    raise
                return cached.principal
            # The keys have changed, or are due for a refresh, since it was verified: verify it as if new.
            self._validated.discard(token)
        validated = self._verify(token)
        self._validated.put(token, validated)
        return validated.principal

    def _verify(self, token: str) -> _Validated:
        header = _unverified_header(token)
        # Checked before any key lookup, so `alg: none` or HS256 tokens never cost a JWKS fetch.
        if header.get("alg") != _ALGORITHM:
            raise _refuse("The token is not signed with an accepted algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _refuse("The token does not name its signing key")
        found = self._jwks.find_signing_key(kid)
        if found is None:
            raise _refuse("The token is signed with an unknown key")

        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                found.key,
                algorithms=[_ALGORITHM],
                audience=self._audiences,
                leeway=self._leeway,
                options=DECODE_OPTIONS,
            )
        except jwt.MissingRequiredClaimError as error:
            raise _refuse(f"The token lacks the '{error.claim}' claim") from None
        except jwt.PyJWTError as error:
            raise _refuse(self._reason(error)) from None
        lifetime = _Lifetime.of(claims)
        # PyJWT judged the lifetime by the system clock, which `clock` is unless a test injects another;
        # judging it by `clock` too puts a token's first use and its cached uses on one clock.
        lifetime.check(self._clock(), self._leeway)

        tid = claims["tid"]
        if not isinstance(tid, str) or tid.lower() not in self._tenant_ids:
            raise _refuse("The token was issued for a tenant that is not allowed")
        iss = claims["iss"]
        if not isinstance(iss, str) or iss not in self._issuers_for(tid):
            raise _refuse("The token issuer is not trusted")
        oid = claims["oid"]
        if not isinstance(oid, str) or not oid:
            raise _refuse("The token's claims are malformed")
        return _Validated(self._principal(claims, oid=oid, tid=tid), lifetime, found.version)

    @staticmethod
    def _reason(error: jwt.PyJWTError) -> str:
        for kind, reason in _JWT_REFUSALS:
            if isinstance(error, kind):
                return reason
        return "The token is invalid"

    def _issuers_for(self, tid: str) -> frozenset[str]:
        if self._issuer_templates:
            return frozenset(_TENANT_PLACEHOLDER.sub(lambda _: tid, template) for template in self._issuer_templates)
        return frozenset((f"https://login.microsoftonline.com/{tid}/v2.0", f"https://sts.windows.net/{tid}/"))

    @staticmethod
    def _principal(claims: Mapping[str, Any], *, oid: str, tid: str) -> Principal:
        scp = claims.get("scp")
        if scp is not None and not isinstance(scp, str):
            raise _refuse("The token's claims are malformed")
        is_app_only = _is_app_only(claims, oid=oid, has_scp=scp is not None)
        upn = _optional_string(claims, "preferred_username", "upn")
        app_id = _optional_string(claims, "azp", "appid")
        if is_app_only and app_id is None:
            raise _refuse("The token does not identify the calling application")
        if not is_app_only and upn is None:
            # Actor fields and the originator check need a UPN; `email` is not a substitute.
            raise _refuse("The token does not identify the user")
        return Principal(
            oid=oid,
            tid=tid,
            upn=None if is_app_only or upn is None else upn.lower(),
            app_id=app_id,
            is_app_only=is_app_only,
            scopes=frozenset() if is_app_only or scp is None else frozenset(scp.split()),
            roles=_string_set(claims, "roles"),
            groups=_string_set(claims, "groups"),
        )


def _is_app_only(claims: Mapping[str, Any], *, oid: str, has_scp: bool) -> bool:
    """Whether the token was issued to an application acting as itself (docs/api-rules.md, "Identity and tenancy").

    `idtyp` is authoritative when the app registration asks Entra to emit it. Without it, the absence of
    `scp` alone is not enough: a user token stripped of its scopes would pass for an app and inherit an
    app's roles. Entra sets `sub` to the caller's `oid` only in client-credentials tokens (a user's `sub`
    is pairwise per application), so both must hold; anything else is refused rather than guessed.
    """
    idtyp = claims.get("idtyp")
    if idtyp is not None:
        if not isinstance(idtyp, str):
            raise _refuse("The token's claims are malformed")
        if idtyp not in ("app", "user"):
            raise _refuse(_NEITHER_USER_NOR_APP)
        return idtyp == "app"
    if has_scp:
        return False
    # PyJWT has already refused a `sub` that is present but not a string.
    if claims.get("sub") != oid:
        raise _refuse(_NEITHER_USER_NOR_APP)
    return True


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header.

    A missing or blank header raises `Unauthenticated(token_sent=False)`, so the 401 carries no
    `error="invalid_token"` (RFC 6750 3.1); any other unusable header raises it with `token_sent=True`.
    """
    if authorization is None or not authorization.strip():
        raise Unauthenticated("A bearer token is required", token_sent=False)
    parts = authorization.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise _refuse("The Authorization header must be 'Bearer <token>'")
    return parts[1]


def require_access(principal: Principal, *, allow_reporter: bool = False) -> None:
    """May this caller use the API at all (docs/api-rules.md, "Who may do what")?

    Users need the `Assignments.ReadWrite` scope; apps need a role, since app-only tokens carry no
    scopes. Admins pass either way. Whether the caller may touch a given assignment is decided later.
    """
    if principal.is_admin:
        return
    if principal.is_app_only:
        if allow_reporter and principal.is_reporter:
            return
    elif SCOPE_READ_WRITE in principal.scopes:
        return
    raise Forbidden("The token lacks the required scope or role")


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("The operation requires the Assignments.Admin role")
