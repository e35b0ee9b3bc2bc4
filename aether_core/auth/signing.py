"""JWT signing keys kept in Aether's own store and rotated online, on every node at once.

The keys are a secret like any other — ``_system/jwt-signing``, sealed under the
key-encryption key, re-wrapped by a KEK rotation, replicated by the transport — whose
staging labels mean:

* ``pending``: a new key that every node *verifies* but none *signs* with yet;
* ``current``: the key every node signs with (and verifies);
* ``previous``: the key that signed until the last rotation; it keeps verifying until
  ``previous_until`` = promotion + token lifetime + twice the leeway, when the last token it
  signed has expired. After that it is retired: no node accepts it.

A rotation (:meth:`SigningKeys.rotate`) is: adopt the configured key as ``current``
if the store holds none yet, stage a fresh key as ``pending``, wait ``propagation``
seconds (every node follows the change feed and loads the pending key meanwhile),
promote it. Each step is one replicated command, and running the rotation again after
a crash continues where it stopped (a staged key is promoted, not replaced).
A node that meets a token with a key id it does not know re-reads the keys once before
refusing it, so a node that lags behind the feed does not refuse a fresh key.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from aether_core.auth.keys import SYMMETRIC, KeySet, load_signing
from aether_core.commands import PromoteSecret, PutSecret, StageSecret
from aether_core.errors import AlreadyExists, BadRequest, VersionConflict
from aether_core.records import Record
from aether_core.secrets.apply import live_state
from aether_core.secrets.errors import RotationRefused
from aether_core.secrets.manager import SYSTEM_PREFIX, SecretManager
from aether_core.secrets.sealed import SECRET, SealedVersion, SecretState

if TYPE_CHECKING:
    from aether_core.watch import Subscription

log = structlog.get_logger("aether.auth")

KEYRING = SYSTEM_PREFIX + "jwt-signing"
#: Seconds between staging a key and signing with it, by default.
DEFAULT_PROPAGATION = 5.0
MAX_PROPAGATION = 300.0
_CHECK_EVERY = 0.05


class SigningKeyInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What anyone may know about a signing key: never the key."""

    kid: str
    state: str  # pending | current | previous | retired | configured
    version: int | None = None
    created: float | None = None
    #: When a previous key stops verifying.
    retires_at: float | None = None


class SigningStatus(msgspec.Struct, frozen=True, kw_only=True):
    algorithm: str
    signing_kid: str
    keys: list[SigningKeyInfo]
    #: True once the store holds the keys (the first rotation adopts the configured key).
    stored: bool


def _export(algorithm: str, key: Any) -> str:
    """Key material as text for sealing: base64 for HMAC bytes, PEM for key pairs."""
    if algorithm in SYMMETRIC:
        return base64.b64encode(key).decode()
    pem: bytes = key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    return pem.decode()


def _import(algorithm: str, kid: str, material: str) -> Any:
    if algorithm in SYMMETRIC:
        return base64.b64decode(material)
    return load_signing(algorithm, kid, material)


def generate(algorithm: str) -> Any:
    """A fresh private key (or HMAC secret) for ``algorithm``."""
    if algorithm in SYMMETRIC:
        return os.urandom(64)  # RFC 7518 §3.2: at least the hash size, also for HS512
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public(algorithm: str, key: Any) -> Any:
    return key if algorithm in SYMMETRIC else key.public_key()


