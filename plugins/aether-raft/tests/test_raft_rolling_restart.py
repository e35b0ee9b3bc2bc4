"""Rolling restart of a 3-node cluster of ``aether up`` processes while clients write
and read through the admin API: each node in turn gets leadership moved away (when it
leads), a graceful SIGTERM, and a restart. Clients behave as docs/raft.md documents a
cluster client: each request to the next node of a list; on *connection refused* (the
request never reached a node) the same request to the next node, and so for a read
whose connection fails in any other way (a node that stops resets the connections still
in its accept queue; a read changes nothing). Every other error — 503, or a write's
connection reset — is a failed request; there must be none. Each client writes its own
key in sequence and reads it back after each write (read-your-writes on any node)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from raft_cluster_harness import Cluster, Member, until

CLIENTS = 3


@dataclass
class Client:
    index: int
    urls: list[str]
    auth: dict[str, str]
    written: int = 0  #: acknowledged writes (the key's version must equal this)
    ops: int = 0
    refused: int = 0  #: connection refused, sent again to the next node
    failures: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"roll/client-{self.index}"

    def request(self, http: httpx.Client, turn: int, method: str, path: str,
                **kw: Any) -> httpx.Response | None:
        for attempt in range(3 * len(self.urls)):
            url = self.urls[(turn + attempt) % len(self.urls)]
            try:
                return http.request(method, f"{url}{path}", **kw)
            except httpx.ConnectError:
                self.refused += 1  # nothing was sent: safe to send it elsewhere
                time.sleep(0.05)
            except httpx.TransportError as exc:
                if method == "GET":  # a read changes nothing: safe to send it elsewhere
                    self.refused += 1
                    time.sleep(0.05)
                    continue
                self.failures.append(f"{method} {url}{path}: {type(exc).__name__}: {exc}")
                return None
        self.failures.append(f"{method} {path}: every node refused the connection")
        return None

    def run(self, stop: threading.Event) -> None:
        # No keep-alive: a connection the server closes while idle could be reused at
        # that very moment; each request on a new connection is refused or served.
        with httpx.Client(headers=self.auth, timeout=40,
                          limits=httpx.Limits(max_keepalive_connections=0)) as http:
            turn = self.index
            while not stop.is_set():
                turn += 1
                n = self.written + 1
                r = self.request(http, turn, "PUT", f"/configs/{self.key}",
                                 json={"value": {"n": n}})
                self.ops += 1
                if r is None:
                    continue
                if r.status_code not in (200, 201) or r.json()["version"] != n:
                    self.failures.append(f"PUT #{n}: {r.status_code} {r.text[:300]}")
                    continue
                self.written = n
                turn += 1
                r = self.request(http, turn, "GET", f"/configs/{self.key}")
                self.ops += 1
                if r is None:
                    continue
                if r.status_code != 200 or r.json()["value"] != {"n": n}:
                    self.failures.append(f"GET after #{n}: {r.status_code} {r.text[:300]}")


def _applied(member: Member, auth: dict[str, str]) -> int:
    r = member.get("/cluster", auth)
    assert r.status_code == 200, r.text
    applied: int = r.json()["applied"]
    return applied


def test_rolling_restart_with_leader_transfer_fails_no_client_request(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3)
    c.start()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        c.leader()
        auth = c.auth()
        nodes = list(c.members.values())
        clients = [Client(i, [m.url for m in nodes], auth) for i in range(CLIENTS)]
        threads = [threading.Thread(target=cl.run, args=(stop,), daemon=True) for cl in clients]
        started = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(1)
        # node-1 leads at its turn: an operator's transfer to node-2 first (through
        # another node's API). node-2 then leads at its turn and is stopped with no
        # transfer: its graceful stop hands over by itself. node-3, if it leads at its
        # turn, gets a transfer to whichever voter is furthest ahead.
        transfers = handovers = 0
        if c.leader() is not nodes[0]:
            moved = httpx.post(f"{nodes[2].url}/cluster/leader", headers=auth, timeout=30,
                               json={"node": nodes[0].name})
            assert moved.status_code == 200 and moved.json()["leader"] == nodes[0].name
        for node in nodes:
            leader = c.leader()
            if leader is node and node is not nodes[1]:
                other = next(m for m in nodes if m is not node)
                body = {"node": nodes[1].name} if node is nodes[0] else {}
                moved = httpx.post(f"{other.url}/cluster/leader", headers=auth, timeout=30,
                                   json=body)
                assert moved.status_code == 200, moved.text
                assert moved.json()["leader"] != node.name
                transfers += 1
            handing_over = leader is node and node is nodes[1]
            node.stop()
            assert node.proc is not None and node.proc.returncode == 0, node.output()[-3000:]
            if handing_over:
                assert '"raft.handed_over"' in node.output(), node.output()[-3000:]
                handovers += 1
            time.sleep(1)  # clients keep going on two nodes
            node.start()
            until(f"{node.name} ready again", node.ready, 40)
            leader = c.leader()
            target = _applied(leader, auth)
            until(f"{node.name} caught up",
                  lambda n=node, t=target: _applied(n, auth) >= t, 30)  # type: ignore[misc]
        time.sleep(1)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        elapsed = time.monotonic() - started

        ops = sum(cl.ops for cl in clients)
        failures = [f for cl in clients for f in cl.failures]
        print(f"rolling restart: {ops} requests in {elapsed:.1f} s ({ops / elapsed:.0f}/s), "
              f"{sum(cl.refused for cl in clients)} refused connections re-sent, "
              f"{transfers} leader transfer(s), {handovers} hand-over(s) on SIGTERM, "
              f"{len(failures)} failed")
        assert not failures, failures[:10]
        assert transfers >= 1 and handovers == 1
        assert all(cl.written >= 10 for cl in clients), [cl.written for cl in clients]
        # Every acknowledged write is there exactly once, on every node.
        leader = c.leader()
        target = _applied(leader, auth)
        for m in nodes:
            until(f"{m.name} applied everything",
                  lambda m=m: _applied(m, auth) >= target, 20)  # type: ignore[misc]
            for cl in clients:
                r = m.get(f"/configs/{cl.key}?consistency=stale", auth)
                assert r.status_code == 200, r.text
                assert r.json()["version"] == cl.written, (m.name, cl.key, r.json())
                assert r.json()["value"] == {"n": cl.written}
        until("the same state digest on all three", lambda: len(
            {m.get("/cluster/state", auth).json()["sha256"] for m in nodes}) == 1, 20)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        c.stop_all()
