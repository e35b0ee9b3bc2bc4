"""A 3-node Aether raft cluster on this machine, for ``raft_vs_etcd.sh``.

    .venv/bin/python bench/raft_cluster_bench.py serve ROOT INFO_FILE
        starts three ``aether up`` processes (SQLite, raft over loopback TCP, admin API),
        waits for a leader, seeds BENCH_NKEYS configs through it, writes
        ``{"leader": URL, "token": JWT, "pids": [...]}`` to INFO_FILE and runs until SIGTERM.

    .venv/bin/python bench/raft_cluster_bench.py transport [--duration 10] [--conns 16 64]
        the same three-node cluster without HTTP: three RaftTransports in this process over
        real loopback sockets, CONNS concurrent proposers on the leader; prints writes/s
        and p50/p99 per concurrency as JSON lines.

Each node fsyncs its raft log (and SQLite) before acknowledging, like etcd's WAL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from aether_raft.testing.cluster import Timing, raft_manifest

from aether_core.testing.processes import free_ports

PASSWORD = "raft-bench-admin-password"
SIGNING_KEY = "raft-bench-signing-key-0123456789abcdef"
CLUSTER_SECRET = "raft-bench-cluster-secret-0123456789"
NAMES = ("node-1", "node-2", "node-3")
VALUE = {"owner": "team-bench", "enabled": True, "replicas": 3, "data": "y" * 100}




def manifest(name: str, api: int, raft: dict[str, int]) -> str:
    peers = {n: f"127.0.0.1:{p}" for n, p in raft.items() if n != name}
    return raft_manifest(name, f"127.0.0.1:{raft[name]}", api, peers, Timing(), token_ttl=3600)


def call(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()[:300]
    except (urllib.error.URLError, ConnectionError):
        return 0, None


def serve(root: Path, info_file: Path) -> None:
    aether = str(Path(sys.executable).with_name("aether"))
    ports = free_ports(6)
    apis = dict(zip(NAMES, ports[:3], strict=True))
    raft = dict(zip(NAMES, ports[3:], strict=True))
    env = {**os.environ, "AETHER_ADMIN_PASSWORD": PASSWORD, "AETHER_SIGNING_KEY": SIGNING_KEY,
           "AETHER_CLUSTER_SECRET": CLUSTER_SECRET}
    procs: list[subprocess.Popen[bytes]] = []
    for name in NAMES:
        home = root / name
        home.mkdir(parents=True)
        (home / "aether.toml").write_text(manifest(name, apis[name], raft))
        with (home / "out.log").open("wb") as out:
            procs.append(subprocess.Popen(
                [aether, "up", "-m", "aether.toml", "--log-format", "json"],
                cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT))

    def stop(*_: Any) -> None:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    leader = ""
    deadline = time.monotonic() + 60
    while not leader and time.monotonic() < deadline:
        time.sleep(0.2)
        for name in NAMES:
            status, body = call("GET", f"http://127.0.0.1:{apis[name]}/ready")
            if status == 200 and isinstance(body, dict) and body.get("leader") == name:
                leader = f"http://127.0.0.1:{apis[name]}"
    if not leader:
        print("no leader within 60 s; logs in", root, file=sys.stderr)
        stop()
    status, body = call("POST", f"{leader}/login", {"username": "admin", "password": PASSWORD})
    if status != 200:
        sys.exit(f"login failed: {status} {body!r}")
    token = body["access_token"]
    for k in range(int(os.environ.get("BENCH_NKEYS", "1000"))):
        status, body = call("PUT", f"{leader}/configs/cfg-{k:05d}",
                            {"value": {"name": f"cfg-{k:05d}", "version": k, **VALUE}}, token)
        if status not in (200, 201):
            sys.exit(f"seed PUT failed: {status} {body!r}")
    info_file.write_text(json.dumps({"leader": leader, "token": token,
                                     "pids": [p.pid for p in procs]}))
    while True:
        time.sleep(1)
        for p in procs:
            if p.poll() is not None:
                print(f"a node exited ({p.args}); logs in {root}", file=sys.stderr)
                stop()


async def transport(duration: float, conns: list[int]) -> None:
    from aether_raft.transport import RaftSettings, RaftTransport

    from aether_core.commands import PutConfig
    from aether_core.providers import NodeInfo
    from aether_core.statemachine import StateMachine
    from aether_core.storage.sqlite import SqliteStorage

    ports = dict(zip(NAMES, free_ports(3), strict=True))
    with tempfile.TemporaryDirectory(prefix="raft-transport-bench-") as tmp:
        nodes: dict[str, RaftTransport] = {}
        storages: list[SqliteStorage] = []
        for name in NAMES:
            settings = RaftSettings.model_validate({
                "listen": f"127.0.0.1:{ports[name]}",
                "peers": {n: f"127.0.0.1:{p}" for n, p in ports.items() if n != name},
                "cluster_secret": CLUSTER_SECRET})
            home = Path(tmp) / name
            home.mkdir()
            storage = SqliteStorage(home / "aether.db")
            await storage.open()
            await storage.rely_on_log()  # as ConfigManager.start does for raft
            storages.append(storage)
            node = RaftTransport(settings, NodeInfo(name=name, data_dir=home))
            await node.start(StateMachine(storage))
            nodes[name] = node
        try:
            for node in nodes.values():
                await node.read_barrier()  # waits for a leader, up to leader_wait_ms
            leader = next(n for n in nodes.values() if n.leader().is_self)

            async def writer(w: int, stop_at: float, latencies: list[float]) -> None:
                i = 0
                while time.monotonic() < stop_at:
                    i += 1
                    started = time.perf_counter()
                    await leader.propose(PutConfig(name=f"cfg-{w:03d}-{i % 100:03d}",
                                                   value=VALUE))
                    latencies.append(time.perf_counter() - started)

            for c in conns:
                latencies: list[float] = []
                t0 = time.monotonic()
                await asyncio.gather(*(writer(w, t0 + duration, latencies) for w in range(c)))
                elapsed = time.monotonic() - t0
                q = statistics.quantiles(latencies, n=100)
                print(json.dumps({"bench": "aether-raft-transport-put", "conns": c,
                                  "writes_per_s": round(len(latencies) / elapsed),
                                  "p50_ms": round(q[49] * 1000, 2),
                                  "p99_ms": round(q[98] * 1000, 2)}), flush=True)
        finally:
            for node in nodes.values():
                await node.close()
            for storage in storages:
                await storage.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("root", type=Path)
    s.add_argument("info_file", type=Path)
    t = sub.add_parser("transport")
    t.add_argument("--duration", type=float, default=10)
    t.add_argument("--conns", type=int, nargs="+", default=[16, 64])
    args = parser.parse_args()
    if args.cmd == "serve":
        serve(args.root, args.info_file)
    else:
        asyncio.run(transport(args.duration, args.conns))


if __name__ == "__main__":
    main()
