"""What every handler reaches through ``request.app.state``: the node's parts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from litestar.connection import ASGIConnection

from aether_admin.metrics import Metrics
from aether_admin.settings import AdminSettings
from aether_admin.throttle import Throttle
from aether_core.auth.base import Auth, Principal
from aether_core.auth.jwt import JwtAuth
from aether_core.errors import NotFound, Unauthorized
from aether_core.manager import ConfigManager
from aether_core.secrets.manager import SecretManager
from aether_core.transport.base import Transport

STATE_KEY = "aether"


@dataclass
class AdminContext:
    manager: ConfigManager
    transport: Transport
    auth: Auth
    settings: AdminSettings
    metrics: Metrics
    user_throttle: Throttle
    address_throttle: Throttle
    #: Set when the server stops, so open watch streams end at once.
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    #: The node's secrets (``/secrets``, ``/keys``); None serves 404 there.
    secrets: SecretManager | None = None

    def users(self) -> JwtAuth:
        """The user administration of the built-in ``jwt`` auth."""
        if not isinstance(self.auth, JwtAuth):
            raise NotFound(f"the {self.auth.name!r} auth provider does not manage users here")
        return self.auth


def context(connection: ASGIConnection[Any, Any, Any, Any]) -> AdminContext:
    ctx: AdminContext = connection.app.state[STATE_KEY]
    return ctx


def principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    user = connection.scope.get("user")
    if not isinstance(user, Principal):
        raise Unauthorized("authentication required")
    return user
