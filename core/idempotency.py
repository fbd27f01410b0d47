"""Idempotency-Key replay.

A key is scoped to the caller and the route: the record's key is a hash of both plus the header's
value, so two callers (or two routes) never share a record. The record is stored inside the document
the response shows, written by the same Cosmos operation as the change itself: a crash can never leave
a change without its record, or a record without its change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from core.errors import IdempotencyKeyReused, ValidationFailed
from core.models import AssignmentDocument, IdempotencyRecord

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class IdempotentRequest:
    key: str
    body_hash: str

    def record(self, *, created: bool, holder: AssignmentDocument) -> IdempotencyRecord:
        """The response a write is about to make, to be stored in `holder` by the same write."""
        response = holder.to_public().to_json()
        response.pop("_etag", None)
        response.pop("_ts", None)
        return IdempotencyRecord(
            key=self.key, body_hash=self.body_hash, created=created, version=holder.version, response=response
        )


@dataclass(frozen=True)
class Replay:
    created: bool
    body: dict[str, Any]


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def body_hash(body: object) -> str:
    """Same JSON value, same hash, whatever the key order or whitespace of the request."""
    if isinstance(body, bytes | bytearray):
        return hashlib.sha256(bytes(body)).hexdigest()
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def idempotent_request(actor: str, route: str, key: str | None, body: object) -> IdempotentRequest | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValidationFailed(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    return IdempotentRequest(key=_digest(actor, route, key), body_hash=body_hash(body))


def derived_id(request: IdempotentRequest) -> str:
    """A create without an explicit id gets an id derived from its key, so a retry finds its first try."""
    return request.key[:32]


def find_replay(request: IdempotentRequest | None, holder: AssignmentDocument | None) -> Replay | None:
    if request is None or holder is None:
        return None
    record = holder.find_idempotency_record(request.key)
    if record is None:
        return None
    if record.body_hash != request.body_hash:
        raise IdempotencyKeyReused("This Idempotency-Key was already used with a different request body")
    if record.version == holder.version:
        return Replay(created=record.created, body=holder.to_public().to_json())
    return Replay(created=record.created, body={**record.response, "_etag": record.etag, "_ts": record.ts})
