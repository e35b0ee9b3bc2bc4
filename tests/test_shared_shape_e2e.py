"""The shared-database shape end to end: two ``aether up`` processes over one Postgres
schema, one Redis key prefix, one S3 bucket prefix (moto over real HTTP).

A write through node A is read, and watched over SSE, through node B; concurrent
compare-and-set through both nodes lets exactly one writer win each version; an export
from a SQLite node imports into the shared backend with history and revisions intact;
the database goes away under a write load and comes back (Redis: a proxy cut; Postgres:
a private server really stopped and started), with the checks of
``outage_under_write_load``."""

from __future__ import annotations

import json
import threading
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
    outage_under_write_load,
    require_services,
    run_cli,
    write_manifest,
)

from aether_core.testing.servers import PrivatePostgres, moto_server

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


def test_a_redis_outage_answers_503_then_resumes_without_loss(tmp_path: Path) -> None:
    """Redis goes away behind a TCP proxy that is cut (the shared Redis keeps running)."""
    require_services("redis")
    store = Backend("redis")
    proxy = Proxy(6379)
    node = Node(tmp_path / "n", "outage-node", store.storage(
        url=f"redis://127.0.0.1:{proxy.port}/0", socket_timeout=1.0, connect_timeout=0.5,
        retries=1))
    try:
        node.start()
        outage_under_write_load(node, proxy.cut, proxy.restore)
    finally:
        node.stop()
        proxy.close()
        store.cleanup()


@pytest.mark.parametrize("mode", ["immediate", "fast"])
def test_a_stopped_postgres_answers_503_then_resumes_without_loss(
    tmp_path: Path, mode: str
) -> None:
    """A real server of the test's own is stopped (``pg_ctl stop -m immediate``: a crash,
    recovered from the WAL at the next start; ``fast``: clients disconnected, clean
    shutdown) under a write load, and started again. The timeouts bound every answer
    during the outage: connect 1 s, a pooled connection 2 s, a statement 3 s."""
    server = PrivatePostgres()
    node = Node(tmp_path / "n", "pg-outage-node", Backend("postgres").storage(
        dsn=server.dsn, connect_timeout=1, pool_timeout=2, statement_timeout=3))
    try:
        server.start()
        node.start()
        load = outage_under_write_load(node, lambda: server.stop(mode), server.start,
                                       max_answer=8)
        details = [p.json()["detail"] for w in load for p in w.problems]
        assert all(d.startswith("postgres postgres@127.0.0.1:") for d in details), details
    finally:
        node.stop()
        server.close()
