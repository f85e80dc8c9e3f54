"""Users, roles and API keys.

Keys are 256-bit random tokens, so a plain SHA-256 of the key is enough to store them: a slow
password hash (bcrypt, argon2) protects guessable secrets, and these are not guessable. The hash
is also what the lookup index holds, so checking a key is one indexed query.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from glassbox.errors import Forbidden, InvalidInput, Unauthorized

# Each role can do everything the roles after it can.
ROLES = ("owner", "admin", "annotator")
KEY_PREFIX = "gbq_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user name and role."""

    name: str
    role: str

    def require(self, role: str) -> None:
        """Raise 403 unless this user's role is ``role`` or above."""
        if ROLES.index(self.role) > ROLES.index(role):
            raise Forbidden(f"user {self.name!r} is {self.role}; this needs {role} or above")


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    return role


def authenticate(store, key: str | None) -> Principal:
    """The user owning ``key``; 401 when it is missing or unknown."""
    if not key:
        raise Unauthorized("missing API key: send it in the X-API-Key header")
    user = store.user_by_key_hash(hash_key(key))
    if user is None:
        raise Unauthorized("unknown API key")
    if not user["active"]:
        raise Unauthorized(f"user {user['name']!r} is deactivated; an owner can reactivate them")
    return Principal(user["name"], user["role"])
