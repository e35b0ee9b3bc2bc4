"""Rotating a real Postgres role's password before promotion, by hand and on a schedule."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import structlog
from aether_rotation import PostgresPassword, RandomToken, RotationFailed, rotate_secret
from aether_rotation.service import RotationService

from aether_core import ConfigManager, MemoryStorage, manifest
from aether_core.errors import ConfigurationError
from aether_core.node import Node
from aether_core.secrets.local_keys import LocalKeyProvider
from aether_core.secrets.manager import SecretManager

SECRET = "billing/db-password"


def password_is(dsn: str, role: str, password: str) -> bool:
    """Check the role's stored SCRAM verifier against ``password`` (RFC 5802), on our
    own, independently of libpq."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                           (role,)).fetchone()
    assert row is not None and row[0].startswith("SCRAM-SHA-256$")
    iterations_salt, keys = row[0][len("SCRAM-SHA-256$"):].split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key = base64.b64decode(keys.split(":")[0])
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt),
                                 int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key)


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with structlog.testing.capture_logs() as captured:
            yield captured
    finally:
        structlog.configure(**saved)


@pytest.fixture
async def secrets(tmp_path: Path) -> AsyncIterator[SecretManager]:
    async with ConfigManager(MemoryStorage()) as config:
        manager = SecretManager(config, LocalKeyProvider(tmp_path / "secrets.keys"))
        yield manager


async def test_the_role_password_changes_before_promotion(
    secrets: SecretManager, pg_admin_dsn: str, pg_role: str, logs: list[dict[str, Any]],
) -> None:
    await secrets.put(SECRET, "initial-password")
    assert password_is(pg_admin_dsn, pg_role, "initial-password")

    info = await rotate_secret(secrets, SECRET, PostgresPassword(pg_admin_dsn, pg_role))

    new = (await secrets.reveal(SECRET)).value
    assert (info.current, info.previous, info.pending) == (2, 1, None)
    assert new != "initial-password" and len(new) >= 32
    assert password_is(pg_admin_dsn, pg_role, new)
    assert not password_is(pg_admin_dsn, pg_role, "initial-password")
    assert (await secrets.reveal(SECRET, "previous")).value == "initial-password"
    assert any(e["event"] == "secret rotated" for e in logs)
    assert new not in repr(logs) and "initial-password" not in repr(logs)


async def test_a_missing_role_stops_the_rotation_with_nothing_promoted(
    secrets: SecretManager, pg_admin_dsn: str,
) -> None:
    await secrets.put(SECRET, "initial-password")
    with pytest.raises(RotationFailed, match=r"stopped at apply .*does not exist") as caught:
        await rotate_secret(secrets, SECRET, PostgresPassword(pg_admin_dsn, "no_such_role_x"))
    info = await secrets.info(SECRET)
    assert (info.current, info.pending) == (1, 2)
    assert (await secrets.reveal(SECRET)).value == "initial-password"
    pending = (await secrets.reveal(SECRET, "pending")).value
    assert pending not in caught.value.detail


async def test_a_failed_login_test_stops_before_promotion(
    secrets: SecretManager, pg_admin_dsn: str, pg_role: str,
) -> None:
    await secrets.put(SECRET, "initial-password")
    hook = PostgresPassword(pg_admin_dsn, pg_role,
                            test_dsn="host=127.0.0.1 port=1 dbname=test", connect_timeout=1)
    with pytest.raises(RotationFailed, match="stopped at test"):
        await rotate_secret(secrets, SECRET, hook)
    info = await secrets.info(SECRET)
    assert (info.current, info.pending) == (1, 2)
    # The role already uses the pending password: it is kept, encrypted, not lost.
    assert password_is(pg_admin_dsn, pg_role, (await secrets.reveal(SECRET, "pending")).value)


async def test_a_new_secret_is_created_by_its_first_rotation(secrets: SecretManager) -> None:
    info = await rotate_secret(secrets, "api/token", RandomToken(24))
    assert (info.current, info.previous) == (1, None)
    assert len((await secrets.reveal("api/token")).value) == 32


def write(tmp_path: Path, schedule: str) -> Path:
    path = tmp_path / "aether.toml"
    path.write_text(f"""
[node]
data_dir = "{tmp_path / 'data'}"

[storage]
use = "memory"

[transport]
use = "local"

[[services]]
use = "secret-rotation"
check_every = 0.05
schedules = [{schedule}]
""")
    return path


async def test_the_schedule_rotates_the_role_password(
    tmp_path: Path, pg_admin_dsn: str, pg_role: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AETHER_TEST_PG_ADMIN", pg_admin_dsn)
    node = Node(manifest.load(write(tmp_path, (
        f'{{ secret = "{SECRET}", every_seconds = 0.4, hook = "postgres-password", '
        f'role = "{pg_role}", admin_dsn = "${{env:AETHER_TEST_PG_ADMIN}}" }}'))))
    await node.start()
    try:
        assert node.secrets is not None
        service = node.services[0]
        assert isinstance(service, RotationService)
        async with asyncio.timeout(10):
            while service.rotations < 2:  # noqa: ASYNC110 - polling a counter
                await asyncio.sleep(0.05)
        current = (await node.secrets.reveal(SECRET)).value
        info = await node.secrets.info(SECRET)
        assert info.current is not None and info.current >= 2 and service.failures == 0
    finally:
        await node.stop()
    assert password_is(pg_admin_dsn, pg_role, current)


def test_schedule_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"\[\[services\]\] #1 schedules.0.*role"):
        manifest.load(write(tmp_path, '{ secret = "a", every_days = 1, '
                                      'hook = "postgres-password" }'))
    with pytest.raises(ConfigurationError, match="exactly one"):
        manifest.load(write(tmp_path, '{ secret = "a" }'))
