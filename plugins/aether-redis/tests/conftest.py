"""Fixtures for the Redis storage tests: a real Redis on 127.0.0.1:6379, a key prefix
of each test's own, every key of it deleted afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from aether_redis import RedisSettings, RedisStorage
from redis.exceptions import RedisError

REDIS_URL = "redis://127.0.0.1:6379/0"
HOW_TO_START = (
    "Redis is not reachable at 127.0.0.1:6379; the Redis tests need a real server. "
    "Start it with `scripts/services.sh` (or `redis-server --daemonize yes --bind 127.0.0.1 "
    "--port 6379`; install with `apt-get install redis-server`)."
)


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    """A raw client for inspecting and poking the server; fails when Redis is down."""
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        pytest.fail(f"{HOW_TO_START} ({type(exc).__name__}: {exc})")
    yield client
    await client.aclose()


@pytest.fixture
def redis_prefix() -> str:
    return f"aether-test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def make_redis(
    redis_client: aioredis.Redis, redis_prefix: str
) -> AsyncIterator[Callable[..., RedisStorage]]:
    """Build open-able stores over the test's prefix; closes them and deletes the keys."""
    made: list[RedisStorage] = []

    def make(node_name: str = "node-1", **overrides: object) -> RedisStorage:
        settings = RedisSettings.model_validate(
            {"url": REDIS_URL, "prefix": redis_prefix, "feed_block": 0.5, **overrides}
        )
        store = RedisStorage(settings, node_name=node_name)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()
    pattern = "{" + redis_prefix + "}*"
    escaped = pattern.replace("{", "\\{").replace("}", "\\}", 1)
    keys = [key async for key in redis_client.scan_iter(match=escaped, count=1000)]
    if keys:
        await redis_client.delete(*keys)
    assert [k async for k in redis_client.scan_iter(match=escaped)] == []
