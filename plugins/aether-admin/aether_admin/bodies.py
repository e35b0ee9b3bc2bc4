"""Request and response bodies (msgspec): unknown fields are refused, sizes are bounded."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

Name = Annotated[str, Meta(min_length=1, max_length=256)]
Comment = Annotated[str, Meta(max_length=1024)]
Password = Annotated[str, Meta(min_length=1, max_length=1024)]
Username = Annotated[str, Meta(min_length=1, max_length=64)]
RoleName = Annotated[str, Meta(min_length=1, max_length=64)]
Version = Annotated[int, Meta(ge=1)]


class _In(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


# -- auth -------------------------------------------------------------------------


class LoginIn(_In):
    username: Username
    password: Password


class TokenOut(msgspec.Struct, kw_only=True):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int


class WhoAmIOut(msgspec.Struct, kw_only=True):
    username: str
    roles: list[str]


# -- configs ------------------------------------------------------------------------


class ConfigCreateIn(_In):
    name: Name
    value: Any
    schema: Name | None = None
    comment: Comment = ""


class ConfigUpdateIn(_In):
    value: Any
    comment: Comment = ""


class RollbackIn(_In):
    to_version: Version
    comment: Comment = ""


class ConfigOut(msgspec.Struct, kw_only=True):
    name: str
    version: int
    revision: int
    value: Any
    author: str
    timestamp: float
    comment: str = ""
    schema: str | None = None


class ConfigPageOut(msgspec.Struct, kw_only=True):
    items: list[ConfigOut]
    next_cursor: str | None = None


class VersionOut(msgspec.Struct, kw_only=True):
    version: int
    revision: int
    author: str
    timestamp: float
    comment: str = ""
    deleted: bool = False


class VersionsOut(msgspec.Struct, kw_only=True):
    name: str
    versions: list[VersionOut]


class DeletedOut(msgspec.Struct, kw_only=True):
    name: str
    version: int
    revision: int
    deleted: bool = True


class DiffOut(msgspec.Struct, kw_only=True):
    name: str
    from_version: int = msgspec.field(name="from")
    to_version: int = msgspec.field(name="to")
    patch: list[dict[str, Any]]
    #: Secret fields of a typed config by JSON pointer: ``changed``/``unchanged`` (the
    #: patch cannot show them: both sides hold the placeholder).
    secret_fields: dict[str, Literal["changed", "unchanged"]] | None = None


# -- schemas ------------------------------------------------------------------------


class SchemaPutIn(_In):
    schema: dict[str, Any]
    bind: list[Annotated[str, Meta(max_length=256)]] | None = None
    force: bool = False
    comment: Comment = ""


class SchemaCheckIn(_In):
    schema: dict[str, Any]
    bind: list[Annotated[str, Meta(max_length=256)]] | None = None


class SchemaOut(msgspec.Struct, kw_only=True):
    name: str
    version: int
    revision: int
    schema: dict[str, Any]
    bind: list[str]
    author: str
    timestamp: float


class SchemaListOut(msgspec.Struct, kw_only=True):
    items: list[SchemaOut]


class BrokenConfig(msgspec.Struct, kw_only=True):
    name: str
    version: int
    errors: list[dict[str, str]]


class SchemaCheckOut(msgspec.Struct, kw_only=True):
    name: str
    ok: bool
    broken: list[BrokenConfig]


# -- users --------------------------------------------------------------------------


class UserCreateIn(_In):
    username: Username
    password: Password
    roles: list[RoleName] = msgspec.field(default_factory=lambda: ["viewer"])


class PasswordIn(_In):
    password: Password
    #: Required when users change their own password without ``users:admin``.
    current_password: Password | None = None


class RolesIn(_In):
    roles: list[RoleName]


class UserOut(msgspec.Struct, kw_only=True):
    username: str
    roles: list[str]
    version: int


class UserListOut(msgspec.Struct, kw_only=True):
    items: list[UserOut]


class RuleOut(msgspec.Struct, kw_only=True):
    actions: list[str]
    resources: list[str]
    effect: str


class RoleOut(msgspec.Struct, kw_only=True):
    name: str
    rules: list[RuleOut]


class RoleListOut(msgspec.Struct, kw_only=True):
    items: list[RoleOut]


# -- health ---------------------------------------------------------------------------


class HealthOut(msgspec.Struct, kw_only=True):
    status: str


class ReadyOut(msgspec.Struct, kw_only=True):
    status: str
    revision: int
    leader: str | None
