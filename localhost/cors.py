"""CORS for HTTP functions, as `func start` does it: `Host.CORS` and `Host.CORSCredentials` of local.settings.json.

Core Tools (`Actions/HostActions/Startup.cs`) splits `CORS` on commas (empty entries dropped, nothing trimmed) and
installs ASP.NET Core's CORS middleware with `WithOrigins(origins).AllowAnyHeader().AllowAnyMethod()`, plus
`AllowCredentials()` when `CORSCredentials` is true; `func start --cors` / `--cors-credentials` override the file.
The middleware (`CorsService`, `CorsMiddleware`) then behaves as follows, and so does this module:
- Origins are compared exactly, after the configured ones are lower-cased. `*` allows any origin, but only when it
  is the only entry; `*` together with credentials is refused when the host starts.
- A request without an `Origin` header is left alone.
- A preflight (OPTIONS with `Origin` and `Access-Control-Request-Method`) is answered by the host with 204 and
  never reaches a function. For an allowed origin it carries `Access-Control-Allow-Origin` (the origin, or `*`),
  `Access-Control-Allow-Methods` (the requested method), `Access-Control-Allow-Headers` (the requested headers,
  when any) and `Access-Control-Allow-Credentials: true` with credentials; for any other origin, none of them.
- Any other request with an allowed `Origin` gets `Access-Control-Allow-Origin` (replacing a function's own) and,
  with credentials, `Access-Control-Allow-Credentials: true`; others get nothing added.
- `Vary: Origin` is added when more than one origin is configured.
Neither sends `Access-Control-Max-Age` or `Access-Control-Expose-Headers`. On Azure, CORS is the platform's (the
function app's CORS settings), not these.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("localhost")

ANY_ORIGIN = "*"
# What a browser sends as `Origin`: a scheme, a host and maybe a port; nothing else ever matches one.
_ORIGIN_SHAPE = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s?#]+")


class CorsConfigError(Exception):
    """The CORS settings cannot work; `func start` would not start with them either."""


@dataclass(frozen=True)
class CorsPolicy:
    origins: tuple[str, ...]  # as configured, lower-cased
    credentials: bool = False

    @classmethod
    def from_setting(cls, cors: str, *, credentials: bool = False) -> CorsPolicy | None:
        """The policy `func start` builds from a `CORS` value; None when it names no origin (CORS off)."""
        origins = tuple(origin.lower() for origin in cors.split(",") if origin)
        if not origins:
            return None
        policy = cls(origins, credentials)
        if policy.any_origin and credentials:
            raise CorsConfigError(
                "Host.CORS is * and Host.CORSCredentials is true: the CORS protocol does not allow a wildcard origin "
                "with credentials (func start refuses it too); list the origins instead"
            )
        for origin in origins:
            if origin != ANY_ORIGIN and not _ORIGIN_SHAPE.fullmatch(origin):
                # Kept, as func start keeps it, but it can never equal a browser's Origin header.
                log.warning(
                    "CORS origin %r never matches a request: an origin is scheme://host[:port], "
                    "with no spaces, path or trailing slash",
                    origin,
                )
        return policy

    @property
    def any_origin(self) -> bool:
        return self.origins == (ANY_ORIGIN,)

    def allows(self, origin: str | None) -> bool:
        return bool(origin) and (self.any_origin or origin in self.origins)

    @staticmethod
    def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
        """Whether the host answers this request itself (`headers` has lower-case names)."""
        return method.upper() == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers

    def preflight_headers(self, headers: Mapping[str, str]) -> list[tuple[str, str]]:
        """The headers of the host's 204 answer to a preflight."""
        if not self.allows(headers.get("origin")):
            return []
        answer = self._common(headers["origin"])
        requested = [name.strip() for name in headers.get("access-control-request-headers", "").split(",")]
        if any(requested):
            answer.append(("Access-Control-Allow-Headers", ",".join(name for name in requested if name)))
        answer.append(("Access-Control-Allow-Methods", headers["access-control-request-method"]))
        return self._with_vary(answer)

    def response_headers(
        self, request_headers: Mapping[str, str], response_headers: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """A response's headers once CORS is applied to them."""
        origin = request_headers.get("origin")
        if not self.allows(origin):
            return response_headers
        assert origin is not None
        ours = self._common(origin)
        replaced = {name.lower() for name, _ in ours}
        kept = [(name, value) for name, value in response_headers if name.lower() not in replaced]
        return self._with_vary(kept + ours)

    def _common(self, origin: str) -> list[tuple[str, str]]:
        headers = [("Access-Control-Allow-Origin", ANY_ORIGIN if self.any_origin else origin)]
        if self.credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        return headers

    def _with_vary(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [*headers, ("Vary", "Origin")] if len(self.origins) > 1 else headers

    def describe(self) -> str:
        allowed = "any origin" if self.any_origin else ", ".join(self.origins)
        return f"{allowed}{' (with credentials)' if self.credentials else ''}"


@dataclass(frozen=True)
class HostSection:
    """The keys of local.settings.json's `Host` section that the local host honours."""

    cors: str = ""
    cors_credentials: bool = False


def read_host_section(path: Path) -> HostSection:
    """`Host.CORS` and `Host.CORSCredentials` of a local.settings.json; defaults when the file does not exist.

    Names are matched case-insensitively and `CORSCredentials` may be a boolean, an integer or "true"/"false", as
    Core Tools' JSON reader accepts them.
    """
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        return HostSection()
    except (OSError, ValueError) as error:
        raise CorsConfigError(f"{path} cannot be read as JSON: {error}") from None
    host = _key(document, "Host") if isinstance(document, dict) else None
    if host is None:
        return HostSection()
    if not isinstance(host, dict):
        raise CorsConfigError(f"{path}: Host must be an object")
    cors = _key(host, "CORS")
    if cors is not None and not isinstance(cors, str):
        raise CorsConfigError(f"{path}: Host.CORS must be a string of comma-separated origins")
    return HostSection(cors=cors or "", cors_credentials=_boolean(_key(host, "CORSCredentials"), path))


def _boolean(value: Any, path: Path) -> bool:
    # What Json.NET's boolean reading accepts: a boolean, an integer (non-zero is true), "true"/"false" in any case.
    if value is None:
        return False
    if isinstance(value, bool | int):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise CorsConfigError(f"{path}: Host.CORSCredentials must be true or false, not {value!r}")


def _key(mapping: dict[str, Any], name: str) -> Any:
    return next((value for key, value in mapping.items() if key.lower() == name.lower()), None)
