"""Secrets: envelope encryption at rest, staging labels, key rotation.

* :mod:`~aether_core.secrets.envelope` — AES-256-GCM with a fresh data key per secret
  version, the name and version bound as associated data.
* :mod:`~aether_core.secrets.sealed` — what a ``secret`` record holds (ciphertext and
  wrapped keys only) and the pure label transitions the state machine applies.
* :mod:`~aether_core.secrets.local_keys` — the built-in ``local`` key provider.
* :mod:`~aether_core.secrets.manager` — :class:`SecretManager`, the API front ends use.
* :mod:`~aether_core.secrets.rotation` — re-wrapping every data key under a new
  key-encryption key, resumable after a crash.
"""
