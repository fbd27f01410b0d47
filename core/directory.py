"""The user directory port. Delegate, reassign and assign resolve users through it, by UPN or by key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class DirectoryUser:
    user_key: str
    upn: str
    display_name: str | None
    account_enabled: bool


class Directory(Protocol):
    def find_by_upn(self, upn: str) -> DirectoryUser | None: ...

    def find_by_key(self, user_key: str) -> DirectoryUser | None: ...
