"""Entry point ``redis``: registers :class:`~aether_redis.storage.RedisStorage`."""

from __future__ import annotations

from aether_core.hookspecs import Register
from aether_core.plugins import hookimpl


@hookimpl
def aether_register_storage(register: Register) -> None:
    from aether_redis.storage import RedisStorage

    register(RedisStorage)
