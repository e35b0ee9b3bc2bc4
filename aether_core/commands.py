"""Commands: every mutation, as data.

A command carries everything needed to apply it — author, timestamp, ids, ciphertext —
so applying it reads no clock, draws no random number and does no I/O beyond storage.
That is what lets a Raft log replay it on every node with the same result. Commands
are a msgspec tagged union: ``encode``/``decode`` give the bytes a log stores.
"""

from __future__ import annotations

from typing import Any

import msgspec

from aether_core.secrets.sealed import RewrappedKey, SealedVersion


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
    #: The secret fields of a typed config, sealed for the version this write creates
    #: (:class:`~aether_core.secrets.fields.SealedFields` as a dict); ``value`` holds
    #: placeholders in their place. A write that gets another version is refused.
    sealed: dict[str, Any] | None = None


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


class PutSecret(_Command, frozen=True, tag="put_secret"):
    """A new secret version that is ``current`` at once; the old current becomes
    ``previous`` for ``overlap`` seconds. ``sealed`` holds ciphertext and a wrapped data
    key only: encryption happens before proposing, so no log ever holds a plaintext."""

    name: str
    sealed: SealedVersion
    expected_version: int | None = None
    overlap: float = 0.0


class StageSecret(_Command, frozen=True, tag="stage_secret"):
    """A new ``pending`` secret version; ``window`` seconds to promote it (None: no limit)."""

    name: str
    sealed: SealedVersion
    expected_version: int | None = None
    window: float | None = None


class PromoteSecret(_Command, frozen=True, tag="promote_secret"):
    """``pending`` version ``version`` becomes ``current``; current becomes ``previous``."""

    name: str
    version: int
    expected_version: int | None = None
    overlap: float = 0.0


class RollbackSecret(_Command, frozen=True, tag="rollback_secret"):
    """``previous`` becomes ``current`` again."""

    name: str
    expected_version: int | None = None
    overlap: float = 0.0


class DeleteSecret(_Command, frozen=True, tag="delete_secret"):
    """Write a tombstone for a secret."""

    name: str
    expected_version: int | None = None


class RewrapSecret(_Command, frozen=True, tag="rewrap_secret"):
    """Replace wrapped data keys of a secret (key rotation); ciphertexts stay as they are."""

    name: str
    expected_version: int
    keys: list[RewrappedKey]


class RewrapConfigFields(_Command, frozen=True, tag="rewrap_config_fields"):
    """Key rotation of a typed config's secret fields: the next version keeps the value
    and the ciphertexts, with the data key wrapped under another key version."""

    name: str
    expected_version: int
    from_key_version: str
    key_provider: str
    key_version: str
    wrapped_key: str


class RotateKey(_Command, frozen=True, tag="rotate_key"):
    """Start re-wrapping every data key under ``target_version`` (or confirm the rotation
    with this id that is already running)."""

    rotation_id: str
    key_provider: str
    target_version: str


class RecordKeyRotation(_Command, frozen=True, tag="record_key_rotation"):
    """Progress of a key rotation: every secret named ``<= cursor`` is re-wrapped."""

    rotation_id: str
    cursor: str
    rewrapped: int


class FinishKeyRotation(_Command, frozen=True, tag="finish_key_rotation"):
    """A key rotation is done; ``retired`` key versions no longer wrap any data key."""

    rotation_id: str
    retired: list[str] = msgspec.field(default_factory=list)


class StartRollout(_Command, frozen=True, tag="start_rollout"):
    """Offer ``value`` as the next version of config ``name`` to the clients whose
    stable bucket is below ``fraction`` (basis points, 1..10,000). ``base_version`` is
    the config version the candidate replaces; ``rollout_id`` is drawn before proposing."""

    name: str
    rollout_id: str
    value: Any
    fraction: int
    base_version: int


class WidenRollout(_Command, frozen=True, tag="widen_rollout"):
    """Raise the running rollout's fraction (basis points) to ``fraction``."""

    name: str
    rollout_id: str
    fraction: int


class PromoteRollout(_Command, frozen=True, tag="promote_rollout"):
    """The candidate becomes the config's next version, served to everyone."""

    name: str
    rollout_id: str


class AbortRollout(_Command, frozen=True, tag="abort_rollout"):
    """Stop the running rollout; every client is served the current version again."""

    name: str
    rollout_id: str
    reason: str = ""


class ReportRollout(_Command, frozen=True, tag="report_rollout"):
    """A client applied (``ack``) or refused (``nack``) the candidate; a nack rolls the
    rollout back in the same command."""

    name: str
    rollout_id: str
    client_id: str
    status: str
    detail: str = ""


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
    | PutSecret
    | StageSecret
    | PromoteSecret
    | RollbackSecret
    | DeleteSecret
    | RewrapSecret
    | RewrapConfigFields
    | RotateKey
    | RecordKeyRotation
    | FinishKeyRotation
    | StartRollout
    | WidenRollout
    | PromoteRollout
    | AbortRollout
    | ReportRollout
    | Noop
)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Command)


def encode(command: Command) -> bytes:
    return _encoder.encode(command)


def decode(data: bytes) -> Command:
    command: Command = _decoder.decode(data)
    return command
