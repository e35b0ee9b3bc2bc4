"""Cluster operations on live ``aether up`` processes: add (learner, then voter), remove,
transfer leadership, through the CLI and the admin API, on followers as on the leader;
and the errors (400, 401, 403, 404, 409) as problem+json and one CLI line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from raft_cluster_harness import Cluster, Member, until


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    return body


def _cluster(member: Member, auth: dict[str, str]) -> dict[str, Any]:
    r = member.get("/cluster", auth)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_add_a_node_promote_it_transfer_leadership_to_it_and_remove_it(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3)
    c.start()
    try:
        leader = c.leader()
        follower = next(m for m in c.live() if m is not leader)
        auth = c.auth()
        created = httpx.post(f"{leader.url}/configs", headers=auth, timeout=10,
                             json={"name": "app/db", "value": {"port": 1}})
        assert created.status_code == 201, created.text

        # Bad input changes nothing: 400, 404, 409, 401, 403 (a viewer is not an admin).
        members = f"{follower.url}/cluster/members"
        _problem(httpx.post(members, headers=auth, timeout=10,
                            json={"node": "node-4", "address": "nowhere"}), 400)
        _problem(httpx.post(members, headers=auth, timeout=10,
                            json={"node": "no/slash", "address": "127.0.0.1:1"}), 400)
        _problem(httpx.delete(f"{members}/node-9", headers=auth, timeout=10), 404)
        _problem(httpx.post(members, headers=auth, timeout=10,
                            json={"node": "node-2", "address": "127.0.0.1:1"}), 409)
        _problem(httpx.post(f"{follower.url}/cluster/leader", headers=auth, timeout=10,
                            json={"node": "node-9"}), 404)
        _problem(httpx.post(members, timeout=10,
                            json={"node": "node-4", "address": "127.0.0.1:1"}), 401)
        viewer = httpx.post(f"{leader.url}/users", headers=auth, timeout=10, json={
            "username": "watcher", "password": "watcher-password-123", "roles": ["viewer"]})
        assert viewer.status_code == 201, viewer.text
        token = httpx.post(f"{leader.url}/login", timeout=10, json={
            "username": "watcher", "password": "watcher-password-123"}).json()["access_token"]
        _problem(httpx.post(members, headers={"Authorization": f"Bearer {token}"}, timeout=10,
                            json={"node": "node-4", "address": "127.0.0.1:1"}), 403)
        failed = c.cli("remove", "node-9", url=follower.url)
        assert failed.returncode != 0 and failed.stdout == ""
        assert failed.stderr.strip().count("\n") == 0 and "404" in failed.stderr, failed.stderr
        assert _cluster(leader, auth)["voters"] == ["node-1", "node-2", "node-3"]

        # node-4 starts with join = true (it waits, it does not bootstrap), then is added
        # through a follower's CLI: a learner, it catches up, it is promoted.
        node4 = c.new("node-4")
        node4.start()
        added = c.cli("add", "node-4", node4.listen, "--json", url=follower.url)
        assert added.returncode == 0, added.stderr
        body = json.loads(added.stdout)
        assert body["role"] == "voter" and set(body["voters"]) == {
            "node-1", "node-2", "node-3", "node-4"}, body
        assert body["voters"]["node-4"] == node4.listen
        until("node-4 ready", node4.ready, 30)
        got = node4.get("/configs/app/db", auth)  # linearizable through the new node
        assert got.status_code == 200 and got.json()["value"] == {"port": 1}, got.text
        view = _cluster(node4, auth)
        assert view["role"] == "follower" and len(view["voters"]) == 4
        assert set(view["peers"]) == {"node-1", "node-2", "node-3"}
        _problem(httpx.post(members, headers=auth, timeout=10,
                            json={"node": "node-4", "address": node4.listen}), 409)

        # Leadership handed to the new node (CLI on a follower), then back by the API.
        moved = c.cli("transfer-leader", "node-4", url=follower.url)
        assert moved.returncode == 0, moved.stderr
        assert "leader node-4" in moved.stdout, moved.stdout
        assert c.leader() is node4
        wrote = httpx.put(f"{follower.url}/configs/app/db", headers=auth, timeout=15,
                          json={"value": {"port": 2}})
        assert wrote.status_code == 200 and wrote.json()["version"] == 2, wrote.text
        back = httpx.post(f"{node4.url}/cluster/leader", headers=auth, timeout=30, json={})
        assert back.status_code == 200 and back.json()["leader"] != "node-4", back.text
        new_leader = c.leader()
        assert new_leader is not node4

        # Removed through a node that is not the leader; the three go on without it.
        removed = httpx.delete(f"{node4.url}/cluster/members/node-4", headers=auth, timeout=30)
        assert removed.status_code == 200, removed.text
        assert set(removed.json()["voters"]) == {"node-1", "node-2", "node-3"}
        # The leader told node-4: it stops serving at once (no request waits on it).
        until("node-4 not ready once removed", lambda: httpx.get(
            f"{node4.url}/ready", timeout=5).status_code == 503, 10)
        refused = httpx.put(f"{node4.url}/configs/app/db", headers=auth, timeout=15,
                            json={"value": {"port": -1}})
        assert "was removed from the cluster" in _problem(refused, 503)["detail"]
        assert '"raft.removed"' in node4.output()
        node4.stop()
        founders = [c["node-1"], c["node-2"], c["node-3"]]
        c.leader(among=founders)
        wrote = httpx.put(f"{founders[0].url}/configs/app/db", headers=auth, timeout=15,
                          json={"value": {"port": 3}})
        assert wrote.status_code == 200 and wrote.json()["version"] == 3, wrote.text
        for m in founders:
            view = _cluster(m, auth)
            assert view["voters"] == ["node-1", "node-2", "node-3"] and not view["learners"]
            # After a short grace (its last messages), a removed node is no peer any more.
            until(f"{m.name} forgets node-4",
                  lambda m=m: "node-4" not in _cluster(m, auth)["peers"], 10)  # type: ignore[misc]
    finally:
        c.stop_all()
