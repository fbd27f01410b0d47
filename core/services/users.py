"""Use cases of the Cosmos directory: an admin adds or changes a user (`PUT /users/{userKey}`) or reads
one (`GET /users/{userKey}`), always in the admin's own tenant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.auth import require_admin
from core.directory import DirectoryUser, UserRegistry
from core.errors import FieldError, NotFound, ValidationFailed
from core.hygiene import check_identifier
from core.models import UserRequest
from core.services.pipeline import parse_model

if TYPE_CHECKING:
    from core.auth import Principal

# Keys are opaque (docs/api-rules.md, "Identity and tenancy"); only their length is bounded.
MAX_USER_KEY_LENGTH = 255


@dataclass(frozen=True)
class UserOutcome:
    user: DirectoryUser
    created: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "userKey": self.user.user_key,
            "upn": self.user.upn,
            "displayName": self.user.display_name,
            "accountEnabled": self.user.account_enabled,
        }


def _check_key(user_key: str) -> None:
    """Keys are opaque, but follow the identifier rule: no control, format or private-use characters."""
    try:
        check_identifier(user_key, max_length=MAX_USER_KEY_LENGTH)
    except ValueError as error:
        raise ValidationFailed(
            f"The request is not valid: userKey: {error}", [FieldError("userKey", str(error))]
        ) from None


def put_user(
    user_key: str,
    body: object,
    principal: Principal,
    registry: UserRegistry,
    *,
    forget: Callable[[str, DirectoryUser], None] = lambda _tenant, _user: None,
) -> UserOutcome:
    """Create or replace the user stored under `user_key` in the caller's tenant. `forget` drops the
    user's earlier and new entries from this process's directory cache, so its next lookup sees the change."""
    require_admin(principal)
    _check_key(user_key)
    request = parse_model(UserRequest, body)
    user = DirectoryUser(
        user_key=user_key, upn=request.upn, display_name=request.display_name, account_enabled=request.account_enabled
    )
    previous = registry.put(principal.tid, user)
    if previous is not None:
        forget(principal.tid, previous)
    forget(principal.tid, user)
    return UserOutcome(user=user, created=previous is None)


def get_user(user_key: str, principal: Principal, registry: UserRegistry) -> UserOutcome:
    require_admin(principal)
    _check_key(user_key)
    user = registry.get(principal.tid, user_key)
    if user is None:
        raise NotFound(f"No user with key {user_key} is in the directory")
    return UserOutcome(user=user, created=False)
