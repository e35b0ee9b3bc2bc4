"""The SDK's parts without a server: configs as environment variables, the last-good
cache on disk, the retry policy, and credentials from the environment."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from aether_client import ApiError, Backoff, ClientError, Credentials, Unreachable, ValueCache
from aether_client.cache import CachedValue
from aether_client.env import config_env


def test_configs_become_environment_variables() -> None:
    env = config_env("billing/", {
        "billing/database": {"host": "db", "port": 5432, "tls": True, "replicas": ["a", "b"],
                             "password": None},
        "billing/feature-flags/new-ui": False,
        "billing/rate": 1.5,
    })
    assert env == {
        "DATABASE_HOST": "db", "DATABASE_PORT": "5432", "DATABASE_TLS": "true",
        "DATABASE_REPLICAS": '["a","b"]', "DATABASE_PASSWORD": "",
        "FEATURE_FLAGS_NEW_UI": "false", "RATE": "1.5",
    }
    assert config_env("billing/", {"billing/db": {"port": 1}}, var_prefix="app") == {
        "APP_DB_PORT": "1"}
    with pytest.raises(ClientError, match=r"billing/a-b:x and billing/a_b:x both map to \$A_B_X"):
        config_env("billing/", {"billing/a-b": {"x": 1}, "billing/a_b": {"x": 2}})


def test_cache_writes_atomically_and_ignores_a_corrupt_file(tmp_path: Path) -> None:
    cache = ValueCache(tmp_path / "cache")
    assert cache.load("billing/database") is None
    cache.save(CachedValue("billing/database", 3, 17, {"port": 5432}))
    cache.save(CachedValue("billing/database", 4, 18, {"port": 5433}))
    assert cache.load("billing/database") == CachedValue("billing/database", 4, 18,
                                                         {"port": 5433})
    files = os.listdir(tmp_path / "cache")
    assert files == ["billing%2Fdatabase.json"]  # no temporary file left behind
    mode = stat.S_IMODE(os.stat(cache.path("billing/database")).st_mode)
    assert mode == 0o600
    cache.path("billing/database").write_text('{"name": "billing/database", "vers')
    assert cache.load("billing/database") is None


async def test_backoff_retries_transient_failures_only() -> None:
    attempts: list[int] = []

    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise Unreachable("cannot reach the server")
        return "ok"

    assert await Backoff(initial=0.001, maximum=0.01).call(flaky) == "ok"
    assert len(attempts) == 3

    refused: list[int] = []

    async def forbidden() -> None:
        refused.append(1)
        raise ApiError(403, "forbidden", "no", {})

    with pytest.raises(ApiError):
        await Backoff(initial=0.001).call(forbidden)
    assert len(refused) == 1

    async def down() -> None:
        raise ApiError(503, "unavailable", "no leader", {})

    with pytest.raises(ApiError, match="no leader"):
        await Backoff(initial=0.001, maximum=0.01, give_up_after=0.05).call(down)


def test_credentials_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AETHER_TOKEN", "AETHER_USERNAME", "AETHER_PASSWORD", "AETHER_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert not Credentials.from_env().can_login
    monkeypatch.setenv("AETHER_USERNAME", "ops")
    monkeypatch.setenv("AETHER_PASSWORD", "from-env-password")
    assert Credentials.from_env().password == "from-env-password"
    (tmp_path / "pw").write_text("from-file-password\nignored\n")
    monkeypatch.setenv("AETHER_PASSWORD_FILE", str(tmp_path / "pw"))
    found = Credentials.from_env()
    assert (found.username, found.password) == ("ops", "from-file-password")
    assert "from-file-password" not in repr(found)
    monkeypatch.setenv("AETHER_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ClientError, match="cannot read the password file"):
        Credentials.from_env()
