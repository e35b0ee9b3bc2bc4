"""Automatic log compaction on live ``aether up`` processes (``snapshot_every`` small): a
follower stopped while the leader compacted past its log catches up by InstallSnapshot
and converges to the same state digest; then reads with no leader: ``/ready`` is 503,
``?consistency=stale`` serves this node's copy, a linearizable read refuses (503)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from raft_cluster_harness import Cluster, Member, until

EVERY = 20
WRITES = 100


def _view(member: Member, auth: dict[str, str]) -> dict[str, Any]:
    r = member.get("/cluster", auth)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _digest(member: Member, auth: dict[str, str]) -> tuple[str, int]:
    r = member.get("/cluster/state", auth)
    assert r.status_code == 200, r.text
    return r.json()["sha256"], r.json()["applied_index"]


def test_a_follower_back_after_a_long_absence_catches_up_by_snapshot(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3, extra=f"snapshot_every = {EVERY}", leader_wait_ms=3000)
    c.start()
    try:
        leader = c.leader()
        auth = c.auth()
        away, other = [m for m in c.live() if m is not leader]
        first = httpx.put(f"{leader.url}/configs/app/k0", headers=auth, timeout=10,
                          json={"value": {"n": -1}})
        assert first.status_code == 201, first.text
        until(f"{away.name} has the first write", lambda: _view(away, auth)["applied"]
              >= _view(leader, auth)["applied"], 10)
        behind = _view(away, auth)["last_index"]
        away.stop()

        # More writes than the leader keeps in flight to a silent follower (64 messages),
        # so what it queued for the follower cannot bring it up to date on its own.
        with httpx.Client(headers=auth, timeout=15) as client:
            for i in range(WRITES):  # through the leader and a forwarding follower
                via = leader if i % 2 else other
                r = client.put(f"{via.url}/configs/app/k{i % 5}", json={"value": {"n": i}})
                assert r.status_code in (200, 201), r.text
        led = until("the leader compacted past the stopped follower's log", lambda: (
            (v := _view(leader, auth))["snapshot_index"] > behind and v), 10)
        assert led["snapshots_taken"] >= 2 and led["snapshot_every"] == EVERY
        assert led["last_index"] - led["snapshot_index"] < 2 * EVERY  # compacted as it goes

        away.start()
        until(f"{away.name} ready again", away.ready, 30)
        back = until(f"{away.name} caught up", lambda: (
            (v := _view(away, auth))["applied"] >= led["applied"] and v), 20)
        assert back["snapshots_installed"] >= 1, back
        assert '"raft.snapshot_installed"' in away.output()
        until("the same state digest on all three", lambda: len(
            {_digest(m, auth) for m in c.live()}) == 1, 20)
        got = away.get("/configs/app/k4", auth)
        assert got.status_code == 200 and got.json()["value"] == {"n": WRITES - 1}, got.text

        # Stop two nodes: the survivor has no leader (check-quorum makes a lone leader
        # step down too). /ready says so; a stale read is served; a linearizable one is not.
        survivor = away
        for m in c.live():
            if m is not survivor:
                m.stop()
        until(f"{survivor.name} not ready without a leader", lambda: httpx.get(
            f"{survivor.url}/ready", timeout=5).status_code == 503, 15)
        assert _view(survivor, auth)["leader"]["name"] is None
        stale = survivor.get("/configs/app/k4?consistency=stale", auth)
        assert stale.status_code == 200 and stale.json()["value"] == {"n": WRITES - 1}
        listed = survivor.get("/configs?prefix=app/&consistency=stale", auth)
        assert listed.status_code == 200 and len(listed.json()["items"]) == 5, listed.text
        started = time.monotonic()
        strict = survivor.get("/configs/app/k4", auth, timeout=20)
        assert strict.status_code == 503, strict.text
        assert strict.headers["content-type"].startswith("application/problem+json")
        assert time.monotonic() - started < 10  # bounded by leader_wait_ms, not hung
        bad = survivor.get("/configs/app/k4?consistency=sometimes", auth)
        assert bad.status_code == 400, bad.text
    finally:
        c.stop_all()
