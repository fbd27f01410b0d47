"""Use case: an admin adds or changes a user of the Cosmos directory (`PUT /users/{userKey}`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import StrictBool, StringConstraints

from core.auth import require_admin
from core.directory import DirectoryUser, UserRegistry
from core.errors import FieldError, ValidationFailed
from core.models import RequestModel, Upn
from core.services.common import parse_model

if TYPE_CHECKING:
    from core.auth import Principal

# Keys are opaque (CONTRACTS "Identity"); only their length is bounded, to fit a Cosmos partition key.
MAX_USER_KEY_LENGTH = 255


class UserPut(RequestModel):
    """The body of `PUT /users/{userKey}`."""

    upn: Upn
    display_name: Annotated[str, StringConstraints(max_length=256)] | None = None
    account_enabled: StrictBool = True


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


def put_user(
    user_key: str,
    body: object,
    principal: Principal,
    registry: UserRegistry,
    *,
    forget: Callable[[DirectoryUser], None] = lambda _user: None,
) -> UserOutcome:
    """Create or replace the user stored under `user_key`. `forget` drops the user's earlier and new
    entries from this process's directory cache, so its own next lookup sees the change."""
    require_admin(principal)
    if not 1 <= len(user_key) <= MAX_USER_KEY_LENGTH:
        message = f"must be 1 to {MAX_USER_KEY_LENGTH} characters"
        raise ValidationFailed(f"The request is not valid: userKey: {message}", [FieldError("userKey", message)])
    command = parse_model(UserPut, body)
    user = DirectoryUser(
        user_key=user_key,
        upn=command.upn,
        display_name=command.display_name,
        account_enabled=command.account_enabled,
    )
    previous = registry.put(user)
    if previous is not None:
        forget(previous)
    forget(user)
    return UserOutcome(user=user, created=previous is None)
