"""Benchmark token validation: a first-seen token, a repeated token, and a bare `jwt.decode` of each.

Starts the development signer (a fresh RSA key and its JWKS endpoint on 127.0.0.1), builds the
`TokenValidator` the composition root builds, and measures, in one run and alternating call by call:

- `validate` of a token it has never seen (each iteration a fresh token, minted before timing starts);
- `jwt.decode` of that same token with the same key object and the same options (`core.auth.DECODE_OPTIONS`);
- `validate` of one token it has seen before (the token cache);
- `jwt.decode` of that repeated token.

    .venv/bin/python -m bench.bench_auth [--n 3000]

Prints p50/p99 of each in microseconds and the ratios to the bare decode of the same token. These machines drift
by 2x or more between runs, so compare ratios within one run, not figures across runs. Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial

import cryptography
import jwt

from core.auth import DECODE_OPTIONS, JwksCache, TokenValidator
from localhost.dev_signer import DevSigner, TokenFactory

LEEWAY_SECONDS = 60


def timed_us(call: Callable[[], object]) -> float:
    started = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - started) / 1000


def percentiles(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples), statistics.quantiles(samples, n=100)[98]


def compare_validation(
    validate: Callable[[str], object],
    decode: Callable[[str], object],
    fresh: list[str],
    repeated: str,
    *,
    warmup: int,
) -> dict[str, tuple[float, float]]:
    """Validate and bare-decode each fresh token, then the repeated one, alternating call by call; the
    first `warmup` rounds are not counted. Returns p50/p99 in microseconds by series name."""
    series: dict[str, list[float]] = {
        "first seen": [],
        "bare, first seen": [],
        "repeated": [],
        "bare, repeated": [],
    }
    gc.collect()
    for i, token in enumerate(fresh):
        calls: list[tuple[str, Callable[[], object]]] = [
            ("first seen", partial(validate, token)),
            ("bare, first seen", partial(decode, token)),
            ("repeated", partial(validate, repeated)),
            ("bare, repeated", partial(decode, repeated)),
        ]
        # Rotate which comes first, so no side always runs right after another's cache effects.
        shift = i % len(calls)
        for name, call in calls[shift:] + calls[:shift]:
            elapsed = timed_us(call)
            if i >= warmup:
                series[name].append(elapsed)
    return {name: percentiles(samples) for name, samples in series.items()}


def measure_validation(
    validator: TokenValidator, jwks: JwksCache, factory: TokenFactory, audiences: list[str], *, n: int, warmup: int
) -> dict[str, tuple[float, float]]:
    """Mints `warmup + n` fresh tokens and one repeated, then runs `compare_validation` of `validator` against a
    bare `jwt.decode` with the key `jwks` serves, the given audiences and the validator's options."""
    print(f"minting {warmup + n} tokens ...", flush=True)
    # Signing costs far more than verifying, so every token is minted before anything is timed.
    fresh = [factory.user_token(groups=["g1", "g2"]) for _ in range(warmup + n)]
    repeated = factory.user_token(groups=["g1", "g2"])
    validator.validate(repeated)  # fetches the JWKS and caches `repeated`
    key = jwks.get_signing_key(factory.key.kid)
    assert key is not None
    decode = partial(
        jwt.decode,
        key=key,
        algorithms=["RS256"],
        audience=audiences,
        leeway=LEEWAY_SECONDS,
        options=DECODE_OPTIONS,  # as `TokenValidator._verify` passes them, so only the validator's own work differs
    )
    return compare_validation(validator.validate, decode, fresh, repeated, warmup=warmup)


def print_comparison(figures: dict[str, tuple[float, float]]) -> None:
    for name, (p50, p99) in figures.items():
        print(f"{name:<18} p50 {p50:8.2f} us   p99 {p99:8.2f} us")
    print()
    for name, reference in (("first seen", "bare, first seen"), ("repeated", "bare, repeated")):
        (p50, p99), (ref50, ref99) = figures[name], figures[reference]
        print(f"{name:<11} / bare decode:  p50 {p50 / ref50:6.3f}   p99 {p99 / ref99:6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000, help="measured iterations (each mints one fresh token)")
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()

    signer = DevSigner()
    jwks = JwksCache(signer.jwks_uri)
    try:
        factory = signer.tokens
        validator = TokenValidator(tenant_ids=[factory.tenant_id], audiences=[factory.audience], jwks=jwks)
        figures = measure_validation(validator, jwks, factory, [factory.audience], n=args.n, warmup=args.warmup)
        print(
            f"Python {platform.python_version()}, PyJWT {jwt.__version__}, cryptography {cryptography.__version__}, "
            f"n={args.n} each, alternating\n"
        )
        print_comparison(figures)
        ratio = figures["repeated"][0] / figures["bare, repeated"][0]
        print(f"\ntarget: repeated / bare decode under 0.1 at p50: {ratio:.3f}")
    finally:
        jwks.close()
        signer.stop()


if __name__ == "__main__":
    main()
