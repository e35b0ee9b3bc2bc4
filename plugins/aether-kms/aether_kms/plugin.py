"""Entry point ``kms``: registers the key provider (nothing happens at import time)."""

from __future__ import annotations

from aether_core.hookspecs import Register
from aether_core.plugins import hookimpl


@hookimpl
def aether_register_key_providers(register: Register) -> None:
    from aether_kms.provider import KmsKeyProvider

    register(KmsKeyProvider)
