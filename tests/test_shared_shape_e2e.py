"""The shared-database shape end to end: two ``aether up`` processes over one Postgres
schema, one Redis key prefix, one S3 bucket prefix (moto over real HTTP).

A write through node A is read, and watched over SSE, through node B; concurrent
compare-and-set through both nodes lets exactly one writer win each version; an export
from a SQLite node imports into the shared backend with history and revisions intact."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from shared_shape_helpers import (
    MOTO_SERVER,
    Backend,
    Node,
    Proxy,
    Watcher,
    require_services,
    run_cli,
    write_manifest,
)

from aether_core.testing.servers import moto_server

CAS_ROUNDS = 4


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server(MOTO_SERVER, "S3") as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def sqlite_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export of a SQLite node with history: updates and a delete."""
    directory = tmp_path_factory.mktemp("sqlite-node")
    node = Node(directory, "sqlite-node", 'use = "sqlite"').start()
    try:
        auth = node.headers()
        with httpx.Client(base_url=node.url, headers=auth, timeout=10) as client:
            for name in ("billing/db", "billing/cache", "search/index"):
                assert client.post("/configs", json={"name": name, "value": {"v": 1}}
                                   ).status_code == 201
            for version in (1, 2, 3):
                assert client.put("/configs/billing/db", headers={"If-Match": f'"{version}"'},
                                  json={"value": {"v": version + 1}}).status_code == 200
            assert client.delete("/configs/billing/cache").status_code == 200
    finally:
        node.stop()
    dump = directory / "export.jsonl"
    run_cli(directory, "export", "-m", "aether.toml", str(dump))
    return dump


