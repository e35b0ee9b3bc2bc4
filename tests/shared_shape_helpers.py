"""Helpers for the shared-database end-to-end tests: ``aether up`` processes over one
Postgres schema / Redis prefix / S3 bucket prefix, a moto server, cleanup. A module with
a unique name (every test directory has a conftest.py, so ``from conftest import`` would
find another one). Adapted from the admin API's end-to-end test and the S3 fixtures."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from aether_core.testing.processes import AetherProcess, free_port
from aether_core.testing.processes import aether_command as aether

ROOT = Path(__file__).resolve().parent.parent
MOTO_SERVER = ROOT / "plugins" / "aether-s3" / "tests" / "moto_serialized.py"
PASSWORD = "shared-shape-admin-password"
SIGNING_KEY = "shared-shape-signing-key-0123456789abcdef0123"
PG_DSN = os.environ.get("AETHER_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = "redis://127.0.0.1:6379/0"
S3_CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}


def node_env() -> dict[str, str]:
    env = {**os.environ, "AETHER_ADMIN_PASSWORD": PASSWORD, "AETHER_SIGNING_KEY": SIGNING_KEY}
    env.pop("AETHER_MANIFEST", None)
    return env


def manifest(name: str, storage: str, port: int | None) -> str:
    """A node's manifest: ``storage`` is the body of the ``[storage]`` table."""
    service = "" if port is None else f"""
[[services]]
use = "admin"
listen = "127.0.0.1:{port}"
watch_keepalive = 1
"""
    return f"""
[node]
name = "{name}"
data_dir = "data"

[storage]
{storage}

[transport]
use = "local"

[auth]
use = "jwt"
signing_key = "${{env:AETHER_SIGNING_KEY}}"
token_ttl = 600
{service}"""


class Backend:
    """One shared store (a schema, a key prefix or a bucket prefix of its own)."""

    def __init__(self, kind: str, moto: str | None = None) -> None:
        self.kind = kind
        self.moto = moto
        self.tag = uuid.uuid4().hex[:12]
        self.bucket = f"aether-shared-{self.tag}"
        if kind == "s3":
            assert moto is not None
            self._s3().create_bucket(Bucket=self.bucket)

    def storage(self, suffix: str = "", **extra: Any) -> str:
        """The ``[storage]`` table body; ``suffix`` selects another store of the backend."""
        values: dict[str, Any]
        if self.kind == "postgres":
            values = {"use": "postgres", "dsn": PG_DSN, "schema": self.schema(suffix),
                      "pool_size": 4}
        elif self.kind == "redis":
            values = {"use": "redis", "url": REDIS_URL, "prefix": self.prefix(suffix),
                      "feed_block": 0.5}
        else:
            values = {"use": "s3", "bucket": self.bucket, "endpoint_url": self.moto,
                      "prefix": self.prefix(suffix), "poll_interval": 0.1, **S3_CREDENTIALS}
        values.update(extra)
        return "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items())

    def schema(self, suffix: str) -> str:
        return f"aether_e2e_{self.tag}{suffix}"

    def prefix(self, suffix: str) -> str:
        return f"aether-e2e:{self.tag}{suffix}:" if self.kind == "redis" \
            else f"e2e-{self.tag}{suffix}/"

    def _s3(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.moto, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def cleanup(self, suffixes: tuple[str, ...] = ("",)) -> None:
        if self.kind == "postgres":
            import psycopg
            from psycopg import sql

            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                for suffix in suffixes:
                    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                        sql.Identifier(self.schema(suffix))))
        elif self.kind == "redis":
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            try:
                for suffix in suffixes:
                    pattern = "\\{" + self.prefix(suffix) + "\\}*"
                    keys = list(client.scan_iter(match=pattern, count=1000))
                    if keys:
                        client.delete(*keys)
                    assert list(client.scan_iter(match=pattern)) == []
            finally:
                client.close()
        else:
            s3 = self._s3()
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
                for item in page.get("Contents", []):
                    s3.delete_object(Bucket=self.bucket, Key=item["Key"])
            s3.delete_bucket(Bucket=self.bucket)


