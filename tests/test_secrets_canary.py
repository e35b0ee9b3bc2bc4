"""The canary: secrets — whole ones, and the ``SecretStr`` fields of a typed config —
with known marker values go through every operation on every storage backend; then
every byte of each backend's raw storage, the change events, the export and the logs
are scanned — 0 plaintext hits.

Needs the real services: Postgres and Redis on 127.0.0.1 (``scripts/services.sh``) and
moto's S3 server, which this test starts on a free port.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import msgspec
import psycopg
import pytest
import redis.asyncio as aioredis
import structlog
from psycopg import sql

from aether_core import ConfigManager, SqliteStorage
from aether_core.records import ChangeEvent
from aether_core.secrets.local_keys import LocalKeyProvider
from aether_core.secrets.manager import SecretManager
from aether_core.secrets.rotation import KeyRotator
from aether_core.storage.base import Storage

MARKERS = [f"canary-{uuid.uuid4().hex}" for _ in range(6)]
#: A typed config whose secret fields carry markers 5 and 6 (SecretStr renders as a
#: write-only password string).
FIELD_SCHEMA = {"type": "object", "properties": {
    "host": {"type": "string"},
    "password": {"type": "string", "format": "password", "writeOnly": True},
}}
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
HOW_TO_START = "start Postgres and Redis with scripts/services.sh (or ./dev test)"
MOTO = """
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, \
create_backend_app
from werkzeug.serving import make_server
server = make_server("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app),
                     threaded=True, request_handler=MotoRequestHandler)
