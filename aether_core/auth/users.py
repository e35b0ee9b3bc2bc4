"""Users of the built-in ``jwt`` auth: argon2id password hashes, kept in Aether's own store.

Users and revoked token ids are records (kinds ``user`` and ``revoked-token``) written
through commands, so a replicated deployment replicates them like configs, and events
announce them by name only (:data:`aether_core.records.PUBLIC_KINDS`). Each node keeps
a cache of both, loaded at start and kept current by following the change feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from typing import TYPE_CHECKING

import msgspec
import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from aether_core.commands import DeleteUser, PutUser, RevokeToken
from aether_core.errors import BadRequest, NotFound
from aether_core.records import Record
from aether_core.statemachine import REVOKED_TOKEN, USER

if TYPE_CHECKING:
    from aether_core.manager import ConfigManager

log = structlog.get_logger("aether.auth")

_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8
#: argon2 hashes any length, but hashing megabytes per login is a denial of service.
MAX_PASSWORD = 1024


class User(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    uid: str
    roles: tuple[str, ...]
    password_hash: str
    version: int

    @classmethod
    def from_record(cls, record: Record) -> User:
        value = record.value or {}
        return cls(
            name=record.name,
            uid=str(value.get("uid", "")),
            roles=tuple(value.get("roles", ())),
            password_hash=str(value.get("password_hash", "")),
            version=record.version,
        )


def check_username(name: str) -> None:
    if not isinstance(name, str) or not _USERNAME.match(name):
        raise BadRequest(
            f"username {name!r} is invalid: 1 to 64 letters, digits, '_', '.', '@' or '-'"
        )


def check_password(password: str) -> None:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BadRequest(
            f"password must be between {MIN_PASSWORD} and {MAX_PASSWORD} characters"
        )


class Passwords:
    """argon2id hashing (argon2-cffi's defaults), off the event loop."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Check ``password``; with no hash (unknown user) a dummy hash is checked, so the
        answer takes as long whether or not the user exists."""
        if password_hash is None:
            if self._dummy is None:
                self._dummy = await self.hash(uuid.uuid4().hex)
            password_hash = self._dummy
            password = "\x00" + password  # never the dummy's own password
        try:
            return await asyncio.to_thread(self.hasher.verify, password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


class UserDirectory:
    """The users and revoked token ids, cached from storage and written through commands."""

    def __init__(self, manager: ConfigManager) -> None:
        self.manager = manager
        self.users: dict[str, User] = {}
        self.revoked: dict[str, float] = {}
        self._follower: asyncio.Task[None] | None = None

    async def _all(self, kind: str) -> list[Record]:
        out: list[Record] = []
        after: str | None = None
        while batch := await self.manager.storage.heads(kind, after=after, limit=1000):
            out.extend(batch)
            after = batch[-1].name
        return out

    async def load(self) -> None:
        """Read every user and revoked token, then follow changes made by any node."""
        revision = await self.manager.revision()
        now = self.manager.now()
        self.users = {r.name: User.from_record(r) for r in await self._all(USER)}
        self.revoked = {
            r.name: float(r.value.get("expires_at", 0))
            for r in await self._all(REVOKED_TOKEN)
            if float(r.value.get("expires_at", 0)) > now
        }
        subscription = await self.manager.watch(
            since=revision, kinds=frozenset({USER, REVOKED_TOKEN})
        )
        self._follower = asyncio.create_task(self._follow(subscription), name="aether-auth-follow")

    async def _follow(self, subscription: object) -> None:
        while True:
            try:
                async for event in subscription:  # type: ignore[attr-defined]
                    await self._refresh(event.kind, event.name)
                return
            except Exception as exc:  # the feed dropped us; re-read everything
                log.warning("auth cache lost the change feed; reloading", error=type(exc).__name__)
                await asyncio.sleep(0.5)
                revision = await self.manager.revision()
                self.users = {r.name: User.from_record(r) for r in await self._all(USER)}
                subscription = await self.manager.watch(
                    since=revision, kinds=frozenset({USER, REVOKED_TOKEN})
                )

    async def _refresh(self, kind: str, name: str) -> None:
        record = await self.manager.storage.get(kind, name)
        if kind == USER:
            self._cache_user(record, name)
        elif record is not None and not record.deleted:
            self.revoked[name] = float(record.value.get("expires_at", 0))

    def _cache_user(self, record: Record | None, name: str) -> None:
        if record is None or record.deleted:
            self.users.pop(name, None)
        else:
            self.users[name] = User.from_record(record)

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None

    # -- reads ---------------------------------------------------------------------

    def get(self, name: str) -> User | None:
        return self.users.get(name)

    def all(self) -> list[User]:
        return [self.users[name] for name in sorted(self.users)]

    def is_revoked(self, jti: str) -> bool:
        return jti in self.revoked

    # -- writes (each one command) -------------------------------------------------

    async def put(
        self,
        name: str,
        *,
        password_hash: str | None,
        roles: list[str] | None,
        expected_version: int | None,
        author: str,
    ) -> User:
        result = await self.manager.propose(
            PutUser(
                name=name, uid=uuid.uuid4().hex, password_hash=password_hash, roles=roles,
                expected_version=expected_version, author=author,
                timestamp=self.manager.now(),
            )
        )
        record = result.records[0]
        self._cache_user(record, name)
        return User.from_record(record)

    async def delete(self, name: str, *, author: str) -> None:
        if name not in self.users:
            raise NotFound(f"user {name!r} does not exist")
        result = await self.manager.propose(
            DeleteUser(name=name, author=author, timestamp=self.manager.now())
        )
        self._cache_user(result.records[0], name)

    async def revoke(self, jti: str, expires_at: float, *, author: str) -> None:
        await self.manager.propose(
            RevokeToken(jti=jti, expires_at=expires_at, author=author,
                        timestamp=self.manager.now())
        )
        self.revoked[jti] = expires_at
        now = self.manager.now()
        if len(self.revoked) > 10_000:
            self.revoked = {j: exp for j, exp in self.revoked.items() if exp > now}
