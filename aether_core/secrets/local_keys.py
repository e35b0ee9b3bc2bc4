"""``local``: the built-in key provider — key-encryption keys in a 0600 file, or from
the environment.

The key file is JSON ``{"format", "current", "keys": {version: base64 key}}`` and is
created (mode 0600, fsync'd) the first time a data key is wrapped. Key rotation adds a
version and makes it current; retiring a version deletes it from the file, after which
data keys wrapped under it cannot be unwrapped — which is the point of retiring.

A key from the environment (``key = "${env:AETHER_SECRETS_KEY}"``, 32 bytes base64)
is one version, ``key_version``; older ones go in ``previous_keys``. Such keys rotate
outside Aether: set the new key and version, keep the old one in ``previous_keys``,
re-wrap, then drop it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from pathlib import Path
from typing import Any, ClassVar

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from aether_core.errors import BadRequest, ConfigurationError
from aether_core.providers import NodeInfo, ProviderSettings
from aether_core.secrets.errors import SecretIntegrityError, UnknownKeyVersion
from aether_core.services import KeyProvider

log = structlog.get_logger("aether.secrets")

KEY_FILE = "secrets.keys"
FORMAT = "aether-local-keys"
KEY_BYTES = 32
_NONCE = 12
_AAD = b"aether-kek/v1\x00"


class LocalKeySettings(ProviderSettings):
    """``[secrets] key_provider = "local"``."""

    #: Where the keys live; default ``<data_dir>/secrets.keys``.
    key_file: Path | None = None
    #: A 32-byte key, base64, from ``${env:…}`` or ``${file:…}`` (never inline).
    key: SecretStr | None = None
    #: The version name of ``key``.
    key_version: str = Field(default="1", min_length=1, max_length=64)
    #: Older keys that still unwrap, by version (references, like ``key``).
    previous_keys: dict[str, SecretStr] = Field(default_factory=dict)

    @field_validator("key", mode="before")
    @classmethod
    def _reference_only(cls, value: Any, info: ValidationInfo) -> Any:
        raw = (info.context or {}).get("raw")
        written = raw.get("key") if isinstance(raw, dict) else None
        if isinstance(written, str) and "${" not in written:
            raise ValueError('write the key as a reference ("${env:NAME}" or "${file:PATH}"), '
                             "never inline in the manifest")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> LocalKeySettings:
        if self.key is not None and self.key_file is not None:
            raise ValueError("set key or key_file, not both")
        if self.previous_keys and self.key is None:
            raise ValueError("previous_keys needs key (a key file holds its own versions)")
        return self


def decode_key(material: str, where: str) -> bytes:
    try:
        key = base64.b64decode(material.strip(), validate=True)
    except (binascii.Error, ValueError):
        try:
            key = base64.urlsafe_b64decode(material.strip())
        except (binascii.Error, ValueError):
            raise ConfigurationError(f"{where}: not base64 (make one with "
                                     "`openssl rand -base64 32`)") from None
    if len(key) != KEY_BYTES:
        raise ConfigurationError(f"{where}: a key is {KEY_BYTES} bytes, this one has {len(key)}")
    return key


class LocalKeyProvider(KeyProvider):
    name: ClassVar[str] = "local"
    Settings = LocalKeySettings

    def __init__(self, key_file: Path | None = None, *, keys: dict[str, bytes] | None = None,
                 current: str | None = None) -> None:
        if (key_file is None) == (keys is None):
            raise ValueError("give a key file or keys")
        self.key_file = key_file
        self._keys: dict[str, bytes] = dict(keys or {})
        self._current = current if current is not None else (max(self._keys, key=_order)
                                                             if self._keys else "")

    @classmethod
    def from_settings(cls, settings: LocalKeySettings, node: NodeInfo) -> LocalKeyProvider:
        if settings.key is not None:
            keys = {version: decode_key(value.get_secret_value(),
                                        f"[secrets] previous_keys.{version}")
                    for version, value in settings.previous_keys.items()}
            keys[settings.key_version] = decode_key(settings.key.get_secret_value(),
                                                    "[secrets] key")
            return cls(keys=keys, current=settings.key_version)
        return cls(settings.key_file or Path(node.data_dir) / KEY_FILE)

    # -- the key file ------------------------------------------------------------------

    def _load(self) -> bool:
        """Read the key file if there is one; False if it does not exist yet."""
        path = self.key_file
        assert path is not None
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            return False
        if mode & 0o077:
            raise ConfigurationError(f"{path}: the secrets key file is readable by others "
                                     f"(mode {mode:o}); run: chmod 600 {path}")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("format") != FORMAT:
                raise ValueError
            keys = {str(v): decode_key(k, f"{path}: key version {v!r}")
                    for v, k in doc["keys"].items()}
            current = str(doc["current"])
            if current not in keys:
                raise ValueError
        except ConfigurationError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ConfigurationError(f"{path}: not an Aether secrets key file "
                                     f"(expected JSON with format {FORMAT!r})") from None
        self._keys, self._current = keys, current
        return True

    def _save(self) -> None:
        path = self.key_file
        assert path is not None
        doc = {"format": FORMAT, "current": self._current,
               "keys": {v: base64.b64encode(k).decode() for v, k in self._keys.items()}}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _ensure(self) -> None:
        if self._keys:
            return
        if self.key_file is not None and not self._load():
            self._keys, self._current = {"1": os.urandom(KEY_BYTES)}, "1"
            self._save()
            log.info("created the secrets key file", path=str(self.key_file), key_version="1")

    def _refresh(self, version: str) -> None:
        # Another process (a key rotation run elsewhere) may have added the version.
        if version not in self._keys and self.key_file is not None:
            self._load()

    # -- KeyProvider -------------------------------------------------------------------

    async def start(self) -> None:
        if self.key_file is not None:
            self._load()

    async def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        self._ensure()
        version = self._current
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(self._keys[version]).encrypt(nonce, data_key, _AAD + version.encode())
        return version, nonce + sealed

    async def unwrap(self, key_version: str, wrapped_key: bytes) -> bytes:
        self._ensure()
        self._refresh(key_version)
        key = self._keys.get(key_version)
        if key is None:
            where = str(self.key_file) if self.key_file else "[secrets] key/previous_keys"
            raise UnknownKeyVersion(
                f"local key version {key_version!r} is not in {where} (retired, or the "
                "keys belong to another deployment)"
            )
        try:
            return AESGCM(key).decrypt(wrapped_key[:_NONCE], wrapped_key[_NONCE:],
                                       _AAD + key_version.encode())
        except (InvalidTag, ValueError):
            raise SecretIntegrityError(
                f"a data key does not unwrap under local key version {key_version!r}: "
                "a wrong key file, or the record was tampered with"
            ) from None

    async def versions(self) -> list[str]:
        self._ensure()
        return sorted(self._keys, key=lambda v: (v == self._current, _order(v)))

    async def current_version(self) -> str:
        self._ensure()
        return self._current

    async def create_version(self) -> str:
        if self.key_file is None:
            raise BadRequest(
                "keys from the environment rotate outside Aether: set the new [secrets] key "
                "and key_version, keep the old key in previous_keys, then re-wrap"
            )
        self._ensure()
        self._load()
        version = str(max(_order(v) for v in self._keys)[0] + 1)
        self._keys[version] = os.urandom(KEY_BYTES)
        self._current = version
        self._save()
        log.info("created a secrets key version", key_version=version)
        return version

    async def retire(self, key_version: str) -> None:
        if self.key_file is None:
            raise BadRequest("keys from the environment are retired by removing them from "
                             "[secrets] previous_keys")
        self._ensure()
        self._load()
        if key_version == self._current:
            raise BadRequest(f"local key version {key_version!r} is current; it cannot retire")
        if self._keys.pop(key_version, None) is not None:
            self._save()
            log.info("retired a secrets key version", key_version=key_version)


def _order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)
