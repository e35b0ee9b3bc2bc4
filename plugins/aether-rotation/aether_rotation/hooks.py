"""Rotation hooks: make a new value, put it into effect where the credential lives, and
check that it works — all before the new value is promoted to ``current``.

A hook never logs or raises with a value in its message.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import psycopg
from psycopg import sql


class RotationHook(ABC):
    name: ClassVar[str]

    @abstractmethod
    async def generate(self, current: Any) -> Any:
        """A new value (``current`` is the value in use, or None for a new secret)."""

    async def apply(self, new: Any, current: Any) -> None:  # noqa: B027 - optional
        """Put ``new`` into effect (change the password); ``current`` still works until
        this returns. Raise to stop the rotation: nothing is promoted."""

    async def test(self, new: Any) -> None:  # noqa: B027 - optional
        """Check that ``new`` works; raise to stop the rotation before promotion."""


class RandomToken(RotationHook):
    """A random URL-safe token; nothing outside Aether to change."""

    name = "random"

    def __init__(self, length: int = 32) -> None:
        self.length = length

    async def generate(self, current: Any) -> Any:
        return secrets.token_urlsafe(self.length)


class PostgresPassword(RotationHook):
    """Rotate the password of a Postgres role (AWS's single-user strategy).

    The password is hashed on the client (SCRAM-SHA-256, by libpq) and only the verifier
    is sent, so the plaintext never reaches the server's statement log.

    :param admin_dsn: a connection that may ``ALTER ROLE`` (a superuser, or the role's
        owner with CREATEROLE).
    :param test_dsn: connection parameters of the role itself, without the password;
        the new password is tried with them (default: ``admin_dsn`` as ``role``).
    """

    name = "postgres-password"

    def __init__(self, admin_dsn: str, role: str, *, test_dsn: str | None = None,
                 length: int = 32, connect_timeout: float = 5.0) -> None:
        self.admin_dsn = admin_dsn
        self.role = role
        self.test_dsn = test_dsn
        self.length = length
        self.connect_timeout = connect_timeout

    async def generate(self, current: Any) -> Any:
        return secrets.token_urlsafe(self.length)

    async def apply(self, new: Any, current: Any) -> None:
        async with await psycopg.AsyncConnection.connect(
            self.admin_dsn, autocommit=True, connect_timeout=int(self.connect_timeout) or 1,
        ) as conn:
            exists = await (await conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (self.role,))).fetchone()
            if exists is None:
                raise LookupError(f"Postgres role {self.role!r} does not exist")
            verifier = conn.pgconn.encrypt_password(
                str(new).encode(), self.role.encode(), b"scram-sha-256").decode()
            await conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(self.role), sql.Literal(verifier)))

    async def test(self, new: Any) -> None:
        dsn = psycopg.conninfo.make_conninfo(
            self.test_dsn or self.admin_dsn, user=self.role, password=str(new),
            connect_timeout=int(self.connect_timeout) or 1)
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            row = await (await conn.execute("SELECT current_user")).fetchone()
            if row is None or row[0] != self.role:
                raise PermissionError(f"logged in as {row[0] if row else None!r}, "
                                      f"not {self.role!r}")
