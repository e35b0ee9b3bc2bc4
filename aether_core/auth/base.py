"""The auth contract: who is calling, and may they do this."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import msgspec
from pydantic import BaseModel

from aether_core.providers import ProviderSettings


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticated caller."""

    name: str
    roles: tuple[str, ...] = ()
    #: The id of the token that authenticated the caller, when one did.
    token_id: str | None = None


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of :meth:`Auth.authorize`; ``reason`` goes to the audit log."""

    allowed: bool
    reason: str


class Auth(ABC):
    """Authenticates callers and authorizes their actions.

    * :meth:`authenticate` and :meth:`verify_token` return a :class:`Principal` or raise
      :class:`~aether_core.errors.Unauthorized` with a reason that never contains the
      credential itself.
    * :meth:`authorize` never raises for a refusal: it returns a :class:`Decision`.
    * Actions are ``<area>:<verb>`` (``configs:read``, ``configs:write``,
      ``secrets:read``, ``users:admin`` …); resources are names (``billing/db``).
    """

    name: ClassVar[str]
    Settings: ClassVar[type[BaseModel]] = ProviderSettings

    async def start(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Called once, after storage is open."""

    @abstractmethod
    async def authenticate(self, username: str, password: str) -> Principal:
        """Check a username and password."""

    @abstractmethod
    async def issue_token(self, principal: Principal) -> str:
        """A signed token for ``principal``."""

    @abstractmethod
    async def verify_token(self, token: str) -> Principal:
        """The principal a token names, if it is valid, unexpired and not revoked."""

    @abstractmethod
    async def revoke_token(self, token: str) -> None:
        """Make ``token`` invalid until it would have expired."""

    @abstractmethod
    def authorize(self, principal: Principal, action: str, resource: str = "") -> Decision:
        """May ``principal`` do ``action`` on ``resource``?"""
