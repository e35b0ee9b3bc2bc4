"""The state machine: what each command does to storage.

``apply`` is deterministic — its outcome depends only on the command and the stored
state — and idempotent by log index (storage skips an index it has applied). It reads
no clock and draws no random number: commands carry their timestamps and authors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aether_core.commands import (
    Command,
    DeleteConfig,
    DeleteUser,
    Noop,
    PutConfig,
    PutSchema,
    PutUser,
    RevokeToken,
    RollbackConfig,
)
from aether_core.records import CommitResult, Record, Rejection, Write
from aether_core.rollout import RolloutHandlers
from aether_core.secrets.apply import SecretHandlers
from aether_core.storage.base import Storage

CONFIG = "config"
SCHEMA = "schema"
USER = "user"
REVOKED_TOKEN = "revoked-token"

#: How often an unconditional write is retried when another node of a shared store
#: committed the same document between our read and our commit.
_SHARED_RETRIES = 16

Handler = Callable[[Any, int | None], Awaitable[CommitResult]]


class StateMachine:
    """Applies committed commands to a :class:`Storage`."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._handlers: dict[type[Any], Handler] = {
            PutConfig: self._put_config,
            DeleteConfig: self._delete_config,
            RollbackConfig: self._rollback_config,
            PutSchema: self._put_schema,
            PutUser: self._put_user,
            DeleteUser: self._delete_user,
            RevokeToken: self._revoke_token,
            Noop: self._noop,
        }
        self._handlers.update(SecretHandlers(self).table())
        self._handlers.update(RolloutHandlers(self).table())

    async def apply(self, command: Command, log_index: int | None = None) -> CommitResult:
        """Apply one command; the same command on the same state gives the same result."""
        return await self._handlers[type(command)](command, log_index)

    # -- helpers ---------------------------------------------------------------------

    async def _write_next(
        self,
        kind: str,
        name: str,
        expected: int | None,
        log_index: int | None,
        build: Callable[[Record | None], Write | Rejection],
    ) -> CommitResult:
        """Read the head, build the next write from it and commit it.

        With an explicit ``expected`` version, a mismatch is a rejection. Without one the
        write goes on top of whatever head it finds; on a shared store another node may
        commit in between, and then we read again.
        """
        for _ in range(_SHARED_RETRIES):
            head = await self.storage.get(kind, name)
            current = head.version if head else 0
            if expected is not None and expected != current:
                return await self._reject(
                    log_index,
                    Rejection(
                        code="conflict",
                        detail=f"{kind} {name!r} is at version {current}, "
                        f"the write expected {expected}",
                        kind=kind,
                        name=name,
                        expected_version=expected,
                        current_version=current,
                    ),
                )
            built = build(head)
            if isinstance(built, Rejection):
                return await self._reject(log_index, built)
            result = await self.storage.commit([built], log_index)
            retry = (
                expected is None
                and result.rejection is not None
                and result.rejection.code == "conflict"
                and self.storage.shared
            )
            if not retry:
                return result
        return result

    async def _reject(self, log_index: int | None, rejection: Rejection) -> CommitResult:
        # A refused command still consumes its log index, so a replay skips it too.
        if log_index is not None:
            replay = await self.storage.commit([], log_index)
            if replay.replayed:
                return replay
        return CommitResult(rejection=rejection)

    # -- handlers --------------------------------------------------------------------

    async def _noop(self, command: Noop, log_index: int | None) -> CommitResult:
        return await self.storage.commit([], log_index) if log_index is not None else CommitResult()

    async def _put_config(self, command: PutConfig, log_index: int | None) -> CommitResult:
        def build(head: Record | None) -> Write | Rejection:
            meta: dict[str, Any] = {}
            schema = command.schema or (head.meta.get("schema") if head else None)
            if schema:
                meta["schema"] = schema
            if command.sealed is not None:
                # Secret fields are bound to the version they were sealed for.
                version = (head.version if head else 0) + 1
                if command.sealed.get("version") != version:
                    return Rejection(
                        code="conflict", kind=CONFIG, name=command.name,
                        detail=f"config {command.name!r}: secret fields were sealed for "
                        f"version {command.sealed.get('version')}, the write would be "
                        f"version {version}",
                        expected_version=version - 1, current_version=version - 1)
                meta["sealed"] = command.sealed
            return Write(
                kind=CONFIG,
                name=command.name,
                expected_version=head.version if head else 0,
                value=command.value,
                author=command.author,
                comment=command.comment,
                timestamp=command.timestamp,
                meta=meta,
            )

        return await self._write_next(
            CONFIG, command.name, command.expected_version, log_index, build
        )

    async def _tombstone(
        self, kind: str, command: DeleteConfig | DeleteUser, log_index: int | None
    ) -> CommitResult:
        """Write a deleted version of a live document; history stays."""

        def build(head: Record | None) -> Write | Rejection:
            if head is None or head.deleted:
                return Rejection(
                    code="not-found", detail=f"{kind} {command.name!r} does not exist",
                    kind=kind, name=command.name,
                    current_version=head.version if head else 0,
                )
            return Write(
                kind=kind,
                name=command.name,
                expected_version=head.version,
                deleted=True,
                author=command.author,
                comment=command.comment,
                timestamp=command.timestamp,
                meta=head.meta,
            )

        return await self._write_next(kind, command.name, command.expected_version, log_index,
                                      build)

    async def _delete_config(self, command: DeleteConfig, log_index: int | None) -> CommitResult:
        return await self._tombstone(CONFIG, command, log_index)

    async def _rollback_config(
        self, command: RollbackConfig, log_index: int | None
    ) -> CommitResult:
        target = await self.storage.get(CONFIG, command.name, command.to_version)

        def build(head: Record | None) -> Write | Rejection:
            if target is None or head is None or target.deleted:
                return Rejection(
                    code="not-found",
                    detail=f"config {command.name!r} has no version {command.to_version} "
                    "to roll back to",
                    kind=CONFIG, name=command.name,
                    current_version=head.version if head else 0,
                )
            return Write(
                kind=CONFIG,
                name=command.name,
                expected_version=head.version,
                value=target.value,
                author=command.author,
                comment=command.comment or f"rollback to version {command.to_version}",
                timestamp=command.timestamp,
                meta={**target.meta, "rollback_of": command.to_version},
            )

        return await self._write_next(
            CONFIG, command.name, command.expected_version, log_index, build
        )

    async def _put_schema(self, command: PutSchema, log_index: int | None) -> CommitResult:
        def build(head: Record | None) -> Write:
            return Write(
                kind=SCHEMA,
                name=command.name,
                expected_version=head.version if head else 0,
                value={"schema": command.schema, "bind": list(command.bind)},
                author=command.author,
                comment=command.comment,
                timestamp=command.timestamp,
            )

        return await self._write_next(
            SCHEMA, command.name, command.expected_version, log_index, build
        )

    async def _put_user(self, command: PutUser, log_index: int | None) -> CommitResult:
        def build(head: Record | None) -> Write:
            old = head.value if head is not None and not head.deleted else {}
            value = {
                "uid": old.get("uid", command.uid),
                "password_hash": command.password_hash or old.get("password_hash", ""),
                "roles": list(command.roles if command.roles is not None
                              else old.get("roles", [])),
            }
            return Write(
                kind=USER,
                name=command.name,
                expected_version=head.version if head else 0,
                value=value,
                author=command.author,
                comment=command.comment,
                timestamp=command.timestamp,
            )

        return await self._write_next(
            USER, command.name, command.expected_version, log_index, build
        )

    async def _delete_user(self, command: DeleteUser, log_index: int | None) -> CommitResult:
        return await self._tombstone(USER, command, log_index)

    async def _revoke_token(self, command: RevokeToken, log_index: int | None) -> CommitResult:
        def build(head: Record | None) -> Write:
            return Write(
                kind=REVOKED_TOKEN,
                name=command.jti,
                expected_version=head.version if head else 0,
                value={"expires_at": command.expires_at},
                author=command.author,
                timestamp=command.timestamp,
            )

        return await self._write_next(REVOKED_TOKEN, command.jti, None, log_index, build)
