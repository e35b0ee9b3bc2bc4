"""``[auth] use = "{{ cookiecutter.plugin_name }}"``: {{ cookiecutter.description }}.

The template starts you with users listed in the manifest (argon2 password hashes),
opaque random tokens kept in memory, and two roles: ``admin`` may do anything,
``reader`` may do ``*:read``. Replace :meth:`authenticate` with your identity
provider's check (LDAP, OIDC …) and :meth:`authorize` with your policy. Refusals never
repeat the credential.
"""

from __future__ import annotations

import secrets
import time
from typing import ClassVar

from aether_core.auth.base import Auth, Decision, Principal
from aether_core.errors import Unauthorized
from aether_core.providers import NodeInfo, ProviderSettings
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field


class User(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: An argon2 hash (``python -c "import argon2; print(argon2.PasswordHasher().hash('…'))"``).
    password_hash: str
    roles: list[str] = Field(default_factory=list)


class {{ cookiecutter.class_name }}Settings(ProviderSettings):
    """The ``[auth]`` keys besides ``use``; unknown keys are manifest errors."""

    #: Users by name.
    users: dict[str, User] = Field(default_factory=dict)
    #: Seconds a token stays valid.
    token_ttl: float = Field(default=3600.0, gt=0)


class {{ cookiecutter.class_name }}(Auth):
    name: ClassVar[str] = "{{ cookiecutter.plugin_name }}"
    Settings = {{ cookiecutter.class_name }}Settings

    def __init__(self, users: dict[str, User], token_ttl: float = 3600.0) -> None:
        self._users = users
        self._ttl = token_ttl
        self._tokens: dict[str, tuple[Principal, float]] = {}
        self._hasher = PasswordHasher()

    @classmethod
    def from_settings(
        cls, settings: {{ cookiecutter.class_name }}Settings, node: NodeInfo
    ) -> {{ cookiecutter.class_name }}:
        return cls(settings.users, settings.token_ttl)

    async def authenticate(self, username: str, password: str) -> Principal:
        user = self._users.get(username)
        try:
            if user is None:
                raise VerificationError
            self._hasher.verify(user.password_hash, password)
        except (VerificationError, InvalidHashError):
            raise Unauthorized("wrong username or password") from None
        return Principal(name=username, roles=tuple(user.roles))

    async def issue_token(self, principal: Principal) -> str:
        token = secrets.token_urlsafe(32)
        self._tokens[token] = (principal, time.monotonic() + self._ttl)
        return token

    async def verify_token(self, token: str) -> Principal:
        found = self._tokens.get(token)
        if found is None or found[1] < time.monotonic():
            raise Unauthorized("the token is unknown, expired or revoked")
        return found[0]

    async def revoke_token(self, token: str) -> None:
        self._tokens.pop(token, None)

    def authorize(self, principal: Principal, action: str, resource: str = "") -> Decision:
        if "admin" in principal.roles:
            return Decision(allowed=True, reason="role admin may do anything")
        if "reader" in principal.roles and action.endswith(":read"):
            return Decision(allowed=True, reason="role reader may read")
        return Decision(allowed=False, reason=f"no role of {principal.name!r} allows {action}")
