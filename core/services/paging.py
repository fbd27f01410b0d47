"""Paging by continuation token, for every list.

The store pages by its own continuation token (no OFFSET: the emulator has none, and it would cost more the
deeper the page). The token handed to a caller is bound to the query and the caller that made it: it
carries a fingerprint of both, so it cannot continue another query or be replayed by another caller.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import TYPE_CHECKING, Any

from core.errors import FieldError, ValidationFailed

if TYPE_CHECKING:
    from core.auth import Principal

_NOT_OURS = "is not a continuation token of this query"


def fingerprint_of(query: dict[str, Any], principal: Principal) -> str:
    """A token continues one query for one caller: the query's description with the caller's tenant and key."""
    described = {**query, "caller": [principal.tid, principal.oid]}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:32]


def encode_token(store_token: str | None, fingerprint: str) -> str | None:
    """Store tokens are JSON; base64url makes them, bound to their query, safe in a query string."""
    if store_token is None:
        return None
    wrapped = json.dumps({"q": fingerprint, "t": store_token}, separators=(",", ":"))
    return base64.urlsafe_b64encode(wrapped.encode()).decode("ascii")


def decode_token(token: str | None, fingerprint: str) -> str | None:
    if token is None:
        return None
    try:
        wrapped = json.loads(base64.urlsafe_b64decode(token.encode("ascii")).decode())
    except (ValueError, binascii.Error, UnicodeError):
        wrapped = None
    if not isinstance(wrapped, dict) or wrapped.get("q") != fingerprint or not isinstance(wrapped.get("t"), str):
        raise ValidationFailed(f"continuationToken {_NOT_OURS}", [FieldError("continuationToken", _NOT_OURS)])
    return str(wrapped["t"])
