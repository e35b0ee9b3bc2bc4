"""Envelope encryption: AES-256-GCM under a data key that is used for one secret version.

The associated data binds a ciphertext to the secret's name and version, so a
ciphertext copied into another record (or another version of the same record) fails
authentication instead of decrypting. Layout of a sealed value: ``nonce (12) ‖ ct ‖ tag``.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aether_core.secrets.errors import SecretIntegrityError

DATA_KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_AAD_PREFIX = b"aether-secret/v1\x00"


def associated_data(name: str, version: int) -> bytes:
    """What a ciphertext is bound to. Names cannot contain NUL, so this is unambiguous."""
    return _AAD_PREFIX + name.encode() + b"\x00" + str(version).encode()


def seal(plaintext: bytes, data_key: bytes, name: str, version: int) -> bytes:
    if len(data_key) != DATA_KEY_BYTES:
        raise ValueError("data keys are 256-bit")
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(data_key).encrypt(nonce, plaintext, associated_data(name, version))


def open_sealed(sealed: bytes, data_key: bytes, name: str, version: int) -> bytes:
    """The plaintext; :class:`SecretIntegrityError` if anything was changed or moved."""
    if len(sealed) < NONCE_BYTES + TAG_BYTES or len(data_key) != DATA_KEY_BYTES:
        raise SecretIntegrityError(
            f"secret {name!r} version {version}: ciphertext is truncated or malformed"
        )
    nonce, body = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
    try:
        return AESGCM(data_key).decrypt(nonce, body, associated_data(name, version))
    except InvalidTag:
        raise SecretIntegrityError(
            f"secret {name!r} version {version}: ciphertext does not authenticate "
            "(tampered with, or copied from another secret or version); refused"
        ) from None
