"""Signing and verification keys for the ``jwt`` auth, each under a key id (``kid``).

One key signs; every key in the set verifies, so a signing key can rotate without
logging anyone out: add the new key, make it the signing key, keep the old one as a
verification key until the longest token signed with it has expired.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from aether_core.errors import ConfigurationError

SYMMETRIC = ("HS256", "HS384", "HS512")
ASYMMETRIC = ("EdDSA", "RS256", "ES256")
ALGORITHMS = SYMMETRIC + ASYMMETRIC
#: RFC 7518 §3.2: an HMAC key at least as long as the hash output.
MIN_HMAC_KEY = 32
MIN_RSA_BITS = 2048


@dataclass
class KeySet:
    """The algorithm (pinned: tokens naming another are refused), the signing key and
    every key that verifies, by ``kid``."""

    algorithm: str
    signing_kid: str
    signing_key: Any
    verify_keys: dict[str, Any] = field(default_factory=dict)
    #: Keys that stop verifying at a time (a previous signing key after its overlap).
    retire_at: dict[str, float] = field(default_factory=dict)

    @classmethod
    def build(
        cls, algorithm: str, signing_kid: str, signing_key: str,
        verify_keys: dict[str, str] | None = None,
    ) -> KeySet:
        """Parse key material; every problem is a :class:`ConfigurationError` that names
        the key id but never shows the key."""
        if algorithm not in ALGORITHMS:
            raise ConfigurationError(
                f"[auth] algorithm: {algorithm!r} is not one of {', '.join(ALGORITHMS)}"
            )
        private = load_signing(algorithm, signing_kid, signing_key)
        keys: dict[str, Any] = {}
        for kid, material in (verify_keys or {}).items():
            keys[kid] = _load_verifying(algorithm, kid, material)
        keys[signing_kid] = (
            private if algorithm in SYMMETRIC else private.public_key()
        )
        return cls(algorithm, signing_kid, private, keys)

    @classmethod
    def generate_hmac(cls, kid: str = "generated") -> KeySet:
        """A random HS256 key held in memory only (tokens die with the process)."""
        key = secrets.token_bytes(48)
        return cls("HS256", kid, key, {kid: key})

    def jwks(self, now: float | None = None) -> dict[str, Any]:
        """The public keys as a JWK set (empty for HMAC: those keys are secret); keys
        retired before ``now`` are left out."""
        if self.algorithm in SYMMETRIC:
            return {"keys": []}
        algorithms: dict[str, Any] = {
            "EdDSA": OKPAlgorithm, "RS256": RSAAlgorithm, "ES256": ECAlgorithm,
        }
        to_jwk = algorithms[self.algorithm].to_jwk
        out = []
        for kid, key in sorted(self.verify_keys.items()):
            if now is not None and now > self.retire_at.get(kid, now):
                continue  # retired: no token it signed is still valid
            jwk: dict[str, Any] = to_jwk(key, as_dict=True)
            jwk.update(kid=kid, alg=self.algorithm, use="sig")
            out.append(jwk)
        return {"keys": out}


def load_signing(algorithm: str, kid: str, material: str) -> Any:
    if algorithm in SYMMETRIC:
        key = material.encode()
        if len(key) < MIN_HMAC_KEY:
            raise ConfigurationError(
                f"[auth] signing_key (kid {kid!r}): an {algorithm} key needs at least "
                f"{MIN_HMAC_KEY} bytes, this one has {len(key)}"
            )
        return key
    try:
        private = serialization.load_pem_private_key(material.encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"[auth] signing_key (kid {kid!r}): not an unencrypted PEM private key"
        ) from None
    _check_type(algorithm, kid, private)
    return private


def _load_verifying(algorithm: str, kid: str, material: str) -> Any:
    if algorithm in SYMMETRIC:
        return load_signing(algorithm, kid, material)
    data = material.encode()
    try:
        public: Any = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        try:
            public = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError):
            raise ConfigurationError(
                f"[auth] verify_keys.{kid}: not a PEM public (or private) key"
            ) from None
    _check_type(algorithm, kid, public)
    return public


def _check_type(algorithm: str, kid: str, key: Any) -> None:
    wanted: dict[str, tuple[type[Any], ...]] = {
        "EdDSA": (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey),
        "RS256": (rsa.RSAPrivateKey, rsa.RSAPublicKey),
        "ES256": (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey),
    }
    if not isinstance(key, wanted[algorithm]):
        raise ConfigurationError(
            f"[auth] key {kid!r} is a {type(key).__name__}, not a key for {algorithm}"
        )
    if algorithm == "RS256" and key.key_size < MIN_RSA_BITS:
        raise ConfigurationError(
            f"[auth] key {kid!r}: RSA keys need at least {MIN_RSA_BITS} bits"
        )
    if algorithm == "ES256" and key.curve.name != "secp256r1":
        raise ConfigurationError(f"[auth] key {kid!r}: ES256 needs a P-256 key")


def key_file(path: Path) -> str:
    """The HMAC key in ``path``, generated (random, mode 0600) on first use.

    A key file that others can read is refused: anyone who reads it can mint tokens.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigurationError(
                f"{path}: the signing key file is readable by others (mode {mode:o}); "
                f"run: chmod 600 {path}"
            ) from None
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_urlsafe(48) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return path.read_text(encoding="utf-8").strip()
