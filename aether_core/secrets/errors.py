"""Errors of the secrets area. None of them ever carries a plaintext value."""

from __future__ import annotations

from aether_core.errors import AetherError, Unavailable


class SecretIntegrityError(AetherError):
    """A ciphertext or wrapped key failed authentication: tampered with, moved to another
    record, or sealed under another key. Never decrypted to garbage."""

    status, code, title = 500, "secret-integrity", "Secret failed its integrity check"


class UnknownKeyVersion(AetherError):
    """A data key was wrapped under a key version the key provider does not hold
    (retired, or a key file from another deployment)."""

    status, code, title = 500, "unknown-key-version", "Key version not available"


class KeyProviderUnavailable(Unavailable):
    """The key provider (KMS) could not be reached or refused the call."""

    code, title = "key-provider-unavailable", "Key provider unavailable"


class RotationRefused(AetherError):
    """A staging-label change that the secret's state does not allow (promoting a
    version that is not pending, an expired rotation window, no previous to roll back
    to). Nothing changed."""

    status, code, title = 409, "rotation-refused", "Rotation step refused"