class SigningKeys:
    """One node's view of the stored signing keys, and the rotation that changes them.

    :param base: the keys from the manifest (used until the store holds keys).
    :param overlap: seconds a previous key keeps verifying after a rotation.
    :param on_change: called with the new :class:`KeySet` whenever it changes.
    """

    def __init__(self, secrets: SecretManager, base: KeySet, *, overlap: float,
                 on_change: Any) -> None:
        self.secrets = secrets
        self.base = base
        self.overlap = overlap
        self.on_change = on_change
        self._follower: asyncio.Task[None] | None = None
        self._loaded = -1
        self._last_check = 0.0
        self._lock = asyncio.Lock()

    # -- loading -------------------------------------------------------------------

    async def _record(self) -> Record | None:
        record = await self.secrets.config.storage.get(SECRET, KEYRING)
        return None if record is None or record.deleted else record

    async def _open(self, sealed: SealedVersion) -> tuple[str, Any]:
        value = await self.secrets._open(KEYRING, sealed)
        if value.get("algorithm") != self.base.algorithm:
            raise BadRequest(
                f"stored signing key {value.get('kid')!r} is for {value.get('algorithm')}, "
                f"but [auth] algorithm is {self.base.algorithm}; set it back or rotate "
                "after changing it is not supported"
            )
        kid = str(value["kid"])
        return kid, _import(self.base.algorithm, kid, str(value["key"]))

    async def keyset(self) -> KeySet:
        """The keys in force: the stored ones if any, else the configured ones."""
        record = await self._record()
        if record is None:
            return self.base
        state = live_state(record)
        if state.current is None:
            return self.base
        opened: dict[int, tuple[str, Any]] = {}
        for sealed in state.versions:
            opened[sealed.version] = await self._open(sealed)
        alg = self.base.algorithm
        signing_kid, signing_key = opened[state.current]
        # Keys configured as extra verify_keys stay the operator's to remove.
        verify = {kid: key for kid, key in self.base.verify_keys.items()
                  if kid != self.base.signing_kid}
        retire_at: dict[str, float] = {}
        for version, (kid, key) in opened.items():
            verify[kid] = _public(alg, key)
            if version == state.previous and state.previous_until is not None:
                retire_at[kid] = state.previous_until
        return KeySet(alg, signing_kid, signing_key, verify, retire_at)

    async def reload(self) -> KeySet:
        async with self._lock:
            head = await self._record()
            keys = await self.keyset()
            self._loaded = head.version if head is not None else 0
            self.on_change(keys)
            return keys

    async def reload_for_unknown_kid(self) -> bool:
        """Re-read the keys if the store holds newer ones than this node loaded; True if
        it did. Checks at most every :data:`_CHECK_EVERY` seconds, so tokens with made-up
        key ids cannot turn into a storm of storage reads."""
        now = self.secrets.config.now()
        if now - self._last_check < _CHECK_EVERY:
            return False
        self._last_check = now
        head = await self._record()
        if (head.version if head is not None else 0) == self._loaded:
            return False
        await self.reload()
        return True

    async def start(self) -> None:
        """Load the keys, then follow every change any node makes to them."""
        revision = await self.secrets.config.revision()
        await self.reload()
        subscription = await self.secrets.config.watch(
            KEYRING, since=revision, kinds=frozenset({SECRET}))
        self._follower = asyncio.create_task(self._follow(subscription),
                                             name="aether-signing-keys")

    async def _follow(self, subscription: Subscription) -> None:
        while True:
            try:
                async for event in subscription:
                    if event.name == KEYRING:
                        await self.reload()
                return
            except Exception as exc:  # the feed dropped us: re-read, follow again
                log.warning("signing keys lost the change feed; reloading",
                            error=type(exc).__name__)
                await asyncio.sleep(0.5)
                with contextlib.suppress(Exception):
                    revision = await self.secrets.config.revision()
                    await self.reload()
                    subscription = await self.secrets.config.watch(
                        KEYRING, since=revision, kinds=frozenset({SECRET}))

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None

    # -- status --------------------------------------------------------------------

    async def status(self) -> SigningStatus:
        record = await self._record()
        keys = await self.keyset()
        now = self.secrets.config.now()
        if record is None or live_state(record).current is None:
            infos = [SigningKeyInfo(kid=kid, state="current" if kid == keys.signing_kid
                                    else "configured")
                     for kid in sorted(keys.verify_keys)]
            return SigningStatus(algorithm=keys.algorithm, signing_kid=keys.signing_kid,
                                 keys=infos, stored=False)
        state = live_state(record)
        infos = []
        for sealed in state.versions:
            kid, _ = await self._open(sealed)
            label = state.labels_of(sealed.version)[0]
            retires = state.previous_until if label == "previous" else None
            if retires is not None and now > retires:
                label = "retired"
            infos.append(SigningKeyInfo(kid=kid, state=label, version=sealed.version,
                                        created=sealed.created, retires_at=retires))
        return SigningStatus(algorithm=keys.algorithm, signing_kid=keys.signing_kid,
                             keys=infos, stored=True)

    # -- rotation ------------------------------------------------------------------

    async def _put(self, make: Any, expected: int, kid: str, key: Any, author: str,
                   comment: str) -> None:
        """Seal one key as the next version; a concurrent rotation is refused."""
        value = {"kid": kid, "algorithm": self.base.algorithm,
                 "key": _export(self.base.algorithm, key)}
        try:
            await self.secrets._write_value(KEYRING, value, expected, author, comment, make)
        except (VersionConflict, AlreadyExists):
            raise RotationRefused("another signing-key rotation changed the keys at the "
                                  "same time; run the rotation again") from None

    async def rotate(self, *, propagation: float = DEFAULT_PROPAGATION, author: str = ""
                     ) -> SigningStatus:
        """Introduce a new signing key on every node, then sign with it.

        :param propagation: seconds between staging (every node verifies) and promoting
            (every node signs); longer than the slowest node's lag behind the feed.
        :raises RotationRefused: the previous key still verifies tokens (rotating again
            now would cut its overlap short).
        """
        if not 0 <= propagation <= MAX_PROPAGATION:
            raise BadRequest(f"propagation must be between 0 and {MAX_PROPAGATION:.0f} "
                             "seconds")
        config = self.secrets.config
        record = await self._record()
        state = self._state(record)
        if state.current is None:
            # The first rotation adopts the configured key, so it keeps verifying (as
            # previous) through the overlap like any other old key.
            await self._put(
                lambda sealed, cas, now: PutSecret(
                    name=KEYRING, sealed=sealed, expected_version=cas, overlap=0.0,
                    author=author, comment="adopted the configured signing key",
                    timestamp=now),
                await self._version(), self.base.signing_kid, self.base.signing_key, author,
                "adopted")
            state = self._state(await self._record())
        now = config.now()
        if (state.previous is not None and state.previous_until is not None
                and now < state.previous_until):
            raise RotationRefused(
                f"the previous signing key verifies tokens until {state.previous_until:.0f} "
                f"(in {state.previous_until - now:.0f} s); rotating again before then would "
                "log out the holders of those tokens"
            )
        if state.pending is None:
            kid = f"k-{uuid.uuid4().hex[:12]}"
            await self._put(
                lambda sealed, cas, now: StageSecret(
                    name=KEYRING, sealed=sealed, expected_version=cas, window=None,
                    author=author, comment="new signing key", timestamp=now),
                await self._version(), kid, generate(self.base.algorithm), author, "staged")
            log.info("signing key staged", kid=kid, propagation=propagation)
        else:
            log.info("signing key rotation resumed", version=state.pending)
        await self.reload()
        await asyncio.sleep(propagation)
        state = self._state(await self._record())
        if state.pending is None:  # another runner promoted it meanwhile
            return await self.status()
        try:
            await self.secrets.propose(PromoteSecret(
                name=KEYRING, version=state.pending, overlap=self.overlap, author=author,
                comment="signing key rotation", timestamp=config.now()))
        except RotationRefused:
            if self._state(await self._record()).pending is not None:
                raise
        keys = await self.reload()
        log.info("signing key rotated", kid=keys.signing_kid, overlap=self.overlap)
        return await self.status()

    async def _version(self) -> int:
        head = await self.secrets.config.storage.get(SECRET, KEYRING)
        return head.version if head is not None else 0

    @staticmethod
    def _state(record: Record | None) -> SecretState:
        return live_state(record) if record is not None else SecretState()
