"""SecretManager: secrets over a ConfigManager — seal before proposing, open after reading.

Writes encrypt first (a fresh data key per secret version, wrapped by the key
provider), then propose a command that carries ciphertext and the wrapped key only.
Reads unwrap the data key and open the ciphertext; a record that was tampered with or
moved is refused (:class:`~aether_core.secrets.errors.SecretIntegrityError`), never
decrypted to garbage. Metadata, listings and diffs never carry a value, and no error
or log line does either.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import structlog

from aether_core.commands import (
    Command,
    DeleteSecret,
    PromoteSecret,
    PutSecret,
    RollbackSecret,
    StageSecret,
)
from aether_core.errors import AlreadyExists, BadRequest, NotFound, VersionConflict
from aether_core.manager import MAX_PAGE, ConfigManager, check_name
from aether_core.records import CommitResult, Record
from aether_core.secrets import envelope
from aether_core.secrets.apply import live_state
from aether_core.secrets.errors import RotationRefused, SecretIntegrityError, UnknownKeyVersion
from aether_core.secrets.sealed import SECRET, SealedVersion, SecretState
from aether_core.services import KeyProvider

log = structlog.get_logger("aether.secrets")

Label = Literal["current", "previous", "pending"]
#: Secret values are small (passwords, tokens, certificates).
MAX_VALUE_BYTES = 64 * 1024
_WRITE_RETRIES = 16
_KEY_CACHE = 4096
#: Names under this prefix hold Aether's own keys (the JWT signing keys): sealed and
#: rotated like any secret, but never listed, read or changed through the public API —
#: whoever reads a signing key can mint tokens for any user.
SYSTEM_PREFIX = "_system/"


def check_public(name: str) -> None:
    """A secret name the public API may use (valid, and not a system name)."""
    check_name(name, "secret")
    if name.startswith(SYSTEM_PREFIX):
        raise BadRequest(f"secret names under {SYSTEM_PREFIX!r} are reserved for Aether's "
                         "own keys")


@dataclass(frozen=True)
class Revealed:
    """A decrypted secret value. Its ``repr`` hides the value, so it cannot leak into a
    log line or a traceback by accident."""

    name: str
    version: int
    labels: tuple[str, ...]
    value: Any = field(repr=False)

    def __repr__(self) -> str:
        return (f"Revealed(name={self.name!r}, version={self.version}, "
                f"labels={self.labels!r}, value=<redacted>)")


class SecretVersionInfo(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    labels: list[str]
    key_provider: str
    key_version: str
    created: float
    author: str
    comment: str


class SecretInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What anyone who may see a secret's metadata sees: never the value."""

    name: str
    #: The version of the secret's record (each write, promotion, re-wrap adds one):
    #: the compare-and-set version (``If-Match``).
    record_version: int
    revision: int
    current: int | None
    previous: int | None
    pending: int | None
    previous_until: float | None
    pending_until: float | None
    versions: list[SecretVersionInfo]
    updated: float
    author: str


def info_of(record: Record) -> SecretInfo:
    state = live_state(record)
    return SecretInfo(
        name=record.name, record_version=record.version, revision=record.revision,
        current=state.current, previous=state.previous, pending=state.pending,
        previous_until=state.previous_until, pending_until=state.pending_until,
        versions=[
            SecretVersionInfo(
                version=v.version, labels=state.labels_of(v.version),
                key_provider=v.key_provider, key_version=v.key_version, created=v.created,
                author=v.author, comment=v.comment,
            ) for v in state.versions
        ],
        updated=record.timestamp, author=record.author,
    )


def _decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(f"cursor {cursor!r} is not one this server issued") from None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, name: str, version: int) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SecretIntegrityError(
            f"secret {name!r} version {version}: stored ciphertext is not base64; refused"
        ) from None