@pytest.fixture(params=["postgres", "redis", "s3"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    kind: str = request.param
    require_services(kind)
    moto = request.getfixturevalue("moto_endpoint") if kind == "s3" else None
    store = Backend(kind, moto)
    try:
        yield store
    finally:
        store.cleanup(("", "_import"))


def _put(url: str, headers: dict[str, str], version: int, value: Any,
         results: list[httpx.Response], barrier: threading.Barrier) -> None:
    barrier.wait(5)
    results.append(httpx.put(f"{url}/configs/app/flags",
                             headers={**headers, "If-Match": f'"{version}"'},
                             json={"value": value}, timeout=20))


def test_two_nodes_share_one_store(backend: Backend, tmp_path: Path) -> None:
    # Both nodes start at once over the empty store: schema migration and the admin's
    # bootstrap race, and exactly one of each must win (the other node reads the result).
    a = Node(tmp_path / "a", "node-a", backend.storage())
    b = Node(tmp_path / "b", "node-b", backend.storage())
    try:
        a.launch(), b.launch()
        a.wait_ready(), b.wait_ready()
        auth_a, auth_b = a.headers(), b.headers()
        # The store is fresh (only the admin user, which /watch does not show): watch
        # node B from revision 0, opened before anything is written.
        watcher = Watcher(b.url, auth_b, 0)
        try:
            created = httpx.post(f"{a.url}/configs", headers=auth_a, timeout=10,
                                 json={"name": "app/flags", "value": {"on": True}})
            assert created.status_code == 201, created.text
            read = httpx.get(f"{b.url}/configs/app/flags", headers=auth_b, timeout=10)
            assert read.status_code == 200 and read.json()["value"] == {"on": True}
            event = [e for e in watcher.take(1) if e.get("name") == "app/flags"]
            assert event and event[0]["version"] == 1
            first_revision = event[0]["revision"]

            # Compare-and-set races through both nodes: exactly one wins each version.
            for version in range(1, CAS_ROUNDS + 1):
                results: list[httpx.Response] = []
                barrier = threading.Barrier(2)
                threads = [threading.Thread(target=_put, args=(
                    node.url, auth, version, {"by": node.url, "round": version}, results,
                    barrier)) for node, auth in ((a, auth_a), (b, auth_b))]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(30)
                statuses = sorted(r.status_code for r in results)
                assert statuses == [200, 412], [r.text for r in results]
                loser = next(r for r in results if r.status_code == 412)
                assert loser.headers["content-type"].startswith("application/problem+json")
                assert loser.json()["status"] == 412
                winner = next(r for r in results if r.status_code == 200)
                assert winner.headers["etag"] == f'"{version + 1}"'

            # Node B's watch saw every winning write, in order, with no gap.
            events = watcher.take(CAS_ROUNDS)
            assert [e["version"] for e in events] == list(range(2, CAS_ROUNDS + 2))
            revisions = [first_revision] + [e["revision"] for e in events]
            assert revisions == sorted(set(revisions))
            final = httpx.get(f"{a.url}/configs/app/flags", headers=auth_a, timeout=10).json()
            assert final["version"] == CAS_ROUNDS + 1
        finally:
            watcher.close()
    finally:
        b.stop()
        a.stop()
    logs = a.output() + b.output()
    assert logs.count("created the bootstrap admin user") == 1


def _records(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_sqlite_export_imports_into_the_shared_backend(
    backend: Backend, sqlite_export: Path, tmp_path: Path,
) -> None:
    write_manifest(tmp_path, "importer", backend.storage("_import"))
    out = run_cli(tmp_path, "import", "-m", "aether.toml", str(sqlite_export), "--json")
    assert json.loads(out)["revision"] == _records(sqlite_export)[0]["revision"]
    back = tmp_path / "back.jsonl"
    run_cli(tmp_path, "export", "-m", "aether.toml", str(back))
    original, round_trip = _records(sqlite_export), _records(back)
    assert round_trip == original
    history = [r for r in original[1:] if r.get("name") == "billing/db"]
    assert len(history) >= 4  # every version travelled, not just the head



class _Writer(threading.Thread):
    """Compare-and-set writes of one config through HTTP until stopped; records what was
    acknowledged, every status and the slowest answer."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = url, headers
        self.version = 1
        self.acked: dict[int, Any] = {}
        self.statuses: list[int] = []
        self.problems: list[httpx.Response] = []
        self.slowest = 0.0
        self.acked_after_restore = 0
        self.restored = threading.Event()
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(headers=self.headers, timeout=15) as client:
            n = 0
            while not self.halt.is_set():
                n += 1
                value = {"n": n}
                response = client.put(f"{self.url}/configs/load/counter", json={"value": value},
                                      headers={"If-Match": f'"{self.version}"'})
                self.slowest = max(self.slowest, response.elapsed.total_seconds())
                self.statuses.append(response.status_code)
                if response.status_code == 200:
                    self.version += 1
                    self.acked[self.version] = value
                    self.acked_after_restore += self.restored.is_set()
                elif response.status_code == 412:  # a write answered 503 did land after all
                    head = client.get(f"{self.url}/configs/load/counter")
                    if head.status_code == 200:
                        self.version = head.json()["version"]
                else:
                    self.problems.append(response)
                    self.halt.wait(0.05)


def test_a_redis_outage_answers_503_then_resumes_without_loss(tmp_path: Path) -> None:
    require_services("redis")
    store = Backend("redis")
    proxy = Proxy(6379)
    node = Node(tmp_path / "n", "outage-node", store.storage(
        url=f"redis://127.0.0.1:{proxy.port}/0", socket_timeout=1.0, connect_timeout=0.5,
        retries=1))
    try:
        node.start()
        auth = node.headers()
        assert httpx.post(f"{node.url}/configs", headers=auth, timeout=10, json={
            "name": "load/counter", "value": {"n": 0}}).status_code == 201
        watcher = Watcher(node.url, auth, 0)
        writer = _Writer(node.url, auth)
        writer.start()
        try:
            time.sleep(1.5)
            before = len(writer.acked)
            assert before > 0, writer.statuses
            proxy.cut()
            time.sleep(3)
            proxy.restore()
            writer.restored.set()
            deadline = time.monotonic() + 20
            while writer.acked_after_restore < 5 and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            writer.halt.set()
            writer.join(30)
        assert not writer.is_alive(), "a request hung"
        assert node.proc is not None and node.proc.poll() is None, "the node crashed"
        assert writer.problems, f"no write failed during the outage: {writer.statuses}"
        for failed in writer.problems:
            assert failed.status_code == 503, failed.text
            assert failed.headers["content-type"].startswith("application/problem+json")
            assert failed.json()["status"] == 503
        assert writer.slowest < 10, f"an answer took {writer.slowest:.1f} s"
        assert writer.acked_after_restore >= 5, "writes did not resume after the outage"

        # No acknowledged write lost: every acknowledged version reads back as written.
        with httpx.Client(base_url=node.url, headers=auth, timeout=10) as client:
            for version, value in writer.acked.items():
                got = client.get(f"/configs/load/counter?version={version}")
                assert got.status_code == 200 and got.json()["value"] == value, version
            final = client.get("/configs/load/counter").json()["version"]

        # The watcher (resuming from its last revision if its stream ended) saw every
        # version of the config exactly once, in order, with no gap.
        seen: dict[int, dict[str, Any]] = {}

        def drain(source: Watcher) -> None:
            while not source.events.empty():
                event = source.events.get()
                if event.get("name") == "load/counter":
                    seen[event["revision"]] = event

        time.sleep(1)
        drain(watcher)
        watcher.close()
        resumed = Watcher(node.url, auth, max(seen, default=0))
        try:
            deadline = time.monotonic() + 15
            while (not seen or seen[max(seen)]["version"] < final) \
                    and time.monotonic() < deadline:
                time.sleep(0.2)
                drain(resumed)
        finally:
            resumed.close()
        versions = [seen[r]["version"] for r in sorted(seen)]
        assert versions == list(range(1, final + 1))
    finally:
        node.stop()
        proxy.close()
        store.cleanup()
