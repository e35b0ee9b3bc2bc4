"""Key rotation: every data key re-wrapped under a new key-encryption key, online.

The protocol, each step a command so that a crash at any point resumes:

1. ``RotateKey``: the provider makes a new key version current (new writes use it at
   once) and the keyring records the rotation with its target version.
2. Secrets are visited in name order, a batch at a time. Each secret whose data keys
   are wrapped under another version is re-wrapped (unwrap, wrap under the current
   version) and written with ``RewrapSecret``, compare-and-set on its record version,
   so a concurrent write is never lost: on a conflict the secret is read and re-wrapped
   again. Ciphertexts are not touched. After each batch ``RecordKeyRotation`` records
   the cursor (the last name done).
3. A final sweep from the start catches writes that were sealed under the old version
   before step 1 and committed behind the cursor.
4. Key versions that no head record uses any more are retired at the provider, and
   ``FinishKeyRotation`` records which.

Resuming after a crash starts at step 2 from the recorded cursor. Readers are served
throughout: a data key wrapped under either version unwraps until step 4, and step 4
only retires versions nothing uses.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import msgspec
import structlog

from aether_core.commands import (
    FinishKeyRotation,
    RecordKeyRotation,
    RewrapConfigFields,
    RewrapSecret,
    RotateKey,
)
from aether_core.errors import AlreadyExists, BadRequest, NotFound, VersionConflict
from aether_core.manager import MAX_PAGE
from aether_core.records import Record
from aether_core.secrets import fields
from aether_core.secrets.apply import live_state
from aether_core.secrets.errors import RotationRefused
from aether_core.secrets.manager import SecretManager, b64
from aether_core.secrets.sealed import (
    KEYRING,
    KEYRING_NAME,
    SECRET,
    KeyringState,
    KeyRotation,
    RewrappedKey,
)

log = structlog.get_logger("aether.secrets")
CONFIG = "config"  # aether_core.statemachine.CONFIG (which imports the secrets package)

Progress = Callable[[KeyRotation], Awaitable[None] | None]
_RETRIES = 32


class KeyRotator:
    """Runs (or resumes) a key rotation for one :class:`SecretManager`.

    :param batch: secrets per recorded progress step.
    :param pause: seconds to sleep between batches, to spread the load of a large
        rotation (and to let tests interrupt one).
    :param on_progress: called after each recorded batch.
    """

    def __init__(self, secrets: SecretManager, *, batch: int = 50, pause: float = 0.0,
                 on_progress: Progress | None = None) -> None:
        if not 1 <= batch <= MAX_PAGE:
            raise ValueError(f"batch must be between 1 and {MAX_PAGE}")
        self.secrets = secrets
        self.batch = batch
        self.pause = pause
        self.on_progress = on_progress

    async def status(self) -> KeyringState:
        head = await self.secrets.config.storage.get(KEYRING, KEYRING_NAME)
        return msgspec.convert(head.value, KeyringState) if head is not None else KeyringState()

    async def rotate(self, *, new_version: bool = True, author: str = "") -> KeyRotation:
        """Resume the running rotation, or start one (with a new key version unless
        ``new_version`` is False: then only re-wrap onto the current version, e.g. after
        the operator changed an environment key). Returns the finished rotation."""
        running = (await self.status()).rotation
        if running is None:
            keys = self.secrets.keys
            target = await keys.create_version() if new_version else await keys.current_version()
            rotation_id = uuid.uuid4().hex
            await self.secrets.propose(RotateKey(
                rotation_id=rotation_id, key_provider=keys.name, target_version=target,
                author=author, timestamp=self.secrets.config.now()))
            log.info("key rotation started", rotation=rotation_id, key_version=target)
            running = (await self.status()).rotation
            assert running is not None
        else:
            log.info("key rotation resumed", rotation=running.id, cursor=running.cursor,
                     rewrapped=running.rewrapped)
        return await self._run(running, author)

    async def resume(self, *, author: str = "") -> KeyRotation | None:
        """Finish a rotation a crash interrupted; ``None`` if none is running."""
        if (await self.status()).rotation is None:
            return None
        return await self.rotate(author=author)

    async def _run(self, rotation: KeyRotation, author: str) -> KeyRotation:
        config = self.secrets.config
        keys = self.secrets.keys
        current = await keys.current_version()
        if current != rotation.target:
            log.warning("key rotation target is not the current key version; re-wrapping "
                        "onto the current one", target=rotation.target, current=current)
        cursor, done = rotation.cursor, rotation.rewrapped
        while batch := await config.storage.heads(SECRET, after=cursor or None,
                                                  limit=self.batch):
            for record in batch:
                done += await self._rewrap(record, current, author)
            cursor = batch[-1].name
            await self.secrets.propose(RecordKeyRotation(
                rotation_id=rotation.id, cursor=cursor, rewrapped=done, author=author,
                timestamp=config.now()))
            if self.on_progress is not None:
                outcome = self.on_progress(KeyRotation(
                    id=rotation.id, key_provider=rotation.key_provider,
                    target=rotation.target, started=rotation.started, cursor=cursor,
                    rewrapped=done))
                if outcome is not None:
                    await outcome
            if self.pause:
                await asyncio.sleep(self.pause)
        # Writes sealed under the old version before the rotation began may have
        # committed behind the cursor; sweep until nothing is left on another version.
        in_use: set[str] = set()
        for _ in range(_RETRIES):
            in_use, changed = set(), 0
            after: str | None = None
            while batch := await config.storage.heads(SECRET, after=after, limit=MAX_PAGE):
                for record in batch:
                    changed += await self._rewrap(record, current, author)
                    in_use.update(record.meta.get("key_versions", []))
                after = batch[-1].name
            # Secret fields of typed configs are wrapped under the same keys.
            after = None
            while batch := await config.storage.heads(CONFIG, after=after, limit=MAX_PAGE):
                for record in batch:
                    changed += await self._rewrap_fields(record, current, author)
                    found = record.meta.get(fields.META)
                    if isinstance(found, dict) and "key_version" in found:
                        in_use.add(str(found["key_version"]))
                after = batch[-1].name
            done += changed
            if not changed:
                break
        retired = []
        for version in await keys.versions():
            if version != current and version not in in_use:
                try:
                    await keys.retire(version)
                except BadRequest as exc:
                    # Keys managed outside Aether (environment keys) are retired by the
                    # operator; say that nothing uses this one any more.
                    log.info("key version unused; retire it at its source",
                             key_version=version, detail=exc.detail)
                    continue
                self.secrets.forget_key_version(version)
                retired.append(version)
        try:
            await self.secrets.propose(FinishKeyRotation(
                rotation_id=rotation.id, retired=retired, author=author,
                timestamp=config.now()))
        except RotationRefused:
            # Another runner (a resume on another node) finished this rotation first.
            last = (await self.status()).last
            if last is None or last.id != rotation.id:
                raise
            return last
        log.info("key rotation finished", rotation=rotation.id, key_version=current,
                 rewrapped=done, retired=retired)
        last = (await self.status()).last
        assert last is not None
        return last

    async def _rewrap_fields(self, record: Record, target: str, author: str) -> int:
        """Re-wrap the data key of one typed config's secret fields; 1 if written."""
        secrets, name = self.secrets, record.name
        sealer = fields.FieldSealer(secrets)
        for _ in range(_RETRIES):
            sealed = None if record.deleted else fields.sealed_of(record)
            if sealed is None or (sealed.key_version == target
                                  and sealed.key_provider == secrets.keys.name):
                return 0
            data_key = await sealer.data_key(name, sealed)
            key_version, wrapped = await secrets.keys.wrap(data_key)
            try:
                await secrets.propose(RewrapConfigFields(
                    name=name, expected_version=record.version,
                    from_key_version=sealed.key_version, key_provider=secrets.keys.name,
                    key_version=key_version, wrapped_key=b64(wrapped), author=author,
                    comment="key rotation", timestamp=secrets.config.now()))
                return 1
            except (VersionConflict, AlreadyExists, NotFound):
                fresh = await secrets.config.storage.get(CONFIG, name)
                if fresh is None:
                    return 0
                record = fresh
        raise VersionConflict(f"config {name!r} kept changing during key rotation; run the "
                              "rotation again to resume", current_version=record.version,
                              expected_version=record.version)

    async def _rewrap(self, record: Record, target: str, author: str) -> int:
        """Re-wrap one secret's data keys onto ``target``; 1 if it was written."""
        secrets, name = self.secrets, record.name
        for _ in range(_RETRIES):
            if record.deleted:
                return 0
            state = live_state(record)
            stale = [v for v in state.versions
                     if v.key_version != target or v.key_provider != secrets.keys.name]
            if not stale:
                return 0
            keys: list[RewrappedKey] = []
            for sealed in stale:
                data_key = await secrets.data_key(name, sealed)
                key_version, wrapped = await secrets.keys.wrap(data_key)
                keys.append(RewrappedKey(
                    version=sealed.version, from_key_version=sealed.key_version,
                    key_provider=secrets.keys.name, key_version=key_version,
                    wrapped_key=b64(wrapped)))
            try:
                await secrets.propose(RewrapSecret(
                    name=name, expected_version=record.version, keys=keys, author=author,
                    comment="key rotation", timestamp=secrets.config.now()))
                return 1
            except (VersionConflict, AlreadyExists):
                fresh = await secrets.config.storage.get(SECRET, name)
                if fresh is None:
                    return 0
                record = fresh
        raise VersionConflict(f"secret {name!r} kept changing during key rotation; run the "
                              "rotation again to resume", current_version=record.version,
                              expected_version=record.version)
