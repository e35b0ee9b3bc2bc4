"""``[secrets] key_provider = "{{ cookiecutter.plugin_name }}"``: {{ cookiecutter.description }}.

The template starts you with key-encryption keys given in the manifest (each from
``${env:…}`` or ``${file:…}``, never inline), wrapping data keys with AES-256-GCM.
Replace :meth:`wrap` and :meth:`unwrap` with your key service's calls (an HSM, Vault
transit, a cloud KMS). Keys given this way rotate outside Aether, so
``create_version`` and ``retire`` keep the kernel's refusal.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any, ClassVar

from aether_core.errors import ConfigurationError
from aether_core.providers import NodeInfo, ProviderSettings
from aether_core.services import KeyProvider
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import Field, SecretStr, ValidationInfo, field_validator

_NONCE = 12
_AAD = b"{{ cookiecutter.package }}/v1\x00"


class {{ cookiecutter.class_name }}Settings(ProviderSettings):
    """The ``[secrets]`` keys besides the kernel's own; unknown keys are manifest errors."""

    #: Key versions and their 32-byte keys, base64 (``openssl rand -base64 32``).
    keys: dict[str, SecretStr] = Field(min_length=1)
    #: The version that wraps new data keys.
    current: str = Field(min_length=1)

    @field_validator("keys", mode="before")
    @classmethod
    def _references_only(cls, value: Any, info: ValidationInfo) -> Any:
        raw = (info.context or {}).get("raw")
        written = raw.get("keys") if isinstance(raw, dict) else None
        if isinstance(written, dict):
            for version, key in written.items():
                if isinstance(key, str) and "${" not in key:
                    raise ValueError(f"key {version!r}: " + 'write it as "${env:NAME}" or '
                                     '"${file:PATH}", never inline in the manifest')
        return value


def decode_key(version: str, material: str) -> bytes:
    try:
        key = base64.b64decode(material, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"[secrets] keys.{version}: not base64") from None
    if len(key) != 32:
        raise ConfigurationError(f"[secrets] keys.{version}: a key is 32 bytes, not {len(key)}")
    return key


class {{ cookiecutter.class_name }}(KeyProvider):
    name: ClassVar[str] = "{{ cookiecutter.plugin_name }}"
    Settings = {{ cookiecutter.class_name }}Settings

    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        if current not in keys:
            raise ConfigurationError(f"[secrets] current: {current!r} is not one of the keys")
        self._keys = dict(keys)
        self._current = current

    @classmethod
    def from_settings(
        cls, settings: {{ cookiecutter.class_name }}Settings, node: NodeInfo
    ) -> {{ cookiecutter.class_name }}:
        keys = {v: decode_key(v, k.get_secret_value()) for v, k in settings.keys.items()}
        return cls(keys, settings.current)

    async def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(_NONCE)
        version = self._current
        sealed = AESGCM(self._keys[version]).encrypt(nonce, data_key, _AAD + version.encode())
        return version, nonce + sealed

    async def unwrap(self, key_version: str, wrapped_key: bytes) -> bytes:
        key = self._keys.get(key_version)
        if key is None:
            raise ConfigurationError(f"key version {key_version!r} is not configured")
        try:
            return AESGCM(key).decrypt(wrapped_key[:_NONCE], wrapped_key[_NONCE:],
                                       _AAD + key_version.encode())
        except (InvalidTag, ValueError):
            raise ConfigurationError(
                f"a data key does not unwrap under key version {key_version!r}") from None

    async def versions(self) -> list[str]:
        return sorted(self._keys, key=lambda v: v == self._current)
