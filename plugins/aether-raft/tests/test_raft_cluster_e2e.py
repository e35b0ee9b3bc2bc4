"""Three ``aether up`` processes forming a raft cluster over loopback, talked to through
the admin API: replication, kill -9 of the leader, restart and catch-up."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

PASSWORD = "raft-e2e-admin-password"
SIGNING_KEY = "raft-e2e-signing-key-0123456789abcdef0123"
CLUSTER_SECRET = "raft-e2e-cluster-secret-0123456789"
NAMES = ("node-1", "node-2", "node-3")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [int(s.getsockname()[1]) for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _aether() -> str:
    found = Path(sys.executable).with_name("aether")
    if found.exists():
        return str(found)
    which = shutil.which("aether")
    assert which, "the aether command is not installed (pip install -e .)"
    return which


def _until(what: str, check: Callable[[], Any], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except httpx.TransportError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.1)
    pytest.fail(f"{what} within {seconds:g} s (last: {last!r})")


class Member:
    def __init__(self, root: Path, name: str, api: int, raft: dict[str, int]) -> None:
        self.name = name
        self.dir = root / name
        self.dir.mkdir()
        self.url = f"http://127.0.0.1:{api}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "out.log"
        peers = ", ".join(f'"{n}" = "127.0.0.1:{p}"' for n, p in raft.items() if n != name)
        (self.dir / "aether.toml").write_text(f"""
[node]
name = "{name}"
data_dir = "data"

[storage]
use = "sqlite"

[transport]
use = "raft"
listen = "127.0.0.1:{raft[name]}"
peers = {{ {peers} }}
cluster_secret = "${{env:AETHER_CLUSTER_SECRET}}"
election_timeout_ms = 1000
heartbeat_interval_ms = 100
leader_wait_ms = 30000

[auth]
use = "jwt"
signing_key = "${{env:AETHER_SIGNING_KEY}}"
token_ttl = 600

[[services]]
use = "admin"
listen = "127.0.0.1:{api}"
""")

    def start(self) -> None:
        env = {**os.environ, "AETHER_ADMIN_PASSWORD": PASSWORD,
               "AETHER_SIGNING_KEY": SIGNING_KEY, "AETHER_CLUSTER_SECRET": CLUSTER_SECRET}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [_aether(), "up", "-m", "aether.toml", "--log-format", "json"],
                cwd=self.dir, env=env, stdout=out, stderr=subprocess.STDOUT)

    def ready(self) -> dict[str, Any] | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"{self.name} exited: {self.output()[-3000:]}")
        response = httpx.get(f"{self.url}/ready", timeout=2)
        body: dict[str, Any] = response.json()
        return body if response.status_code == 200 and body.get("leader") else None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, Member]]:
    ports = _free_ports(6)
    raft = dict(zip(NAMES, ports[:3], strict=True))
    members = {n: Member(tmp_path, n, api, raft)
               for n, api in zip(NAMES, ports[3:], strict=True)}
    for m in members.values():
        m.start()
    try:
        yield members
    finally:
        for m in members.values():
            m.stop()
        outputs = "".join(m.output() for m in members.values())
        assert CLUSTER_SECRET not in outputs and PASSWORD not in outputs
        assert "Traceback" not in outputs, outputs[-5000:]


def _login(url: str) -> dict[str, str]:
    def attempt() -> str | None:
        r = httpx.post(f"{url}/login", json={"username": "admin", "password": PASSWORD},
                       timeout=10)
        return r.json()["access_token"] if r.status_code == 200 else None

    token = _until(f"login on {url}", attempt, 30)
    return {"Authorization": f"Bearer {token}"}


def _value(url: str, auth: dict[str, str], name: str) -> Any:
    r = httpx.get(f"{url}/configs/{name}", headers=auth, timeout=10)
    return r.json() if r.status_code == 200 else None


def test_three_aether_up_processes_replicate_and_survive_a_leader_kill(
    cluster: dict[str, Member],
) -> None:
    for m in cluster.values():
        _until(f"{m.name} ready with a leader", m.ready, 40)
    leader = _until("one leader agreed on by all",
                    lambda: len({m.ready()["leader"] for m in cluster.values()  # type: ignore[index]
                                 }) == 1 and cluster["node-1"].ready()["leader"], 20)  # type: ignore[index]
    first = cluster[leader]
    auth = _login(first.url)
    created = httpx.post(f"{first.url}/configs", headers=auth, timeout=10,
                         json={"name": "billing/db", "value": {"port": 5432}})
    assert created.status_code == 201, created.text
    # Readable (linearizably) through every node's API.
    for m in cluster.values():
        got = _value(m.url, auth, "billing/db")
        assert got is not None and got["value"] == {"port": 5432}, (m.name, got)

    # /cluster and `aether cluster status` describe the leader and its peers.
    view = httpx.get(f"{first.url}/cluster", headers=auth, timeout=10).json()
    assert view["role"] == "leader" and view["leader"]["is_self"] is True
    assert set(view["peers"]) == set(NAMES) - {leader}
    assert httpx.get(f"{first.url}/cluster", timeout=10).status_code == 401
    shown = subprocess.run(
        [_aether(), "cluster", "status", "--url", first.url], cwd=first.dir, timeout=60,
        env={**os.environ, "AETHER_TOKEN": auth["Authorization"].split()[1]},
        capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert f"leader   {leader}" in shown.stdout and "(leader, term" in shown.stdout

    # kill -9 the leader: the two others elect a new one; an acknowledged write survives.
    first.kill()
    survivors = [m for m in cluster.values() if m is not first]

    def new_leader() -> str | None:
        seen = {m.name: m.ready() for m in survivors}
        names = {s["leader"] for s in seen.values() if s}
        return names.pop() if len(names) == 1 and all(seen.values()) and \
            leader not in names else None

    second = cluster[_until("a new leader", new_leader, 30)]
    follower = next(m for m in survivors if m is not second)

    def write_through_follower() -> httpx.Response | None:
        r = httpx.put(f"{follower.url}/configs/billing/db", headers=auth, timeout=15,
                      json={"value": {"port": 6543}})
        return r if r.status_code == 200 else None

    written = _until("a write forwarded by a follower", write_through_follower, 20)
    assert written.json()["version"] == 2
    assert _value(second.url, auth, "billing/db")["value"] == {"port": 6543}

    # The killed node restarts from its log and catches up.
    first.start()
    _until(f"{first.name} ready again", first.ready, 40)
    caught_up = _until(f"{first.name} caught up", lambda: (
        (v := _value(first.url, auth, "billing/db")) is not None and v["version"] == 2 and v),
        30)
    assert caught_up["value"] == {"port": 6543}
