"""Token validation against a real JWKS endpoint on 127.0.0.1 and real RS256 tokens: nothing is mocked."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core.auth import (
    ROLE_ADMIN,
    ROLE_REPORT,
    SCOPE_READ_WRITE,
    JwksCache,
    JwksUnavailable,
    Principal,
    TokenValidator,
    VersionedKey,
    bearer_token,
    require_access,
    require_admin,
)
from core.errors import Forbidden, ServiceUnavailable, Unauthenticated
from localhost.dev_signer import json_segment
from tests.support.tokens import (
    JwksServer,
    SigningKey,
    TokenFactory,
    b64url,
    sign_token,
    v1_issuer,
    v2_issuer,
)

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
AUDIENCE = "6e74172b-be56-4843-9ff4-e66a39bb12e3"
V1_AUDIENCE = f"api://{AUDIENCE}"
WINDOW = 5.0


class FakeClock:
    """A clock moved by hand: the JWKS cache's rate limit and key age, or, started at the real time, the
    validator's wall clock (PyJWT still judges a token's first use by the real clock)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey()


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return SigningKey()


@pytest.fixture
def server(key: SigningKey) -> Iterator[JwksServer]:
    with JwksServer([key]) as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(server: JwksServer, clock: FakeClock) -> Iterator[JwksCache]:
    cache = JwksCache(server.uri, min_refetch_interval=WINDOW, timeout=2.0, clock=clock)
    yield cache
    cache.close()


@pytest.fixture
def validator(cache: JwksCache) -> TokenValidator:
    return TokenValidator(tenant_ids=[TENANT], audiences=[AUDIENCE, V1_AUDIENCE], jwks=cache)


@pytest.fixture
def factory(key: SigningKey) -> TokenFactory:
    return TokenFactory(TENANT, AUDIENCE, key)