class SecretManager:
    """Secrets with staging labels over ``config``'s storage and transport.

    :param keys: the key provider that wraps data keys.
    :param overlap: seconds during which ``previous`` is handed out beside ``current``
        after a promotion or rollback.
    :param window: default seconds to promote a staged value (None: no limit).
    """

    def __init__(self, config: ConfigManager, keys: KeyProvider, *, overlap: float = 3600.0,
                 window: float | None = 86_400.0) -> None:
        self.config = config
        self.keys = keys
        self.overlap = overlap
        self.window = window
        self._data_keys: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        #: A key rotation that a crash interrupted, resumed in the background by start().
        self.resuming: asyncio.Task[Any] | None = None
        # The secret fields of typed configs are sealed with these keys too.
        from aether_core.secrets.fields import FieldSealer

        config.sealer = FieldSealer(self)

    async def start(self, *, resume_rotation: bool = True) -> None:
        """Check the keys; resume an interrupted key rotation in the background (reads
        and writes are served meanwhile)."""
        await self.keys.start()
        if not resume_rotation:
            return
        from aether_core.secrets.rotation import KeyRotator  # rotation imports this module

        rotator = KeyRotator(self)
        if (await rotator.status()).rotation is not None:
            self.resuming = asyncio.create_task(self._resume(rotator),
                                                name="aether-key-rotation-resume")

    @staticmethod
    async def _resume(rotator: Any) -> None:
        try:
            await rotator.resume(author="resume")
        except Exception as exc:
            log.error("resuming the key rotation failed; it resumes at the next start",
                      error=type(exc).__name__, detail=getattr(exc, "detail", ""))

    async def close(self) -> None:
        if self.resuming is not None and not self.resuming.done():
            self.resuming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.resuming
        self.resuming = None
        self._data_keys.clear()
        await self.keys.close()

    # -- sealing ---------------------------------------------------------------------

    @staticmethod
    def _plaintext(name: str, value: Any) -> bytes:
        try:
            data = msgspec.json.encode(value)
        except (TypeError, msgspec.EncodeError):
            # The message names the type only: the value itself may be the secret.
            raise BadRequest(f"secret {name!r}: value of type {type(value).__name__} "
                             "is not JSON") from None
        if value is None:
            raise BadRequest(f"secret {name!r}: value must not be null")
        if len(data) > MAX_VALUE_BYTES:
            raise BadRequest(f"secret {name!r}: value is {len(data)} bytes; at most "
                             f"{MAX_VALUE_BYTES} are allowed")
        return data

    async def _seal(self, name: str, version: int, plaintext: bytes, author: str,
                    comment: str, now: float) -> SealedVersion:
        data_key, key_version, wrapped = await self.keys.generate_data_key(
            envelope.DATA_KEY_BYTES)
        ciphertext = envelope.seal(plaintext, data_key, name, version)
        return SealedVersion(
            version=version, ciphertext=b64(ciphertext), key_provider=self.keys.name,
            key_version=key_version, wrapped_key=b64(wrapped), created=now, author=author,
            comment=comment,
        )

    async def data_key(self, name: str, sealed: SealedVersion) -> bytes:
        """The plaintext data key of one sealed version (cached: KMS calls are slow)."""
        if sealed.key_provider != self.keys.name:
            raise UnknownKeyVersion(
                f"secret {name!r} version {sealed.version} was sealed by key provider "
                f"{sealed.key_provider!r}; this node uses {self.keys.name!r}"
            )
        cache_key = (sealed.key_provider, sealed.key_version, sealed.wrapped_key)
        found = self._data_keys.get(cache_key)
        if found is not None:
            self._data_keys.move_to_end(cache_key)
            return found
        wrapped = _unb64(sealed.wrapped_key, name, sealed.version)
        data_key = await self.keys.unwrap(sealed.key_version, wrapped)
        self._data_keys[cache_key] = data_key
        if len(self._data_keys) > _KEY_CACHE:
            self._data_keys.popitem(last=False)
        return data_key

    def forget_key_version(self, key_version: str) -> None:
        """Drop cached data keys wrapped under ``key_version`` (it was retired)."""
        for cached in [k for k in self._data_keys if k[1] == key_version]:
            del self._data_keys[cached]

    async def _open(self, name: str, sealed: SealedVersion) -> Any:
        data_key = await self.data_key(name, sealed)
        ciphertext = _unb64(sealed.ciphertext, name, sealed.version)
        plaintext = envelope.open_sealed(ciphertext, data_key, name, sealed.version)
        return msgspec.json.decode(plaintext)

    # -- proposing -------------------------------------------------------------------

    async def propose(self, command: Command) -> CommitResult:
        """Propose a secret or key-rotation command; rejections become errors."""
        result = await self.config.transport.propose(command)
        rejection = result.rejection
        if rejection is None:
            return result
        if rejection.code == "conflict":
            if rejection.expected_version == 0 and rejection.current_version:
                raise AlreadyExists(rejection.detail,
                                    current_version=rejection.current_version)
            raise VersionConflict(rejection.detail, current_version=rejection.current_version,
                                  expected_version=rejection.expected_version)
        if rejection.code == "not-found":
            raise NotFound(rejection.detail)
        raise RotationRefused(rejection.detail)

    async def _write_value(self, name: str, value: Any, expected_version: int | None,
                           author: str, comment: str, make: Any) -> Record:
        """Seal ``value`` as the secret's next version and propose ``make(sealed, cas)``.

        The version is bound into the ciphertext, so it is chosen before proposing;
        when another writer takes it first (and the caller gave no version to expect)
        the value is sealed again under the next one.
        """
        check_name(name, "secret")
        if expected_version is not None and expected_version < 0:
            raise BadRequest("expected_version must be 0 or more")
        plaintext = self._plaintext(name, value)
        for _ in range(_WRITE_RETRIES):
            head = await self.config.storage.get(SECRET, name)
            current = head.version if head else 0
            if expected_version is not None and expected_version != current:
                raise VersionConflict(
                    f"secret {name!r} is at version {current}, the write expected "
                    f"{expected_version}", current_version=current,
                    expected_version=expected_version)
            now = self.config.now()
            sealed = await self._seal(name, live_state(head).next_version, plaintext,
                                      author, comment, now)
            try:
                result = await self.propose(make(sealed, current, now))
            except (VersionConflict, AlreadyExists):
                if expected_version is not None:
                    raise
                continue
            return result.records[0]
        raise VersionConflict(f"secret {name!r} changed {_WRITE_RETRIES} times while this "
                              "write was sealed; try again", current_version=0,
                              expected_version=0)

    # -- writes ----------------------------------------------------------------------

    async def put(self, name: str, value: Any, *, expected_version: int | None = None,
                  overlap: float | None = None, author: str = "", comment: str = ""
                  ) -> SecretInfo:
        """A new value that is ``current`` at once; the old current becomes ``previous``.

        :param expected_version: the secret's record version now (0: must not exist).
        """
        check_public(name)
        overlap = self.overlap if overlap is None else overlap
        record = await self._write_value(
            name, value, expected_version, author, comment,
            lambda sealed, cas, now: PutSecret(
                name=name, sealed=sealed, expected_version=cas, overlap=overlap,
                author=author, comment=comment, timestamp=now),
        )
        log.info("secret written", secret=name, version=live_state(record).current,
                 author=author)
        return info_of(record)

    async def stage(self, name: str, value: Any, *, window: float | None = -1.0,
                    expected_version: int | None = None, author: str = "", comment: str = ""
                    ) -> SecretInfo:
        """Stage a new value as ``pending``; promote it within ``window`` seconds
        (default: the manager's window; None: no limit)."""
        check_public(name)
        window = self.window if window == -1.0 else window
        if window is not None and window <= 0:
            raise BadRequest("the rotation window must be positive (seconds)")
        record = await self._write_value(
            name, value, expected_version, author, comment,
            lambda sealed, cas, now: StageSecret(
                name=name, sealed=sealed, expected_version=cas, window=window,
                author=author, comment=comment, timestamp=now),
        )
        log.info("secret staged", secret=name, version=live_state(record).pending,
                 author=author)
        return info_of(record)

    async def promote(self, name: str, version: int, *, overlap: float | None = None,
                      expected_version: int | None = None, author: str = "",
                      comment: str = "") -> SecretInfo:
        """``pending`` version ``version`` becomes ``current``.

        :raises RotationRefused: ``version`` is not pending, or its window has closed.
        """
        check_public(name)
        overlap = self.overlap if overlap is None else overlap
        result = await self.propose(PromoteSecret(
            name=name, version=version, expected_version=expected_version, overlap=overlap,
            author=author, comment=comment, timestamp=self.config.now()))
        log.info("secret promoted", secret=name, version=version, author=author)
        return info_of(result.records[0])

    async def rollback(self, name: str, *, overlap: float | None = None,
                       expected_version: int | None = None, author: str = "",
                       comment: str = "") -> SecretInfo:
        """``previous`` becomes ``current`` again."""
        check_public(name)
        overlap = self.overlap if overlap is None else overlap
        result = await self.propose(RollbackSecret(
            name=name, expected_version=expected_version, overlap=overlap, author=author,
            comment=comment, timestamp=self.config.now()))
        log.info("secret rolled back", secret=name, version=live_state(result.records[0]).current,
                 author=author)
        return info_of(result.records[0])

    async def delete(self, name: str, *, expected_version: int | None = None,
                     author: str = "", comment: str = "") -> Record:
        check_public(name)
        result = await self.propose(DeleteSecret(
            name=name, expected_version=expected_version, author=author, comment=comment,
            timestamp=self.config.now()))
        log.info("secret deleted", secret=name, author=author)
        return result.records[0]

    # -- reads -----------------------------------------------------------------------

    async def _head(self, name: str, consistent: bool = True) -> Record:
        check_name(name, "secret")
        if consistent:
            await self.config.transport.read_barrier()
        record = await self.config.storage.get(SECRET, name)
        if record is None:
            raise NotFound(f"secret {name!r} does not exist")
        if record.deleted:
            raise NotFound(f"secret {name!r} was deleted at version {record.version}",
                           deleted_version=record.version)
        return record

    async def info(self, name: str) -> SecretInfo:
        """Labels, versions, key versions, authors and times — never the value."""
        check_public(name)
        return info_of(await self._head(name))

    async def list_secrets(self, prefix: str = "", *, cursor: str | None = None, limit: int = 100
                   ) -> tuple[list[SecretInfo], str | None]:
        """Live secrets whose name starts with ``prefix``: metadata and a next cursor."""
        if not 1 <= limit <= MAX_PAGE:
            raise BadRequest(f"limit must be between 1 and {MAX_PAGE}")
        after = _decode_cursor(cursor) if cursor else None
        items = await self.config.storage.heads(SECRET, prefix, after=after, limit=limit + 1)
        more = len(items) > limit
        items = items[:limit]
        next_cursor = (base64.urlsafe_b64encode(items[-1].name.encode()).decode()
                       if more else None)
        return [info_of(r) for r in items if not r.name.startswith(SYSTEM_PREFIX)], next_cursor

    async def reveal(self, name: str, label: Label = "current", *,
                     consistent: bool = True) -> Revealed:
        """The plaintext of the version that carries ``label``."""
        if label not in ("current", "previous", "pending"):
            raise BadRequest(f"label must be current, previous or pending, not {label!r}")
        check_public(name)
        record = await self._head(name, consistent)
        state = live_state(record)
        version = getattr(state, label)
        sealed = state.find(version)
        if version is None or sealed is None:
            raise NotFound(f"secret {name!r} has no {label} version")
        return Revealed(name=name, version=version, labels=tuple(state.labels_of(version)),
                        value=await self._open(name, sealed))

    async def reveal_for_client(self, name: str, *, consistent: bool = True
                                ) -> list[Revealed]:
        """What a client uses: ``current``, then ``previous`` while the overlap window is
        open — a client that accepts either never fails during a rotation."""
        check_public(name)
        record = await self._head(name, consistent)
        state = live_state(record)
        out: list[Revealed] = []
        wanted: list[int | None] = [state.current]
        if state.previous is not None and (state.previous_until is None
                                           or self.config.now() < state.previous_until):
            wanted.append(state.previous)
        for version in wanted:
            sealed = state.find(version)
            if version is None or sealed is None:
                continue
            out.append(Revealed(name=name, version=version,
                                labels=tuple(state.labels_of(version)),
                                value=await self._open(name, sealed)))
        if not out:
            raise NotFound(f"secret {name!r} has no current version")
        return out

    async def _sealed_version(self, name: str, version: int) -> SealedVersion:
        """Version ``version`` from the head, else from the newest record that kept it."""
        for record in reversed(await self.config.storage.history(SECRET, name)):
            if record.deleted:
                continue
            found = live_state(record).find(version)
            if found is not None:
                return found
        raise NotFound(f"secret {name!r} has no version {version}")

    async def diff(self, name: str, from_version: int, to_version: int) -> dict[str, Any]:
        """Whether two versions hold the same value: ``"changed"`` or ``"unchanged"``.
        Never the values themselves, nor a patch between them."""
        check_public(name)
        await self._head(name)
        values = []
        for version in (from_version, to_version):
            values.append(await self._open(name, await self._sealed_version(name, version)))
        result = "unchanged" if values[0] == values[1] else "changed"
        return {"name": name, "from": from_version, "to": to_version, "result": result}

    async def state(self, name: str) -> SecretState:
        """The raw sealed state (ciphertext only), for tooling and tests."""
        check_public(name)
        return live_state(await self._head(name))
