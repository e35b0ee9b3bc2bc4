"""``/login``, ``/token/refresh``, ``/logout``, ``/whoami``, the JWKS document."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import JSONBody
from msgspec import Meta

from aether_admin.bodies import LoginIn, TokenOut, WhoAmIOut
from aether_admin.context import AdminContext, context, principal
from aether_admin.problems import TooManyRequests
from aether_admin.security import requires
from aether_core.auth.jwt import JwtAuth
from aether_core.auth.signing import DEFAULT_PROPAGATION, MAX_PROPAGATION, SigningStatus
from aether_core.errors import NotFound, Unauthorized

Req = Request[Any, Any, Any]


class RotateKeyIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Seconds between introducing the new key (every node verifies it) and signing
    #: with it; default 5.
    propagation_seconds: Annotated[float, Meta(ge=0, le=MAX_PROPAGATION)] = (
        DEFAULT_PROPAGATION)


def _jwt(ctx: AdminContext) -> JwtAuth:
    if not isinstance(ctx.auth, JwtAuth):
        raise NotFound(f"the {ctx.auth.name!r} auth provider has no signing keys here")
    return ctx.auth


def _ttl(ctx: AdminContext) -> int:
    return ctx.auth.token_ttl if isinstance(ctx.auth, JwtAuth) else 0


def _throttled(ctx: AdminContext, user_key: str, address_key: str) -> None:
    waits = [w for w in (ctx.user_throttle.retry_after(user_key),
                         ctx.address_throttle.retry_after(address_key)) if w is not None]
    if waits:
        raise TooManyRequests(
            "too many failed log-ins; try again later", retry_after=max(waits)
        )


class AuthController(Controller):
    tags = ["auth"]

    @post("/login", opt={"exclude_from_auth": True}, status_code=200,
          summary="Exchange a username and password for a bearer token")
    async def login(self, request: Req, data: JSONBody[LoginIn]) -> TokenOut:
        ctx = context(request)
        request.scope["aether.subject"] = data.username  # type: ignore[typeddict-unknown-key]
        client = request.client.host if request.client else "unknown"
        user_key, address_key = f"user:{data.username}", f"addr:{client}"
        _throttled(ctx, user_key, address_key)
        try:
            who = await ctx.auth.authenticate(data.username, data.password)
        except Unauthorized:
            ctx.user_throttle.fail(user_key)
            ctx.address_throttle.fail(address_key)
            raise
        ctx.user_throttle.reset(user_key)
        token = await ctx.auth.issue_token(who)
        return TokenOut(access_token=token, expires_in=_ttl(ctx))

    @post("/token/refresh", status_code=200,
          summary="A fresh token for the caller; the presented one is revoked")
    async def refresh(self, request: Req) -> TokenOut:
        ctx = context(request)
        token = await ctx.auth.issue_token(principal(request))
        await ctx.auth.revoke_token(str(request.auth))
        return TokenOut(access_token=token, expires_in=_ttl(ctx))

    @post("/logout", status_code=204, summary="Revoke the presented token until it expires")
    async def logout(self, request: Req) -> None:
        await context(request).auth.revoke_token(str(request.auth))

    @get("/whoami", summary="The caller's name and roles")
    async def whoami(self, request: Req) -> WhoAmIOut:
        who = principal(request)
        return WhoAmIOut(username=who.name, roles=list(who.roles))

    @get("/.well-known/jwks.json", opt={"exclude_from_auth": True},
         summary="Public keys that verify tokens (empty for HMAC keys)")
    async def jwks(self, request: Req) -> Response[dict[str, Any]]:
        auth = context(request).auth
        keys: dict[str, Any] = auth.jwks() if isinstance(auth, JwtAuth) else {"keys": []}
        return Response(keys, media_type="application/jwk-set+json")

    @get("/auth/keys", guards=[requires("auth:keys", None)],
         summary="The JWT signing keys by key id and their state (never the keys)")
    async def signing_keys(self, request: Req) -> SigningStatus:
        return await _jwt(context(request)).signing_status()

    @post("/auth/keys/rotate", guards=[requires("auth:keys", None)], status_code=200,
          summary="Rotate the JWT signing key online (every node verifies the new key "
                  "before any signs with it; the old one verifies until its tokens expire)")
    async def rotate_signing_key(self, request: Req,
                                 data: JSONBody[RotateKeyIn | None] = None) -> SigningStatus:
        wanted = data or RotateKeyIn()
        auth = _jwt(context(request))
        if auth.signing is None:
            raise NotFound("this node keeps no signing keys in its store (signing-key "
                           "rotation needs a [secrets] key provider)")
        return await auth.rotate_signing_key(
            propagation=wanted.propagation_seconds, author=principal(request).name)
