"""Who is calling (bearer tokens) and may they (guards that ask the auth provider)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from aether_admin.context import context, principal
from aether_admin.edge import unpack_name
from aether_core.auth.jwt import JwtAuth, UnknownKeyId
from aether_core.errors import Forbidden, Unauthorized

Connection = ASGIConnection[Any, Any, Any, Any]
Guard = Callable[[Connection, BaseRouteHandler], Awaitable[None]]

#: Routes that need no token: log-in, liveness, readiness, metrics, keys, docs.
PUBLIC = ["^/login$", "^/health$", "^/ready$", "^/metrics$", "^/.well-known/", "^/docs"]


class BearerAuth(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: Connection) -> AuthenticationResult:
        header = connection.headers.get("authorization")
        if not header:
            raise Unauthorized("this endpoint needs 'Authorization: Bearer <token>' "
                               "(get one from POST /login)")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        auth = context(connection).auth
        if isinstance(auth, JwtAuth):
            try:
                who = auth.verify_token_now(token)  # cached: no coroutine, no crypto
            except UnknownKeyId:
                # A key id another node may have just introduced: re-read the keys once.
                who = await auth.verify_token(token)
        else:
            who = await auth.verify_token(token)
        return AuthenticationResult(user=who, auth=token)


def name_param(connection: Connection, param: str = "name") -> str:
    raw = connection.path_params.get(param, "")
    return unpack_name(raw) if isinstance(raw, str) else ""


def authorize(connection: Connection, action: str, resource: str) -> None:
    """Raise :class:`Forbidden` unless the caller may ``action`` on ``resource``; note the
    decision in the scope for the audit log."""
    who = principal(connection)
    decision = context(connection).auth.authorize(who, action, resource)
    scope: Any = connection.scope
    scope["aether.action"] = action
    scope["aether.resource"] = resource
    scope["aether.reason"] = decision.reason
    if not decision.allowed:
        target = f" on {resource!r}" if resource else ""
        raise Forbidden(f"{who.name!r} may not {action}{target}", action=action)


def requires(action: str, param: str | None = "name") -> Guard:
    """A guard: the caller may do ``action`` on the resource in path parameter ``param``
    (no resource when ``param`` is None)."""

    # async, though it awaits nothing: Litestar runs a sync guard in a thread pool on
    # every request (13 % of a GET's time in a py-spy profile, bench/README.md).
    async def guard(connection: Connection, _: BaseRouteHandler) -> None:
        authorize(connection, action, name_param(connection, param) if param else "")

    guard.__name__ = f"requires_{action.replace(':', '_')}"
    return guard


def allowed(connection: Connection, action: str, resource: str) -> bool:
    return context(connection).auth.authorize(principal(connection), action, resource).allowed