print(f"port {server.server_port}", flush=True)
server.serve_forever()
"""

RawScan = Callable[[], Awaitable[bytes]]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-c", MOTO], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("port "):
            pytest.fail("moto's server did not start: pip install 'moto[server]'")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with structlog.testing.capture_logs() as captured:
            yield captured
    finally:
        structlog.configure(**saved)


async def sqlite_backend(tmp_path: Path, _: str) -> tuple[Storage, RawScan]:
    path = tmp_path / "canary.db"

    def files() -> bytes:  # the database and its WAL
        return b"".join(p.read_bytes() for p in tmp_path.glob("canary.db*"))

    async def scan() -> bytes:
        return files()

    return SqliteStorage(path), scan


async def postgres_backend(tmp_path: Path, _: str) -> tuple[Storage, RawScan]:
    from aether_postgres import PostgresSettings, PostgresStorage

    try:
        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.fail(f"Postgres is not reachable at {PG_DSN} ({exc}); {HOW_TO_START}")
    schema = f"aether_canary_{uuid.uuid4().hex[:10]}"

    async def scan() -> bytes:
        out = []
        async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as conn:
            tables = await (await conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,))).fetchall()
            assert tables, "the backend created no table"
            for (table,) in tables:
                rows = await (await conn.execute(sql.SQL("SELECT t::text FROM {}.{} t").format(
                    sql.Identifier(schema), sql.Identifier(table)))).fetchall()
                out.extend(row[0].encode() for row in rows)
            await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        return b"\n".join(out)

    return PostgresStorage(PostgresSettings(dsn=PG_DSN, schema=schema),  # type: ignore[arg-type]
                           node_name="canary"), scan


async def redis_backend(tmp_path: Path, _: str) -> tuple[Storage, RawScan]:
    from aether_redis import RedisSettings, RedisStorage

    prefix = f"aether-canary-{uuid.uuid4().hex[:10]}:"
    pattern = "{" + prefix + "}*"  # the store wraps its prefix in a hash tag

    async def scan() -> bytes:
        client = aioredis.Redis.from_url(REDIS_URL)
        out: list[bytes] = []
        try:
            async for key in client.scan_iter(match=pattern):
                kind = (await client.type(key)).decode()
                if kind == "string":
                    out.append(await client.get(key) or b"")
                elif kind == "hash":
                    out.append(msgspec.msgpack.encode(await client.hgetall(key)))
                elif kind == "stream":
                    out.append(repr(await client.xrange(key)).encode())
                elif kind == "zset":
                    out.append(repr(await client.zrange(key, 0, -1)).encode())
                elif kind == "list":
                    out.append(repr(await client.lrange(key, 0, -1)).encode())
                elif kind == "set":
                    out.append(repr(await client.smembers(key)).encode())
                else:
                    pytest.fail(f"unexpected Redis type {kind} at {key!r}")
            assert out, "the backend wrote no key"
            await client.delete(*[k async for k in client.scan_iter(match=pattern)])
        finally:
            await client.aclose()
        return b"\n".join(out)

    try:
        client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        await client.ping()
        await client.aclose()
    except Exception as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} ({exc}); {HOW_TO_START}")
    return RedisStorage(RedisSettings(url=REDIS_URL, prefix=prefix), node_name="canary"), scan


async def s3_backend(tmp_path: Path, endpoint: str) -> tuple[Storage, RawScan]:
    from aether_s3 import S3Settings, S3Storage

    bucket = f"canary-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=bucket)

    async def scan() -> bytes:
        out = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                out.append(item["Key"].encode())
                out.append(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
        assert out, "the backend wrote no object"
        return b"\n".join(out)

    settings = S3Settings.model_validate({
        "bucket": bucket, "endpoint_url": endpoint, "access_key_id": "testing",
        "secret_access_key": "testing", "poll_interval": 0.05})
    return S3Storage(settings, node_name="canary"), scan


BACKENDS = {"sqlite": sqlite_backend, "postgres": postgres_backend, "redis": redis_backend,
            "s3": s3_backend}


@pytest.fixture(params=sorted(BACKENDS))
async def backend(request: pytest.FixtureRequest, tmp_path: Path
                  ) -> AsyncIterator[tuple[Storage, RawScan]]:
    endpoint = request.getfixturevalue("s3_endpoint") if request.param == "s3" else ""
    yield await BACKENDS[request.param](tmp_path, endpoint)


async def test_no_plaintext_anywhere(backend: tuple[Storage, RawScan], tmp_path: Path,
                                     logs: list[dict[str, Any]],
                                     capfd: pytest.CaptureFixture[str]) -> None:
    storage, scan = backend
    a, b, c, d, e, f = MARKERS
    async with ConfigManager(storage) as config:
        secrets = SecretManager(config, LocalKeyProvider(tmp_path / "secrets.keys"))
        await config.put_schema("typed", FIELD_SCHEMA, bind=["typed/"])
        await config.put("typed/svc", {"host": "db1", "password": e})
        await config.put("typed/svc", {"host": "db2", "password": f})
        await config.rollback("typed/svc", 1)
        await secrets.put("app/db", a)
        await secrets.put("app/api", {"token": b})
        await secrets.stage("app/db", c)
        await secrets.promote("app/db", 2)
        await secrets.rollback("app/db")
        await secrets.put("app/old", d)
        await secrets.delete("app/old")
        assert (await config.diff("typed/svc", 2, 3))["secret_fields"] == {
            "/password": "changed"}
        await KeyRotator(secrets, batch=2).rotate()
        assert (await secrets.reveal("app/db")).value == a
        assert (await secrets.reveal("app/db", "previous")).value == c
        assert (await config.reveal("typed/svc")).value == {"host": "db1", "password": e}
        assert (await config.get("typed/svc")).meta["sealed"]["key_version"] != "1"
        events = [msgspec.json.encode(ChangeEvent.from_record(r))
                  for r in await config.storage.changes(0)]
        exported = b"".join([chunk async for chunk in config.export()])
        assert len(events) >= 9
    raw = await scan()
    out, err = capfd.readouterr()
    for marker in MARKERS:
        needle = marker.encode()
        assert needle not in raw
        assert needle not in exported
        assert not any(needle in event for event in events)
        assert marker not in repr(logs) and marker not in out + err
    assert b"app/db" in raw, "the scan saw the stored records"
