"""Three ``aether up`` processes forming a raft cluster over loopback, talked to through
the admin API: replication, kill -9 of the leader, restart and catch-up."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from raft_cluster_harness import PASSWORD, Cluster, Member, aether, until

NAMES = ("node-1", "node-2", "node-3")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, Member]]:
    group = Cluster(tmp_path, 3)
    group.start()
    try:
        yield group.members
    finally:
        group.stop_all()


def _login(url: str) -> dict[str, str]:
    def attempt() -> str | None:
        r = httpx.post(f"{url}/login", json={"username": "admin", "password": PASSWORD},
                       timeout=10)
        return r.json()["access_token"] if r.status_code == 200 else None

    token = until(f"login on {url}", attempt, 30)
    return {"Authorization": f"Bearer {token}"}


def _value(url: str, auth: dict[str, str], name: str) -> Any:
    r = httpx.get(f"{url}/configs/{name}", headers=auth, timeout=10)
    return r.json() if r.status_code == 200 else None


def test_three_aether_up_processes_replicate_and_survive_a_leader_kill(
    cluster: dict[str, Member],
) -> None:
    for m in cluster.values():
        until(f"{m.name} ready with a leader", m.ready, 40)
    leader = until("one leader agreed on by all",
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
        [aether(), "cluster", "status", "--url", first.url], cwd=first.directory, timeout=60,
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

    second = cluster[until("a new leader", new_leader, 30)]
    follower = next(m for m in survivors if m is not second)

    def write_through_follower() -> httpx.Response | None:
        r = httpx.put(f"{follower.url}/configs/billing/db", headers=auth, timeout=15,
                      json={"value": {"port": 6543}})
        return r if r.status_code == 200 else None

    written = until("a write forwarded by a follower", write_through_follower, 20)
    assert written.json()["version"] == 2
    assert _value(second.url, auth, "billing/db")["value"] == {"port": 6543}

    # The killed node restarts from its log and catches up.
    first.start()
    until(f"{first.name} ready again", first.ready, 40)
    caught_up = until(f"{first.name} caught up", lambda: (
        (v := _value(first.url, auth, "billing/db")) is not None and v["version"] == 2 and v),
        30)
    assert caught_up["value"] == {"port": 6543}
