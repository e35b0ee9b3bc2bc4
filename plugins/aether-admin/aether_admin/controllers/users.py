"""``/users`` and ``/roles``: the built-in jwt auth's users (``users:admin``), and a
user's own password."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import JSONBody, PathParameter

from aether_admin.bodies import (
    PasswordIn,
    RoleListOut,
    RoleOut,
    RolesIn,
    RuleOut,
    UserCreateIn,
    UserListOut,
    UserOut,
)
from aether_admin.context import context, principal
from aether_admin.security import allowed, authorize, requires
from aether_core.auth.users import User
from aether_core.errors import Forbidden, Unauthorized

Req = Request[Any, Any, Any]
UserParam = Annotated[str, PathParameter(max_length=64)]


def user_out(user: User) -> UserOut:
    return UserOut(username=user.name, roles=list(user.roles), version=user.version)


class UserController(Controller):
    path = "/users"
    tags = ["users"]

    @post("/", summary="Create a user")
    async def create_user(self, request: Req, data: JSONBody[UserCreateIn]) -> Response[UserOut]:
        authorize(request, "users:admin", data.username)
        user = await context(request).users().add_user(
            data.username, data.password, list(data.roles), author=principal(request).name
        )
        return Response(user_out(user), status_code=201,
                        headers={"Location": f"/users/{user.name}"})

    @get("/", guards=[requires("users:admin", None)], summary="Every user and their roles")
    async def list_users(self, request: Req) -> UserListOut:
        return UserListOut(items=[user_out(u) for u in context(request).users().list_users()])

    @get("/{username:str}", summary="One user (yourself, or anyone with users:admin)")
    async def get_user(self, request: Req, username: UserParam) -> UserOut:
        if principal(request).name != username:
            authorize(request, "users:admin", username)
        return user_out(context(request).users().get_user(username))

    @put("/{username:str}/password", status_code=204,
         summary="Set a password (your own with current_password, or anyone's with "
         "users:admin)")
    async def set_password(
        self, request: Req, username: UserParam, data: JSONBody[PasswordIn]
    ) -> None:
        ctx = context(request)
        who = principal(request)
        if who.name == username and not allowed(request, "users:admin", username):
            if data.current_password is None:
                raise Forbidden("changing your own password needs current_password")
            try:
                await ctx.auth.authenticate(username, data.current_password)
            except Unauthorized:
                raise Forbidden("current_password is not right") from None
        else:
            authorize(request, "users:admin", username)
        await ctx.users().set_password(username, data.password, author=who.name)

    @put("/{username:str}/roles", guards=[requires("users:admin", "username")],
         summary="Replace a user's roles")
    async def set_roles(
        self, request: Req, username: UserParam, data: JSONBody[RolesIn]
    ) -> UserOut:
        user = await context(request).users().set_roles(
            username, list(data.roles), author=principal(request).name
        )
        return user_out(user)

    @delete("/{username:str}", guards=[requires("users:admin", "username")],
            summary="Delete a user; their tokens stop working")
    async def delete_user(self, request: Req, username: UserParam) -> None:
        await context(request).users().delete_user(username, author=principal(request).name)


class RoleController(Controller):
    path = "/roles"
    tags = ["users"]

    @get("/", summary="The roles in force and their rules")
    async def list_roles(self, request: Req) -> RoleListOut:
        table = context(request).users().roles
        return RoleListOut(items=[
            RoleOut(name=name, rules=[
                RuleOut(actions=list(r.actions), resources=list(r.resources), effect=r.effect)
                for r in table.roles[name].rules
            ])
            for name in table.names()
        ])
