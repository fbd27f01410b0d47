"""The Cosmos DB user directory: the `users` container, one partition per tenant.

Each user is stored twice in its tenant's partition: under `key:{digest of the user key}` and under
`upn:{digest of the UPN}`, so either lookup is one point read. Ids are digests because keys are opaque
and may hold characters Cosmos ids may not. A user's entry and its UPN entries change together in one
transactional batch, so a UPN entry always names the key that holds it: no race leaves a stale UPN
behind, and two keys racing for one UPN cannot both win.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from azure.cosmos import ContainerProxy

from core.cosmos.client import read_or_none, translate_cosmos_errors
from core.directory import DirectoryUser
from core.errors import ConcurrencyConflict, DuplicateUpn
from core.retry import retry_conflicts

DOC_TYPE_USER = "user"
DOC_TYPE_UPN = "upn"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def key_entry_id(user_key: str) -> str:
    return f"key:{_digest(user_key)}"


def upn_entry_id(upn: str) -> str:
    return f"upn:{_digest(upn.lower())}"


def _user_from(body: dict[str, Any]) -> DirectoryUser:
    return DirectoryUser(
        user_key=body["userKey"],
        upn=body["upn"],
        display_name=body.get("displayName"),
        account_enabled=bool(body.get("accountEnabled", True)),
    )


def _body_of(user: DirectoryUser, tenant_id: str, entry_id: str, doc_type: str) -> dict[str, Any]:
    return {
        "id": entry_id,
        "pk": tenant_id,
        "docType": doc_type,
        "userKey": user.user_key,
        "upn": user.upn,
        "displayName": user.display_name,
        "accountEnabled": user.account_enabled,
    }


class CosmosDirectory:
    def __init__(self, container: ContainerProxy) -> None:
        self._container = container

    def _read(self, tenant_id: str, entry_id: str) -> dict[str, Any] | None:
        return read_or_none(self._container, entry_id, tenant_id)

    def find_by_upn(self, tenant_id: str, upn: str) -> DirectoryUser | None:
        body = self._read(tenant_id, upn_entry_id(upn))
        return None if body is None else _user_from(body)

    def find_by_key(self, tenant_id: str, user_key: str) -> DirectoryUser | None:
        body = self._read(tenant_id, key_entry_id(user_key))
        return None if body is None else _user_from(body)

    def get(self, tenant_id: str, user_key: str) -> DirectoryUser | None:
        return self.find_by_key(tenant_id, user_key)

    def put(self, tenant_id: str, user: DirectoryUser) -> DirectoryUser | None:
        user = replace(user, upn=user.upn.lower())
        return retry_conflicts(lambda: self._put_once(tenant_id, user))

    def _put_once(self, tenant_id: str, user: DirectoryUser) -> DirectoryUser | None:
        key_id, upn_id = key_entry_id(user.user_key), upn_entry_id(user.upn)
        current = self._read(tenant_id, key_id)
        holder = self._read(tenant_id, upn_id)
        if holder is not None and holder["userKey"] != user.user_key:
            raise DuplicateUpn(f"The UPN {user.upn} belongs to another user key")
        operations: list[Any] = [
            _upsert(_body_of(user, tenant_id, key_id, DOC_TYPE_USER), current),
            _upsert(_body_of(user, tenant_id, upn_id, DOC_TYPE_UPN), holder),
        ]
        previous = None if current is None else _user_from(current)
        if previous is not None and previous.upn != user.upn:
            # The old UPN entry names this key (the batch keeps them in step), so it goes with the rename.
            operations.append(("delete", (upn_entry_id(previous.upn),)))
        batch: Sequence[Any] = operations
        with translate_cosmos_errors(
            container=self._container.id, on_conflict=ConcurrencyConflict("a directory entry was created concurrently")
        ):
            self._container.execute_item_batch(batch, partition_key=tenant_id)
        return previous


def _upsert(body: dict[str, Any], current: dict[str, Any] | None) -> tuple[Any, ...]:
    """Create when it was missing, else replace conditionally on the ETag read: a concurrent change makes
    the whole batch fail (409 or 412), and the put is decided again."""
    if current is None:
        return ("create", (body,))
    return ("replace", (body["id"], body), {"if_match_etag": current["_etag"]})
