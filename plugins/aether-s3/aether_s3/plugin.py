"""Entry point ``s3``: registers :class:`~aether_s3.storage.S3Storage`."""

from __future__ import annotations

from aether_core.hookspecs import Register
from aether_core.plugins import hookimpl


@hookimpl
def aether_register_storage(register: Register) -> None:
    from aether_s3.storage import S3Storage

    register(S3Storage)
