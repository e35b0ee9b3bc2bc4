"""Aether storage on Redis (provider ``redis``): the shared-database shape."""

from aether_redis.settings import RedisSettings
from aether_redis.storage import RedisStorage

__all__ = ["RedisSettings", "RedisStorage"]
