"""The user directory port. Delegate, reassign and assign resolve users through it, by UPN or by key.

Adapters:
- `CosmosDirectory`: the `users` container, for local runs and tenants that sync their users. Each user
  is stored twice in one container: under `key:{userKey}` and under `upn:{upn}`, so either lookup is one
  point read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from azure.cosmos import ContainerProxy
from azure.cosmos.exceptions import CosmosHttpResponseError

from core.store import translate_cosmos_errors


@dataclass(frozen=True)
class DirectoryUser:
    user_key: str
    upn: str
    display_name: str | None
    account_enabled: bool


class Directory(Protocol):
    def find_by_upn(self, upn: str) -> DirectoryUser | None: ...

    def find_by_key(self, user_key: str) -> DirectoryUser | None: ...


def _key_pk(user_key: str) -> str:
    return f"key:{user_key}"


def _upn_pk(upn: str) -> str:
    return f"upn:{upn.lower()}"


def _user_from(body: dict[str, Any]) -> DirectoryUser:
    return DirectoryUser(
        user_key=body["userKey"],
        upn=body["upn"],
        display_name=body.get("displayName"),
        account_enabled=bool(body.get("accountEnabled", True)),
    )


class CosmosDirectory:
    def __init__(self, container: ContainerProxy) -> None:
        self._container = container

    def _read(self, pk: str) -> DirectoryUser | None:
        with translate_cosmos_errors():
            try:
                body = self._container.read_item("user", partition_key=pk)
            except CosmosHttpResponseError as error:
                if error.status_code == 404:
                    return None
                raise
        return _user_from(body)

    def find_by_upn(self, upn: str) -> DirectoryUser | None:
        return self._read(_upn_pk(upn))

    def find_by_key(self, user_key: str) -> DirectoryUser | None:
        return self._read(_key_pk(user_key))

    def put(self, user: DirectoryUser) -> None:
        """Write both entries of a user. Used by admins' `PUT /users/{userKey}` and by seeding."""
        body = {
            "id": "user",
            "userKey": user.user_key,
            "upn": user.upn.lower(),
            "displayName": user.display_name,
            "accountEnabled": user.account_enabled,
        }
        with translate_cosmos_errors():
            self._container.upsert_item({**body, "pk": _key_pk(user.user_key)})
            self._container.upsert_item({**body, "pk": _upn_pk(user.upn)})