def refused(validator: TokenValidator, token: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as caught:
        validator.validate(token)
    assert caught.value.token_sent is True
    # The reason is for humans: short, and free of library internals.
    assert len(caught.value.detail) < 80
    assert "jwt" not in caught.value.detail.lower()
    return caught.value


# --- accepted tokens -------------------------------------------------------------------------------------


def test_v2_user_token(validator: TokenValidator, factory: TokenFactory) -> None:
    token = factory.user_token(
        oid="user-oid-1",
        upn="Alice.Smith@Contoso.COM",
        scopes="Assignments.ReadWrite User.Read",
        roles=["Assignments.Report"],
        groups=["g1", "g2"],
        email="someone-else@example.com",
    )
    principal = validator.validate(token)
    assert principal == Principal(
        oid="user-oid-1",
        tid=TENANT,
        upn="alice.smith@contoso.com",
        app_id=factory.client_app_id,
        is_app_only=False,
        scopes=frozenset({"Assignments.ReadWrite", "User.Read"}),
        roles=frozenset({"Assignments.Report"}),
        groups=frozenset({"g1", "g2"}),
    )
    assert principal.actor == "alice.smith@contoso.com"
    assert not principal.is_admin


def test_v1_user_token(validator: TokenValidator, factory: TokenFactory) -> None:
    token = factory.user_token(oid="user-oid-2", upn="Bob@Contoso.com", version=1)
    principal = validator.validate(token)
    assert principal.upn == "bob@contoso.com"
    assert principal.app_id == factory.client_app_id
    assert principal.scopes == frozenset({SCOPE_READ_WRITE})
    assert principal.groups == frozenset()
    assert not principal.is_app_only


def test_v2_app_only_token(validator: TokenValidator, factory: TokenFactory) -> None:
    principal = validator.validate(factory.app_token(app_id="app-123", oid="sp-oid"))
    assert principal.is_app_only
    assert principal.oid == "sp-oid"
    assert principal.app_id == "app-123"
    assert principal.upn is None
    assert principal.scopes == frozenset()
    assert principal.roles == frozenset({ROLE_ADMIN})
    assert principal.actor == "app:app-123"
    assert principal.is_admin


def test_v1_app_only_token_without_idtyp(validator: TokenValidator, factory: TokenFactory) -> None:
    # Without the optional `idtyp` claim, the absence of `scp` is what marks a token app-only.
    principal = validator.validate(factory.app_token(app_id="app-v1", roles=[ROLE_REPORT], version=1, idtyp=None))
    assert principal.is_app_only
    assert principal.actor == "app:app-v1"
    assert principal.is_reporter
    assert not principal.is_admin


def test_a_scope_never_makes_an_admin(validator: TokenValidator, factory: TokenFactory) -> None:
    # Any user can consent to a delegated permission named like the role; only an app role assignment counts.
    principal = validator.validate(factory.user_token(scopes=f"{SCOPE_READ_WRITE} {ROLE_ADMIN}"))
    assert principal.scopes == frozenset({SCOPE_READ_WRITE, ROLE_ADMIN})
    assert not principal.is_admin
    require_access(principal)
    with pytest.raises(Forbidden):
        require_admin(principal)


def test_the_admin_role_makes_a_delegated_admin(validator: TokenValidator, factory: TokenFactory) -> None:
    principal = validator.validate(factory.user_token(scopes="User.Read", roles=[ROLE_ADMIN]))
    assert principal.is_admin
    require_access(principal)
    require_admin(principal)


NEITHER = "The token does not identify a user or an application"


def test_a_user_token_without_scp_or_idtyp_is_not_an_app(validator: TokenValidator, factory: TokenFactory) -> None:
    # A user's `sub` is pairwise, never their `oid`; only the client-credentials flow makes the two equal.
    token = factory.user_token(scopes=None, idtyp=None, sub="pairwise-subject", roles=[ROLE_REPORT])
    assert refused(validator, token).detail == NEITHER


# name, token, is_app_only
APP_ONLY_CASES: list[tuple[str, Callable[[TokenFactory], str], bool]] = [
    ("idtyp app decides, whatever sub says", lambda f: f.app_token(sub="someone-else"), True),
    ("idtyp user decides, even without scp", lambda f: f.user_token(scopes=None), False),
    ("without idtyp, scp makes a user even if sub is oid", lambda f: f.user_token(idtyp=None, oid="o", sub="o"), False),
    ("without idtyp, no scp and sub equal to oid make an app", lambda f: f.app_token(idtyp=None), True),
    ("v1 without idtyp, no scp and sub equal to oid make an app", lambda f: f.app_token(idtyp=None, version=1), True),
]


@pytest.mark.parametrize(("name", "make", "app_only"), APP_ONLY_CASES, ids=[case[0] for case in APP_ONLY_CASES])
def test_app_only_detection(
    name: str, make: Callable[[TokenFactory], str], app_only: bool, validator: TokenValidator, factory: TokenFactory
) -> None:
    principal = validator.validate(make(factory))
    assert principal.is_app_only is app_only
    if app_only:
        assert principal.upn is None
        assert principal.scopes == frozenset()
    else:
        assert principal.upn == "user@contoso.com"


def test_a_user_token_without_scp_gets_403_not_401(validator: TokenValidator, factory: TokenFactory) -> None:
    principal = validator.validate(factory.user_token(scopes=None))
    with pytest.raises(Forbidden):
        require_access(principal, allow_reporter=True)


def test_the_email_claim_never_stands_in_for_the_upn(validator: TokenValidator, factory: TokenFactory) -> None:
    token = factory.user_token(preferred_username=None, email="alice@contoso.com")
    assert refused(validator, token).detail == "The token does not identify the user"


def test_tenant_ids_compare_case_insensitively(cache: JwksCache, factory: TokenFactory) -> None:
    validator = TokenValidator(tenant_ids=[TENANT.upper()], audiences=[AUDIENCE], jwks=cache)
    assert validator.validate(factory.user_token()).tid == TENANT


def test_several_tenants_may_be_allowed(cache: JwksCache, key: SigningKey) -> None:
    validator = TokenValidator(tenant_ids=[TENANT, OTHER_TENANT], audiences=[AUDIENCE], jwks=cache)
    for tenant in (TENANT, OTHER_TENANT):
        assert validator.validate(TokenFactory(tenant, AUDIENCE, key).user_token()).tid == tenant


# --- refused tokens --------------------------------------------------------------------------------------


def _tamper(token: str) -> str:
    header, _, signature = token.split(".")
    forged = b64url(b'{"oid":"someone-else","tid":"' + TENANT.encode() + b'"}')
    return f"{header}.{forged}.{signature}"


def _edited(f: TokenFactory, **changes: Any) -> str:
    """A user token with claims the factory's named parameters cannot express (None removes a claim)."""
    claims = f.user_claims()
    for name, value in changes.items():
        if value is None:
            del claims[name]
        else:
            claims[name] = value
    return sign_token(claims, f.key)


def _other_tenant(f: TokenFactory) -> str:
    return TokenFactory(OTHER_TENANT, AUDIENCE, f.key).user_token()


BAD_TOKENS: dict[str, tuple[Callable[[TokenFactory, SigningKey], str], str]] = {
    "expired": (lambda f, k: f.user_token(exp=int(time.time()) - 120), "The token has expired"),
    "not yet valid": (lambda f, k: f.user_token(nbf=int(time.time()) + 300), "The token is not yet valid"),
    "issued in the future": (lambda f, k: f.user_token(iat=int(time.time()) + 300), "The token is not yet valid"),
    "wrong audience": (lambda f, k: f.user_token(aud="api://someone-else"), "The token is not intended for this API"),
    "v1 audience on no list": (lambda f, k: f.user_token(aud=f"api://{OTHER_TENANT}"), "not intended for this API"),
    "wrong issuer": (lambda f, k: f.user_token(iss="https://evil.example/v2.0"), "The token issuer is not trusted"),
    "another tenant": (lambda f, k: _other_tenant(f), "The token was issued for a tenant that is not allowed"),
    "iss of another tenant": (lambda f, k: f.user_token(iss=v2_issuer(OTHER_TENANT)), "issuer is not trusted"),
    "tid of another tenant": (lambda f, k: f.user_token(tid=OTHER_TENANT), "tenant that is not allowed"),
    "alg none": (lambda f, k: f.alg_none_token(), "not signed with an accepted algorithm"),
    "HS256 with the public key": (lambda f, k: f.hs256_public_key_token(), "not signed with an accepted algorithm"),
    "RS512 claimed": (lambda f, k: f.user_token(header={"alg": "RS512"}), "not signed with an accepted algorithm"),
    "missing alg": (lambda f, k: f.user_token(header={"alg": None}), "not signed with an accepted algorithm"),
    "unknown kid": (lambda f, k: f.user_token(key=k), "The token is signed with an unknown key"),
    "missing kid": (lambda f, k: f.user_token(header={"kid": None}), "The token does not name its signing key"),
    "numeric kid": (lambda f, k: f.user_token(header={"kid": 7}), "The bearer token is malformed"),
    "empty kid": (lambda f, k: f.user_token(header={"kid": ""}), "The token does not name its signing key"),
    "signed by another key": (lambda f, k: f.user_token(key=k, header={"kid": f.key.kid}), "signature is invalid"),
    "tampered payload": (lambda f, k: _tamper(f.user_token()), "The token signature is invalid"),
    "malformed header": (lambda f, k: "%%%." + f.user_token().split(".", 1)[1], "The bearer token is malformed"),
    "header not an object": (lambda f, k: b64url(b"[1]") + ".e30.sig", "The bearer token is malformed"),
    "missing oid": (lambda f, k: _edited(f, oid=None), "The token lacks the 'oid' claim"),
    "missing tid": (lambda f, k: f.user_token(tid=None), "The token lacks the 'tid' claim"),
    "missing exp": (lambda f, k: f.user_token(exp=None), "The token lacks the 'exp' claim"),
    "missing iss": (lambda f, k: f.user_token(iss=None), "The token lacks the 'iss' claim"),
    "iss not a string": (lambda f, k: _edited(f, iss=[v2_issuer(TENANT)]), "The token issuer is not trusted"),
    "tid not a string": (lambda f, k: _edited(f, tid=[TENANT]), "tenant that is not allowed"),
    "scp not a string": (lambda f, k: _edited(f, scp=["Assignments.ReadWrite"]), "The token's claims are malformed"),
    "exp not a number": (lambda f, k: _edited(f, exp="tomorrow"), "The bearer token is malformed"),
    "numeric oid": (lambda f, k: _edited(f, oid=42), "The token's claims are malformed"),
    "roles not a list": (lambda f, k: _edited(f, roles="Assignments.Admin"), "claims are malformed"),
    "app-only without app id": (lambda f, k: f.app_token(azp=None), "does not identify the calling application"),
    "no idtyp, no scp, sub not oid": (lambda f, k: f.app_token(idtyp=None, sub="someone-else"), NEITHER),
    "no idtyp, no scp, no sub": (lambda f, k: f.app_token(idtyp=None, sub=None), NEITHER),
    "no idtyp, no scp, no sub, upn": (lambda f, k: f.user_token(idtyp=None, scopes=None, sub=None), NEITHER),
    "unknown idtyp": (lambda f, k: f.user_token(idtyp="device"), NEITHER),
    "idtyp not a string": (lambda f, k: f.app_token(idtyp=["app"]), "The token's claims are malformed"),
    "garbage": (lambda f, k: "not-a-token", "The bearer token is malformed"),
    "empty": (lambda f, k: "", "The bearer token is malformed"),
    "non-ascii": (lambda f, k: "ünïcode.ünïcode.ünïcode", "The bearer token is malformed"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_refused(case: str, validator: TokenValidator, factory: TokenFactory, other_key: SigningKey) -> None:
    make, reason = BAD_TOKENS[case]
    assert reason in refused(validator, make(factory, other_key)).detail


def test_forged_algorithms_never_cost_a_jwks_fetch(
    validator: TokenValidator, factory: TokenFactory, server: JwksServer
) -> None:
    refused(validator, factory.alg_none_token())
    refused(validator, factory.hs256_public_key_token())
    assert server.fetch_count == 0


def test_v1_issuer_for_a_v2_audience_is_accepted(validator: TokenValidator, factory: TokenFactory) -> None:
    # Which issuer a tenant uses depends on the API's accessTokenAcceptedVersion, not on the audience form.
    assert validator.validate(factory.user_token(iss=v1_issuer(TENANT))).tid == TENANT


def test_a_header_is_read_by_pyjwts_rules(factory: TokenFactory) -> None:
    # PyJWT accepts the '=' padding some issuers add, when the signature covers it.
    for kid in ("k", "kk", "kkk"):
        header = json_segment({"alg": "RS256", "typ": "JWT", "kid": kid})
        if len(header) % 4:
            break
    padded = header + "=" * (-len(header) % 4)
    assert padded != header
    key = SigningKey(kid=kid)
    signing_input = f"{padded}.{json_segment(factory.user_claims())}"
    token = f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"
    payload, signature = token.split(".")[1:]
    with JwksServer([key]) as server:
        jwks = JwksCache(server.uri)
        validator = TokenValidator(tenant_ids=[TENANT], audiences=[AUDIENCE], jwks=jwks)
        assert validator.validate(token).oid
        for bad in (f"{header}===.{payload}.{signature}", f"{header}!.{payload}.{signature}", f"{header}.{payload}"):
            assert refused(validator, bad).detail == "The bearer token is malformed"
        jwks.close()


# --- configured issuers ----------------------------------------------------------------------------------


def test_configured_issuers_replace_the_computed_ones(cache: JwksCache, factory: TokenFactory) -> None:
    validator = TokenValidator(
        tenant_ids=[TENANT],
        audiences=[AUDIENCE, V1_AUDIENCE],
        jwks=cache,
        issuers=["https://login.microsoftonline.com/{tenantid}/v2.0"],
    )
    assert validator.validate(factory.user_token()).tid == TENANT
    assert refused(validator, factory.user_token(version=1)).detail == "The token issuer is not trusted"


def test_configured_issuer_without_placeholder(cache: JwksCache, factory: TokenFactory) -> None:
    validator = TokenValidator(
        tenant_ids=[TENANT], audiences=[AUDIENCE], jwks=cache, issuers=["https://issuer.example/custom"]
    )
    assert validator.validate(factory.user_token(iss="https://issuer.example/custom")).oid
    refused(validator, factory.user_token())


def test_configured_issuer_placeholder_uses_the_tokens_tid(cache: JwksCache, key: SigningKey) -> None:
    validator = TokenValidator(
        tenant_ids=[TENANT, OTHER_TENANT], audiences=[AUDIENCE], jwks=cache, issuers=["https://idp.example/{TenantId}/"]
    )
    other = TokenFactory(OTHER_TENANT, AUDIENCE, key)
    assert validator.validate(other.user_token(iss=f"https://idp.example/{OTHER_TENANT}/")).tid == OTHER_TENANT
    refused(validator, other.user_token(iss=f"https://idp.example/{TENANT}/"))


def test_validator_refuses_empty_configuration(cache: JwksCache) -> None:
    with pytest.raises(ValueError, match="tenant"):
        TokenValidator(tenant_ids=[], audiences=[AUDIENCE], jwks=cache)
    with pytest.raises(ValueError, match="audience"):
        TokenValidator(tenant_ids=[TENANT], audiences=[], jwks=cache)


# --- clock leeway ----------------------------------------------------------------------------------------


def test_token_expired_within_the_default_leeway_is_accepted(validator: TokenValidator, factory: TokenFactory) -> None:
    assert validator.validate(factory.user_token(exp=int(time.time()) - 30)).oid


def test_token_expired_beyond_the_leeway_is_refused(validator: TokenValidator, factory: TokenFactory) -> None:
    refused(validator, factory.user_token(exp=int(time.time()) - 90))


def test_nbf_slightly_in_the_future_is_accepted(validator: TokenValidator, factory: TokenFactory) -> None:
    assert validator.validate(factory.user_token(nbf=int(time.time()) + 30)).oid


def test_zero_leeway(cache: JwksCache, factory: TokenFactory) -> None:
    strict = TokenValidator(tenant_ids=[TENANT], audiences=[AUDIENCE], jwks=cache, leeway_seconds=0)
    refused(strict, factory.user_token(exp=int(time.time()) - 30))


# --- the key cache ---------------------------------------------------------------------------------------


def test_one_fetch_for_many_validations(
    validator: TokenValidator, factory: TokenFactory, server: JwksServer, cache: JwksCache
) -> None:
    assert server.fetch_count == 0  # nothing is fetched before the first token arrives
    token = factory.user_token()
    for _ in range(100):
        validator.validate(token)
    assert server.fetch_count == 1
    assert cache.fetch_count == 1


@pytest.fixture
def new_key(validator: TokenValidator, factory: TokenFactory, server: JwksServer) -> SigningKey:
    """A key published just after the validator's first fetch: its cache does not know it yet."""
    validator.validate(factory.user_token())
    key = SigningKey()
    server.publish(key)
    return key


def test_rotated_key_is_accepted_once_the_window_has_passed(
    validator: TokenValidator, factory: TokenFactory, server: JwksServer, clock: FakeClock, new_key: SigningKey
) -> None:
    rotated = factory.user_token(key=new_key)

    # Within the window of the first fetch, an unknown kid is refused without asking again.
    refused(validator, rotated)
    assert server.fetch_count == 1

    clock.advance(WINDOW)
    assert validator.validate(rotated).oid
    assert server.fetch_count == 2
    # The old key is still published, so both are accepted from the cache.
    validator.validate(factory.user_token())
    validator.validate(rotated)
    assert server.fetch_count == 2


def test_rotation_with_a_real_clock(server: JwksServer, factory: TokenFactory) -> None:
    cache = JwksCache(server.uri, min_refetch_interval=0.05)
    validator = TokenValidator(tenant_ids=[TENANT], audiences=[AUDIENCE], jwks=cache)
    validator.validate(factory.user_token())
    new_key = SigningKey()
    server.set_keys([factory.key, new_key])
    time.sleep(0.06)
    assert validator.validate(factory.user_token(key=new_key)).oid
    assert cache.fetch_count == 2
    cache.close()


def test_unknown_kids_cause_at_most_one_fetch_per_window(
    validator: TokenValidator, factory: TokenFactory, server: JwksServer, clock: FakeClock, other_key: SigningKey
) -> None:
    start = clock.now
    validator.validate(factory.user_token())
    assert server.fetch_count == 1
    for attempt in range(10):  # still inside the window of the first fetch
        refused(validator, factory.user_token(key=other_key, header={"kid": f"made-up-0-{attempt}"}))
        clock.advance(WINDOW / 20)
    assert server.fetch_count == 1
    for window in range(1, 4):
        clock.now = start + window * WINDOW
        for attempt in range(10):
            refused(validator, factory.user_token(key=other_key, header={"kid": f"made-up-{window}-{attempt}"}))
            clock.advance(WINDOW / 20)
        assert server.fetch_count == 1 + window


def validate_at_once(validator: TokenValidator, token: str, threads: int = 20) -> list[Principal | BaseException]:
    """Validates `token` on `threads` threads released together; what each returned or raised, as they finish."""
    barrier = threading.Barrier(threads)
    results: list[Principal | BaseException] = []
    lock = threading.Lock()

    def validate() -> None:
        barrier.wait()
        try:
            outcome: Principal | BaseException = validator.validate(token)
        except BaseException as error:  # collected and asserted on by the caller
            outcome = error
        with lock:
            results.append(outcome)

    started = [threading.Thread(target=validate) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join(timeout=10)
    return results


def test_concurrent_lookups_of_a_new_kid_cause_one_fetch(
    validator: TokenValidator, factory: TokenFactory, server: JwksServer, clock: FakeClock, new_key: SigningKey
) -> None:
    clock.advance(WINDOW)
    server.delay = 0.2  # keep the fetch in flight while the other threads arrive
    results = validate_at_once(validator, factory.user_token(key=new_key))
    assert len(results) == 20
    assert all(isinstance(result, Principal) for result in results), results
    assert server.fetch_count == 2


def test_concurrent_cold_start_causes_one_fetch(server: JwksServer, factory: TokenFactory) -> None:
    cache = JwksCache(server.uri)
    validator = TokenValidator(tenant_ids=[TENANT], audiences=[AUDIENCE], jwks=cache)
    server.delay = 0.1
    results = validate_at_once(validator, factory.user_token())
    assert [result for result in results if isinstance(result, BaseException)] == []
    assert server.fetch_count == 1
    cache.close()


def test_unusable_keys_are_ignored(server: JwksServer, validator: TokenValidator, factory: TokenFactory) -> None:
    ec_key = {"kty": "EC", "crv": "P-256", "kid": "ec", "x": "AAAA", "y": "AAAA"}
    garbage_rsa = {"kty": "RSA", "kid": "garbage", "n": "!!!", "e": "AQAB"}
    encryption_key = {**SigningKey().public_jwk(), "use": "enc", "kid": "enc"}
    hmac_key = {"kty": "oct", "kid": "hmac", "k": b64url(b"secret")}
    no_kid = {k: v for k, v in SigningKey().public_jwk().items() if k != "kid"}
    rs512 = {**SigningKey().public_jwk(), "alg": "RS512", "kid": "rs512"}
    keys = [ec_key, garbage_rsa, encryption_key, hmac_key, no_kid, rs512, "not a key", 7, factory.key.public_jwk()]
    server.respond_with(200, json.dumps({"keys": keys}).encode())
    assert validator.validate(factory.user_token()).oid
    # An HS256 token naming the `oct` key's kid is still refused: only RS256 keys are ever loaded.
    refused(validator, sign_token(factory.user_claims(), factory.key, {"kid": "hmac"}))


def test_key_set_versions(server: JwksServer, cache: JwksCache, clock: FakeClock, key: SigningKey) -> None:
    assert cache.key_set_version() is None  # nothing fetched yet
    assert cache.find_signing_key(key.kid) == (cache.get_signing_key(key.kid), 1)
    assert cache.key_set_version() == 1
    clock.advance(WINDOW)
    assert cache.find_signing_key("made-up") is None  # refetched: the same keys keep their version
    assert cache.key_set_version() == 1
    new_key = SigningKey()
    server.publish(new_key)
    clock.advance(WINDOW)
    assert cache.find_signing_key(new_key.kid) == (cache.get_signing_key(new_key.kid), 2)
    assert cache.find_signing_key(key.kid) == (cache.get_signing_key(key.kid), 2)
    assert server.fetch_count == 3


def test_key_set_version_is_none_while_a_refresh_is_due(server: JwksServer, key: SigningKey, clock: FakeClock) -> None:
    cache = JwksCache(server.uri, max_age=3600, clock=clock)
    cache.get_signing_key(key.kid)
    clock.advance(3599)
    assert cache.key_set_version() == 1
    clock.advance(1)
    assert cache.key_set_version() is None
    server.respond_with(500)
    assert cache.get_signing_key(key.kid) is not None  # the refresh failed: the old keys stay in use, still due
    assert cache.key_set_version() is None
    server.respond_normally()
    clock.advance(WINDOW)
    assert cache.find_signing_key(key.kid) == (cache.get_signing_key(key.kid), 1)
    assert cache.key_set_version() == 1
    cache.close()


# --- identity provider outages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, b"oops"), (404, b""), (200, b"<html>not json</html>"), (200, b'{"keys": []}'), (200, b"[]")],
)
def test_fetch_failure_is_a_503(
    status: int, body: bytes, server: JwksServer, validator: TokenValidator, factory: TokenFactory
) -> None:
    server.respond_with(status, body)
    with pytest.raises(JwksUnavailable) as caught:
        validator.validate(factory.user_token())
    assert isinstance(caught.value, ServiceUnavailable)
    assert caught.value.retry_after >= 1
    assert "127.0.0.1" not in caught.value.detail


def test_unreachable_provider_is_a_503(factory: TokenFactory) -> None:
    with JwksServer() as gone:
        uri = gone.uri
    cache = JwksCache(uri, timeout=1.0)
    validator = TokenValidator(tenant_ids=[TENANT], audiences=[AUDIENCE], jwks=cache)
    with pytest.raises(JwksUnavailable):
        validator.validate(factory.user_token())
    cache.close()


def test_outage_is_rate_limited_and_recovers(
    server: JwksServer, validator: TokenValidator, factory: TokenFactory, clock: FakeClock
) -> None:
    server.respond_with(503)
    token = factory.user_token()
    for _ in range(5):
        with pytest.raises(JwksUnavailable):
            validator.validate(token)
    assert server.fetch_count == 1
    server.respond_normally()
    clock.advance(WINDOW)
    assert validator.validate(token).oid
    assert server.fetch_count == 2


def test_known_keys_survive_an_outage(
    server: JwksServer, validator: TokenValidator, factory: TokenFactory, clock: FakeClock, other_key: SigningKey
) -> None:
    validator.validate(factory.user_token())
    server.respond_with(500)
    clock.advance(WINDOW)
    assert validator.validate(factory.user_token()).oid  # no fetch needed
    # A new kid during the outage cannot be judged: 503, not 401.
    with pytest.raises(JwksUnavailable):
        validator.validate(factory.user_token(key=other_key))


def test_stale_keys_are_refreshed_and_withdrawn_keys_refused(
    server: JwksServer, factory: TokenFactory, clock: FakeClock
) -> None:
    cache = JwksCache(server.uri, min_refetch_interval=WINDOW, max_age=3600, clock=clock)
    validator = TokenValidator(tenant_ids=[TENANT], audiences=[AUDIENCE], jwks=cache)
    validator.validate(factory.user_token())
    replacement = SigningKey()
    server.set_keys([replacement])
    clock.advance(1800)
    assert validator.validate(factory.user_token()).oid  # still fresh: no fetch
    assert server.fetch_count == 1
    clock.advance(1800)
    assert refused(validator, factory.user_token()).detail == "The token is signed with an unknown key"
    assert validator.validate(factory.user_token(key=replacement)).oid
    assert server.fetch_count == 2
    cache.close()


def test_stale_keys_stay_in_use_when_the_refresh_fails(
    server: JwksServer, factory: TokenFactory, clock: FakeClock
) -> None:
    cache = JwksCache(server.uri, max_age=3600, clock=clock)
    validator = TokenValidator(tenant_ids=[TENANT], audiences=[AUDIENCE], jwks=cache)
    validator.validate(factory.user_token())
    server.respond_with(500)
    clock.advance(7200)
    assert validator.validate(factory.user_token()).oid
    assert server.fetch_count == 2
    cache.close()


# --- the token cache -------------------------------------------------------------------------------------


class CountingJwks(JwksCache):
    """Counts key lookups: the validator looks a key up for every signature it verifies, and only then."""

    def __init__(self, uri: str, **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        self.lookups = 0

    def find_signing_key(self, kid: str) -> VersionedKey | None:
        self.lookups += 1
        return super().find_signing_key(kid)


@pytest.fixture
def wall() -> FakeClock:
    """The validator's wall clock, starting at the real time: a first use is judged by PyJWT on the real clock."""
    return FakeClock(start=time.time())


@pytest.fixture
def counting(server: JwksServer, clock: FakeClock) -> Iterator[CountingJwks]:
    jwks = CountingJwks(server.uri, min_refetch_interval=WINDOW, max_age=3600, timeout=2.0, clock=clock)
    yield jwks
    jwks.close()


@pytest.fixture
def cached(counting: CountingJwks, wall: FakeClock) -> TokenValidator:
    return TokenValidator(tenant_ids=[TENANT], audiences=[AUDIENCE], jwks=counting, clock=wall)


def test_a_repeated_token_is_verified_once(
    cached: TokenValidator, counting: CountingJwks, factory: TokenFactory
) -> None:
    token = factory.user_token(oid="repeat", groups=["g1"])
    first = cached.validate(token)
    assert [cached.validate(token) for _ in range(100)] == [first] * 100
    assert counting.lookups == 1
    assert cached.cached_token_count == 1


def test_every_new_token_is_verified(cached: TokenValidator, counting: CountingJwks, factory: TokenFactory) -> None:
    # Two tokens of one user differ in their text (`uti`, `iat`), and each is verified on its first use.
    first, second = factory.user_token(oid="same"), factory.user_token(oid="same")
    assert cached.validate(first) == cached.validate(second)
    assert counting.lookups == 2


@pytest.mark.parametrize("leeway", [60, 0])
def test_a_cached_token_is_refused_once_exp_plus_leeway_passes(
    leeway: int, counting: CountingJwks, wall: FakeClock, factory: TokenFactory
) -> None:
    validator = TokenValidator(
        tenant_ids=[TENANT], audiences=[AUDIENCE], jwks=counting, clock=wall, leeway_seconds=leeway
    )
    exp = int(wall.now) + 120
    token = factory.user_token(exp=exp)
    validator.validate(token)
    wall.now = exp + leeway - 0.001
    assert validator.validate(token).oid
    assert counting.lookups == 1
    wall.now = exp + leeway  # PyJWT refuses when exp <= now - leeway
    assert refused(validator, token).detail == "The token has expired"
    assert validator.cached_token_count == 0
    assert refused(validator, token).detail == "The token has expired"


def test_the_cache_and_a_first_use_draw_the_line_at_the_same_instant(
    counting: CountingJwks, wall: FakeClock, factory: TokenFactory
) -> None:
    cached = TokenValidator(tenant_ids=[TENANT], audiences=[AUDIENCE], jwks=counting, clock=wall)
    start = wall.now
    exp = int(start) + 120
    token = factory.user_token(exp=exp)
    cached.validate(token)
    for offset in (-1.0, -0.001, 0.0, 0.001, 1.0):
        wall.now = exp + 60 + offset
        uncached = TokenValidator(tenant_ids=[TENANT], audiences=[AUDIENCE], jwks=counting, clock=wall, cache_size=0)
        outcomes = []
        for validator in (cached, uncached):
            try:
                outcomes.append(validator.validate(token).oid)
            except Unauthenticated as error:
                outcomes.append(error.detail)
        assert outcomes[0] == outcomes[1], offset
        assert (outcomes[0] == "The token has expired") is (offset >= 0), offset
        wall.now = start  # back before the line, for the cached validator to hold the token again
        cached.validate(token)


def test_a_cached_token_honours_nbf_and_iat_when_the_clock_steps_back(
    cached: TokenValidator, counting: CountingJwks, wall: FakeClock, factory: TokenFactory
) -> None:
    issued = int(wall.now)
    token = factory.user_token(nbf=issued, iat=None)
    cached.validate(token)
    wall.now = issued - 60  # PyJWT refuses when nbf > now + leeway; at exactly nbf - leeway it accepts
    assert cached.validate(token).oid
    assert counting.lookups == 1
    wall.now = issued - 60.001
    assert refused(cached, token).detail == "The token is not yet valid"
    iat_only = factory.user_token(nbf=None, iat=issued)
    wall.now = issued
    cached.validate(iat_only)
    wall.now = issued - 60
    assert cached.validate(iat_only).oid
    wall.now = issued - 60.001
    assert refused(cached, iat_only).detail == "The token is not yet valid"
    assert counting.lookups == 2


def test_refusals_are_not_cached(cached: TokenValidator, counting: CountingJwks, factory: TokenFactory) -> None:
    not_yet = factory.user_token(nbf=int(time.time()) + 300)
    for _ in range(3):
        refused(cached, not_yet)
    assert counting.lookups == 3
    assert cached.cached_token_count == 0


@pytest.mark.parametrize("refreshed_by", ["a token of the new key", "a made-up kid"])
def test_a_refresh_that_withdraws_the_key_flushes_the_cache(
    refreshed_by: str,
    cached: TokenValidator,
    server: JwksServer,
    clock: FakeClock,
    factory: TokenFactory,
    other_key: SigningKey,
) -> None:
    old = factory.user_token()
    cached.validate(old)
    replacement = SigningKey()
    server.set_keys([replacement])
    assert cached.validate(old).oid  # nothing has refreshed the keys yet, so the key still stands
    clock.advance(WINDOW)
    # An unknown kid refreshes the keys, whether or not the token naming it is then accepted.
    if refreshed_by == "a made-up kid":
        refused(cached, factory.user_token(key=other_key))
    else:
        assert cached.validate(factory.user_token(key=replacement)).oid
        # Entries verified with the withdrawn keys are dropped as soon as one of the new keys is used.
        assert cached.cached_token_count == 1
    assert server.fetch_count == 2
    assert refused(cached, old).detail == "The token is signed with an unknown key"


def test_keys_due_for_a_refresh_are_refreshed_before_a_cached_token_is_accepted(
    cached: TokenValidator, server: JwksServer, clock: FakeClock, factory: TokenFactory
) -> None:
    token = factory.user_token()
    cached.validate(token)
    server.set_keys([SigningKey()])
    clock.advance(3599)
    assert cached.validate(token).oid
    clock.advance(1)  # `max_age` reached
    assert refused(cached, token).detail == "The token is signed with an unknown key"
    assert server.fetch_count == 2


def test_a_refresh_that_changes_nothing_keeps_the_cache(
    cached: TokenValidator,
    counting: CountingJwks,
    server: JwksServer,
    clock: FakeClock,
    factory: TokenFactory,
    other_key: SigningKey,
) -> None:
    token = factory.user_token()
    cached.validate(token)
    clock.advance(WINDOW)
    refused(cached, factory.user_token(key=other_key))  # a made-up kid refetches the same keys
    assert server.fetch_count == 2
    lookups = counting.lookups
    for _ in range(10):
        cached.validate(token)
    assert counting.lookups == lookups
    clock.advance(3600)
    cached.validate(token)  # the keys are due for a refresh: fetched again, unchanged, and verified again
    assert server.fetch_count == 3
    assert counting.lookups == lookups + 1
    for _ in range(10):
        cached.validate(token)
    assert counting.lookups == lookups + 1


def test_the_cache_keeps_the_most_recently_used_tokens(
    counting: CountingJwks, wall: FakeClock, factory: TokenFactory
) -> None:
    validator = TokenValidator(tenant_ids=[TENANT], audiences=[AUDIENCE], jwks=counting, clock=wall, cache_size=3)
    tokens = [factory.user_token(oid=f"user-{n}") for n in range(5)]
    for token in tokens[:3]:
        validator.validate(token)
    validator.validate(tokens[0])  # used again: now the most recent
    validator.validate(tokens[3])  # evicts tokens[1], the least recently used
    validator.validate(tokens[4])  # evicts tokens[2]
    assert validator.cached_token_count == 3
    assert counting.lookups == 5
    for token in (tokens[0], tokens[3], tokens[4]):
        validator.validate(token)
    assert counting.lookups == 5
    validator.validate(tokens[1])
    assert counting.lookups == 6
    assert validator.cached_token_count == 3


def test_a_cache_size_of_zero_keeps_nothing(counting: CountingJwks, factory: TokenFactory) -> None:
    validator = TokenValidator(tenant_ids=[TENANT], audiences=[AUDIENCE], jwks=counting, cache_size=0)
    token = factory.user_token()
    for _ in range(3):
        validator.validate(token)
    assert counting.lookups == 3
    assert validator.cached_token_count == 0
    with pytest.raises(ValueError, match="cache_size"):
        TokenValidator(tenant_ids=[TENANT], audiences=[AUDIENCE], jwks=counting, cache_size=-1)


def test_concurrent_validations_through_a_small_cache(
    counting: CountingJwks, wall: FakeClock, factory: TokenFactory
) -> None:
    validator = TokenValidator(tenant_ids=[TENANT], audiences=[AUDIENCE], jwks=counting, clock=wall, cache_size=8)
    tokens = {f"user-{n}": factory.user_token(oid=f"user-{n}") for n in range(20)}
    barrier = threading.Barrier(8)
    failures: list[BaseException] = []

    def validate(seed: int) -> None:
        barrier.wait()
        try:
            for round_ in range(50):
                for oid in list(tokens)[(seed + round_) % 20 :][:5]:
                    assert validator.validate(tokens[oid]).oid == oid
        except BaseException as error:  # collected and asserted on below
            failures.append(error)

    threads = [threading.Thread(target=validate, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    assert validator.cached_token_count <= 8


# --- the Authorization header ----------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["Bearer abc.def.ghi", "bearer abc.def.ghi", "BEARER   abc.def.ghi  "])
def test_bearer_token(header: str) -> None:
    assert bearer_token(header) == "abc.def.ghi"


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_authorization_header(header: str | None) -> None:
    with pytest.raises(Unauthenticated) as caught:
        bearer_token(header)
    assert caught.value.token_sent is False


@pytest.mark.parametrize(
    "header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer a b", "abc.def.ghi", "Bearerabc"]
)
def test_unusable_authorization_header(header: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        bearer_token(header)
    assert caught.value.token_sent is True


# --- who may use the API ---------------------------------------------------------------------------------


def _user(**fields: Any) -> Principal:
    return Principal(oid="u", tid=TENANT, upn="u@contoso.com", app_id="client", **fields)


def _app(**fields: Any) -> Principal:
    return Principal(oid="sp", tid=TENANT, app_id="app", is_app_only=True, **fields)


ACCESS_MATRIX: list[tuple[str, Principal, bool, bool]] = [
    # name, principal, allowed by default, allowed with allow_reporter
    ("user with ReadWrite", _user(scopes=frozenset({SCOPE_READ_WRITE})), True, True),
    ("user without scope", _user(scopes=frozenset({"User.Read"})), False, False),
    ("user with admin role", _user(roles=frozenset({ROLE_ADMIN})), True, True),
    ("user with admin scope", _user(scopes=frozenset({ROLE_ADMIN})), False, False),
    ("user with ReadWrite and admin scope", _user(scopes=frozenset({SCOPE_READ_WRITE, ROLE_ADMIN})), True, True),
    ("user with only the report role", _user(roles=frozenset({ROLE_REPORT})), False, False),
    ("app with admin role", _app(roles=frozenset({ROLE_ADMIN})), True, True),
    ("app with report role", _app(roles=frozenset({ROLE_REPORT})), False, True),
    ("app without roles", _app(), False, False),
    ("app with another role", _app(roles=frozenset({"Something.Else"})), False, False),
    ("app with the ReadWrite name as a role", _app(roles=frozenset({SCOPE_READ_WRITE})), False, False),
]


@pytest.mark.parametrize(
    ("name", "principal", "default", "reporter"), ACCESS_MATRIX, ids=[row[0] for row in ACCESS_MATRIX]
)
def test_require_access(name: str, principal: Principal, default: bool, reporter: bool) -> None:
    for allow_reporter, allowed in ((False, default), (True, reporter)):
        if allowed:
            require_access(principal, allow_reporter=allow_reporter)
        else:
            with pytest.raises(Forbidden) as caught:
                require_access(principal, allow_reporter=allow_reporter)
            assert caught.value.detail == "The token lacks the required scope or role"


@pytest.mark.parametrize(
    ("principal", "allowed"),
    [
        (_user(scopes=frozenset({SCOPE_READ_WRITE})), False),
        (_user(scopes=frozenset({SCOPE_READ_WRITE, ROLE_ADMIN})), False),
        (_user(roles=frozenset({ROLE_ADMIN})), True),
        (_app(roles=frozenset({ROLE_ADMIN})), True),
        (_app(roles=frozenset({ROLE_REPORT})), False),
    ],
)
def test_require_admin(principal: Principal, allowed: bool) -> None:
    if allowed:
        require_admin(principal)
    else:
        with pytest.raises(Forbidden):
            require_admin(principal)


def test_end_to_end_from_header(validator: TokenValidator, factory: TokenFactory) -> None:
    principal = validator.validate(bearer_token(f"Bearer {factory.user_token(scopes='User.Read')}"))
    with pytest.raises(Forbidden):
        require_access(principal)
    app = validator.validate(bearer_token(f"Bearer {factory.app_token(roles=[ROLE_REPORT])}"))
    require_access(app, allow_reporter=True)
    with pytest.raises(Forbidden):
        require_access(app)
