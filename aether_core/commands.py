"""Commands: every mutation, as data.

A command carries everything needed to apply it — author, timestamp, ids, ciphertext —
so applying it reads no clock, draws no random number and does no I/O beyond storage.
That is what lets a Raft log replay it on every node with the same result. Commands
are a msgspec tagged union: ``encode``/``decode`` give the bytes a log stores.
"""

from __future__ import annotations

from typing import Any

import msgspec


class _Command(msgspec.Struct, frozen=True, kw_only=True, tag_field="op"):
    author: str = ""
    comment: str = ""
    timestamp: float = 0.0


class PutConfig(_Command, frozen=True, tag="put_config"):
    """Write the next version of a config. ``expected_version`` 0 means create."""

    name: str
    value: Any
    expected_version: int | None = None
    schema: str | None = None


class DeleteConfig(_Command, frozen=True, tag="delete_config"):
    """Write a tombstone version; the history stays."""

    name: str
    expected_version: int | None = None


class RollbackConfig(_Command, frozen=True, tag="rollback_config"):
    """Write a new version whose value equals version ``to_version``."""

    name: str
    to_version: int
    expected_version: int | None = None


class PutSchema(_Command, frozen=True, tag="put_schema"):
    """Write the next version of a schema and the name prefixes it binds to."""

    name: str
    schema: dict[str, Any]
    bind: list[str] = msgspec.field(default_factory=list)
    expected_version: int | None = None


class PutUser(_Command, frozen=True, tag="put_user"):
    """Create or update a user of the built-in ``jwt`` auth.

    ``password_hash`` is an argon2id hash computed before the command is proposed
    (hashing draws a random salt, which ``apply`` may not do); ``None`` keeps the stored
    one, as ``roles=None`` keeps the stored roles. ``uid`` is fixed at creation: tokens
    carry it, so a deleted and re-created user does not inherit old tokens.
    """

    name: str
    uid: str
    password_hash: str | None = None
    roles: list[str] | None = None
    expected_version: int | None = None


class DeleteUser(_Command, frozen=True, tag="delete_user"):
    """Write a tombstone for a user; their tokens stop working."""

    name: str
    expected_version: int | None = None


class RevokeToken(_Command, frozen=True, tag="revoke_token"):
    """Refuse the token with id ``jti`` until ``expires_at`` (when it would expire anyway)."""

    jti: str
    expires_at: float


class Noop(_Command, frozen=True, tag="noop"):
    """Changes nothing; consensus transports use it to commit an entry of a new term."""


Command = (
    PutConfig
    | DeleteConfig
    | RollbackConfig
    | PutSchema
    | PutUser
    | DeleteUser
    | RevokeToken
    | Noop
)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Command)


def encode(command: Command) -> bytes:
    return _encoder.encode(command)


def decode(data: bytes) -> Command:
    command: Command = _decoder.decode(data)
    return command
