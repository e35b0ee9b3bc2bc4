"""The state machine's handlers for secret and key-rotation commands.

Each handler reads the head of one document, runs a pure transition from
:mod:`aether_core.secrets.sealed` and commits the next version with the state
machine's compare-and-set helper; a refused transition is a deterministic rejection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from aether_core.commands import (
    DeleteSecret,
    FinishKeyRotation,
    PromoteSecret,
    PutSecret,
    RecordKeyRotation,
    RewrapConfigFields,
    RewrapSecret,
    RollbackSecret,
    RotateKey,
    StageSecret,
)
from aether_core.records import CommitResult, Record, Rejection, Write
from aether_core.secrets import sealed
from aether_core.secrets.sealed import (
    KEYRING,
    KEYRING_NAME,
    SECRET,
    KeyringState,
    KeyRotation,
    Refused,
    SecretState,
)

if TYPE_CHECKING:
    from aether_core.statemachine import Handler, StateMachine


def live_state(head: Record | None) -> SecretState:
    """The state in ``head``; an empty one (that keeps counting versions) if it is
    missing or deleted, so a re-created secret never reuses a version number."""
    if head is None:
        return SecretState()
    if head.deleted:
        return SecretState(next_version=int(head.meta.get("next_version", 1)))
    return sealed.decode_state(head.value)


def _meta(state: SecretState) -> dict[str, Any]:
    # Labels and key versions are not secret; keeping them in meta lets listings and
    # key rotation read them without decoding the value.
    return {
        "labels": {label: getattr(state, label) for label in sealed.LABELS
                   if getattr(state, label) is not None},
        "key_versions": sorted({v.key_version for v in state.versions}),
        "next_version": state.next_version,
    }


def _rejection(refused: Refused, kind: str, name: str, head: Record | None) -> Rejection:
    code: Literal["conflict", "invalid"] = (
        "conflict" if refused.code == "conflict" else "invalid")
    return Rejection(code=code, detail=refused.detail, kind=kind, name=name,
                     current_version=head.version if head else 0,
                     expected_version=head.version if head else 0)


class SecretHandlers:
    def __init__(self, machine: StateMachine) -> None:
        self.machine = machine

    def table(self) -> dict[type[Any], Handler]:
        return {
            PutSecret: self.put_secret,
            StageSecret: self.stage_secret,
            PromoteSecret: self.promote_secret,
            RollbackSecret: self.rollback_secret,
            DeleteSecret: self.delete_secret,
            RewrapSecret: self.rewrap_secret,
            RewrapConfigFields: self.rewrap_config_fields,
            RotateKey: self.rotate_key,
            RecordKeyRotation: self.record_key_rotation,
            FinishKeyRotation: self.finish_key_rotation,
        }

    async def _secret(
        self, command: Any, expected: int | None, log_index: int | None,
        transition: Callable[[SecretState], SecretState], *, must_exist: bool = True,
    ) -> CommitResult:
        def build(head: Record | None) -> Write | Rejection:
            if must_exist and (head is None or head.deleted):
                return Rejection(code="not-found", kind=SECRET, name=command.name,
                                 detail=f"secret {command.name!r} does not exist",
                                 current_version=head.version if head else 0)
            try:
                state = transition(live_state(head))
            except Refused as refused:
                return _rejection(refused, SECRET, command.name, head)
            return Write(
                kind=SECRET, name=command.name,
                expected_version=head.version if head else 0,
                value=sealed.encode_state(state), author=command.author,
                comment=command.comment, timestamp=command.timestamp, meta=_meta(state),
            )

        return await self.machine._write_next(SECRET, command.name, expected, log_index, build)

    async def put_secret(self, command: PutSecret, log_index: int | None) -> CommitResult:
        return await self._secret(
            command, command.expected_version, log_index,
            lambda s: sealed.put(s, command.name, command.sealed, command.timestamp,
                                 command.overlap),
            must_exist=False,
        )

    async def stage_secret(self, command: StageSecret, log_index: int | None) -> CommitResult:
        return await self._secret(
            command, command.expected_version, log_index,
            lambda s: sealed.stage(s, command.name, command.sealed, command.timestamp,
                                   command.window),
            must_exist=False,
        )

    async def promote_secret(self, command: PromoteSecret, log_index: int | None
                             ) -> CommitResult:
        return await self._secret(
            command, command.expected_version, log_index,
            lambda s: sealed.promote(s, command.name, command.version, command.timestamp,
                                     command.overlap),
        )

    async def rollback_secret(self, command: RollbackSecret, log_index: int | None
                              ) -> CommitResult:
        return await self._secret(
            command, command.expected_version, log_index,
            lambda s: sealed.rollback(s, command.name, command.timestamp, command.overlap),
        )

    async def rewrap_secret(self, command: RewrapSecret, log_index: int | None) -> CommitResult:
        return await self._secret(
            command, command.expected_version, log_index,
            lambda s: sealed.rewrap(s, command.name, command.keys),
        )

    async def rewrap_config_fields(self, command: RewrapConfigFields, log_index: int | None
                                   ) -> CommitResult:
        kind = "config"

        def build(head: Record | None) -> Write | Rejection:
            sealed = head.meta.get("sealed") if head is not None and not head.deleted else None
            if head is None or sealed is None:
                return Rejection(code="not-found", kind=kind, name=command.name,
                                 detail=f"config {command.name!r} has no sealed fields",
                                 current_version=head.version if head else 0)
            if sealed.get("key_version") != command.from_key_version:
                return Rejection(
                    code="conflict", kind=kind, name=command.name,
                    detail=f"config {command.name!r}: fields are wrapped under key version "
                    f"{sealed.get('key_version')!r}, not {command.from_key_version!r}",
                    current_version=head.version, expected_version=command.expected_version)
            return Write(
                kind=kind, name=command.name, expected_version=head.version,
                value=head.value, author=command.author, comment=command.comment,
                timestamp=command.timestamp,
                meta={**head.meta, "sealed": {
                    **sealed, "key_provider": command.key_provider,
                    "key_version": command.key_version, "wrapped_key": command.wrapped_key}},
            )

        return await self.machine._write_next(kind, command.name, command.expected_version,
                                              log_index, build)

    async def delete_secret(self, command: DeleteSecret, log_index: int | None) -> CommitResult:
        def build(head: Record | None) -> Write | Rejection:
            if head is None or head.deleted:
                return Rejection(code="not-found", kind=SECRET, name=command.name,
                                 detail=f"secret {command.name!r} does not exist",
                                 current_version=head.version if head else 0)
            return Write(
                kind=SECRET, name=command.name, expected_version=head.version, deleted=True,
                author=command.author, comment=command.comment, timestamp=command.timestamp,
                meta={"next_version": live_state(head).next_version},
            )

        return await self.machine._write_next(
            SECRET, command.name, command.expected_version, log_index, build
        )

    # -- key rotation ----------------------------------------------------------------

    async def _keyring(
        self, command: Any, log_index: int | None,
        transition: Callable[[KeyringState], KeyringState],
    ) -> CommitResult:
        def build(head: Record | None) -> Write | Rejection:
            state = (msgspec.convert(head.value, KeyringState) if head is not None
                     else KeyringState())
            try:
                state = transition(state)
            except Refused as refused:
                return _rejection(refused, KEYRING, KEYRING_NAME, head)
            return Write(
                kind=KEYRING, name=KEYRING_NAME,
                expected_version=head.version if head else 0,
                value=msgspec.to_builtins(state), author=command.author,
                comment=command.comment, timestamp=command.timestamp,
            )

        return await self.machine._write_next(KEYRING, KEYRING_NAME, None, log_index, build)

    @staticmethod
    def _running(state: KeyringState, rotation_id: str) -> KeyRotation:
        if state.rotation is None or state.rotation.id != rotation_id:
            running = state.rotation.id if state.rotation else "none"
            raise Refused(f"key rotation {rotation_id!r} is not running (running: {running})")
        return state.rotation

    async def rotate_key(self, command: RotateKey, log_index: int | None) -> CommitResult:
        def start(state: KeyringState) -> KeyringState:
            if state.rotation is not None:
                raise Refused(
                    f"key rotation {state.rotation.id!r} to key version "
                    f"{state.rotation.target!r} is still running; resume it first"
                )
            state.rotation = KeyRotation(
                id=command.rotation_id, key_provider=command.key_provider,
                target=command.target_version, started=command.timestamp,
            )
            return state

        return await self._keyring(command, log_index, start)

    async def record_key_rotation(self, command: RecordKeyRotation, log_index: int | None
                                  ) -> CommitResult:
        def progress(state: KeyringState) -> KeyringState:
            rotation = self._running(state, command.rotation_id)
            rotation.cursor = max(rotation.cursor, command.cursor)
            rotation.rewrapped = max(rotation.rewrapped, command.rewrapped)
            return state

        return await self._keyring(command, log_index, progress)

    async def finish_key_rotation(self, command: FinishKeyRotation, log_index: int | None
                                  ) -> CommitResult:
        def finish(state: KeyringState) -> KeyringState:
            rotation = self._running(state, command.rotation_id)
            rotation.finished = command.timestamp
            rotation.retired = list(command.retired)
            state.last, state.rotation = rotation, None
            return state

        return await self._keyring(command, log_index, finish)