def require_services(kind: str) -> None:
    """Fail (never skip) with how to start the server when it is not reachable."""
    if kind == "postgres":
        import psycopg

        try:
            with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError as exc:
            pytest.fail(f"PostgreSQL is not reachable at {PG_DSN} ({exc}); start it with "
                        "scripts/services.sh", pytrace=False)
    elif kind == "redis":
        import redis

        try:
            redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        except (redis.RedisError, OSError) as exc:
            pytest.fail(f"Redis is not reachable at 127.0.0.1:6379 ({exc}); start it with "
                        "scripts/services.sh", pytrace=False)


class Node(AetherProcess):
    """``aether up`` in ``directory`` with the given storage, on a free loopback port."""

    def __init__(self, directory: Path, name: str, storage: str) -> None:
        self.port = free_port()
        super().__init__(directory, manifest(name, storage, self.port),
                         url=f"http://127.0.0.1:{self.port}",
                         env={"AETHER_ADMIN_PASSWORD": PASSWORD,
                              "AETHER_SIGNING_KEY": SIGNING_KEY})

    def headers(self) -> dict[str, str]:
        return self.login("admin", PASSWORD)


class Watcher:
    """An SSE ``/watch`` stream read in a thread; events land in ``events``."""

    def __init__(self, url: str, headers: dict[str, str], since: int) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.opened = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, headers, since),
                                        daemon=True)
        self._thread.start()
        assert self.opened.wait(10), "the watch stream did not open"

    def _run(self, url: str, headers: dict[str, str], since: int) -> None:
        timeout = httpx.Timeout(10, read=5)
        with httpx.stream("GET", f"{url}/watch", params={"prefix": "", "since": since},
                          headers=headers, timeout=timeout) as response:
            assert response.status_code == 200, response.read()
            self.opened.set()
            try:
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith("data: "):
                        self.events.put(json.loads(line[6:]))
            except httpx.TransportError:
                return

    def take(self, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        got: list[dict[str, Any]] = []
        while len(got) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"only {len(got)} of {count} watch events arrived: {got}"
            try:
                got.append(self.events.get(timeout=left))
            except queue.Empty:
                continue
        return got

    def close(self) -> None:
        self._stop.set()


def cli(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([aether(), *args], cwd=directory, env=node_env(),
                          capture_output=True, text=True, timeout=60)


def run_cli(directory: Path, *args: str) -> str:
    done = cli(directory, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def write_manifest(directory: Path, name: str, storage: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "aether.toml"
    path.write_text(manifest(name, storage, None))
    return path



class Proxy:
    """127.0.0.1:<port> → ``upstream``, run on an event loop in a thread; ``cut()`` drops
    every connection and refuses new ones (the real server is never touched)."""

    def __init__(self, upstream_port: int) -> None:
        import asyncio

        self.upstream_port = upstream_port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: Any = None
        self._pipes: set[Any] = set()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        self._call(self._start())

    def _call(self, coro: Any) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _start(self) -> None:
        import asyncio

        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: Any, writer: Any) -> None:
        import asyncio
        import contextlib

        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1",
                                                                 self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._pipes |= {writer, up_writer}

        async def pump(src: Any, dst: Any) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def _cut(self) -> None:
        self._server.close()
        for pipe in self._pipes:
            pipe.transport.abort()
        self._pipes.clear()
        await self._server.wait_closed()

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._start())  # the same port again

    def close(self) -> None:
        import contextlib

        with contextlib.suppress(Exception):
            self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)


class OutageWriter(threading.Thread):
    """Compare-and-set writes of one config through HTTP until stopped; records what was
    acknowledged, every status and the slowest answer."""

    def __init__(self, url: str, headers: dict[str, str], name: str) -> None:
        super().__init__(daemon=True)
        self.url, self.headers, self.name = url, headers, name
        self.version = 1
        self.acked: dict[int, Any] = {}
        self.statuses: list[int] = []
        self.problems: list[httpx.Response] = []
        self.slowest = 0.0
        self.acked_after_restore = 0
        self.restored = threading.Event()
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(headers=self.headers, timeout=30) as client:
            n = 0
            while not self.halt.is_set():
                n += 1
                value = {"n": n}
                started = time.monotonic()
                try:
                    response = client.put(f"{self.url}/configs/{self.name}",
                                          json={"value": value},
                                          headers={"If-Match": f'"{self.version}"'})
                finally:
                    self.slowest = max(self.slowest, time.monotonic() - started)
                self.statuses.append(response.status_code)
                if response.status_code == 200:
                    self.version += 1
                    self.acked[self.version] = value
                    self.acked_after_restore += self.restored.is_set()
                elif response.status_code == 412:  # a write answered 503 did land after all
                    head = client.get(f"{self.url}/configs/{self.name}")
                    if head.status_code == 200:
                        self.version = head.json()["version"]
                else:
                    self.problems.append(response)
                    self.halt.wait(0.05)


def outage_under_write_load(node: Node, cut: Any, restore: Any, *, writers: int = 4,
                            down_for: float = 3.0, max_answer: float = 10.0
                            ) -> list[OutageWriter]:
    """The outage scenario every shared backend must pass, through a running node:
    ``writers`` threads keep doing compare-and-set PUTs (each on a config of its own)
    and a watcher follows over SSE; ``cut()`` takes the database away for ``down_for``
    seconds, ``restore()`` brings it back. Asserts: the node stays up; every failed write
    is a 503 problem+json; no answer takes longer than ``max_answer`` seconds; writes
    resume; every acknowledged version reads back as written; the watcher (resuming from
    its last revision if its stream ended) sees every version of every config once, in
    revision order, with no gap."""
    auth = node.headers()
    names = [f"load/{i}" for i in range(writers)]
    for name in names:
        assert httpx.post(f"{node.url}/configs", headers=auth, timeout=10, json={
            "name": name, "value": {"n": 0}}).status_code == 201
    watcher = Watcher(node.url, auth, 0)
    load = [OutageWriter(node.url, auth, name) for name in names]
    for writer in load:
        writer.start()

    def acked() -> int:
        return min(len(w.acked) for w in load)

    def resumed() -> int:
        return min(w.acked_after_restore for w in load)

    try:
        deadline = time.monotonic() + 15
        while acked() < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert acked() >= 3, f"no write load before the outage: {load[0].statuses}"
        cut()
        time.sleep(down_for)
        restore()
        for writer in load:
            writer.restored.set()
        deadline = time.monotonic() + 30
        while resumed() < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for writer in load:
            writer.halt.set()
        for writer in load:
            writer.join(max_answer + 20)
    assert not any(w.is_alive() for w in load), "a request hung"
    assert node.proc is not None and node.proc.poll() is None, "the node crashed"
    problems = [p for w in load for p in w.problems]
    assert problems, f"no write failed during the outage: {load[0].statuses}"
    for failed in problems:
        assert failed.status_code == 503, failed.text
        assert failed.headers["content-type"].startswith("application/problem+json")
        assert failed.json()["status"] == 503
    slowest = max(w.slowest for w in load)
    assert slowest < max_answer, f"an answer took {slowest:.1f} s"
    assert resumed() >= 3, f"writes did not resume after the outage: {load[0].statuses[-20:]}"

    # No acknowledged write lost: every acknowledged version reads back as written.
    final: dict[str, int] = {}
    with httpx.Client(base_url=node.url, headers=auth, timeout=10) as client:
        for writer in load:
            for version, value in writer.acked.items():
                got = client.get(f"/configs/{writer.name}?version={version}")
                assert got.status_code == 200 and got.json()["value"] == value, \
                    (writer.name, version)
            final[writer.name] = client.get(f"/configs/{writer.name}").json()["version"]

    # The events of these configs in the order received, over the first stream and
    # (whether or not it ended in the outage) one resumed from its last revision.
    seen: list[dict[str, Any]] = []

    def drain(source: Watcher) -> None:
        while not source.events.empty():
            event = source.events.get()
            if event.get("name") in final:
                seen.append(event)

    def complete() -> bool:
        got = {name: 0 for name in final}
        for event in seen:
            got[event["name"]] = event["version"]
        return got == final

    time.sleep(1)
    drain(watcher)
    watcher.close()
    tail = Watcher(node.url, auth, seen[-1]["revision"] if seen else 0)
    try:
        deadline = time.monotonic() + 15
        while not complete() and time.monotonic() < deadline:
            time.sleep(0.2)
            drain(tail)
    finally:
        tail.close()
    revisions = [e["revision"] for e in seen]
    assert revisions == sorted(set(revisions)), "watch events repeated or out of order"
    for name, top in final.items():
        assert [e["version"] for e in seen if e["name"] == name] == list(range(1, top + 1)), \
            name
    return load
