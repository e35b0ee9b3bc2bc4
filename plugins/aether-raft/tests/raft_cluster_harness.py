"""``aether up`` processes forming a raft cluster on loopback (no proxies), driven
synchronously through the admin API: the e2e, operations and rolling-restart tests.

(The fault-injection tests use ``aether_raft.testing.cluster``, which puts a TCP fault
proxy on every link.)
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from aether_raft.testing.cluster import Timing, raft_manifest

from aether_core.testing.processes import AetherProcess, free_ports, until
from aether_core.testing.processes import aether_command as aether

PASSWORD = "raft-e2e-admin-password"
SIGNING_KEY = "raft-e2e-signing-key-0123456789abcdef0123"
CLUSTER_SECRET = "raft-e2e-cluster-secret-0123456789"
SECRETS = (PASSWORD, SIGNING_KEY, CLUSTER_SECRET)


class Member(AetherProcess):
    def __init__(self, root: Path, name: str, api: int, raft: int) -> None:
        super().__init__(root / name, url=f"http://127.0.0.1:{api}",
                         env={"AETHER_ADMIN_PASSWORD": PASSWORD,
                              "AETHER_SIGNING_KEY": SIGNING_KEY,
                              "AETHER_CLUSTER_SECRET": CLUSTER_SECRET})
        self.name = name
        self.api = api
        self.listen = f"127.0.0.1:{raft}"

    def configure(self, peers: dict[str, str], *, join: bool = False, extra: str = "",
                  leader_wait_ms: int = 30_000) -> None:
        self.write_manifest(raft_manifest(
            self.name, self.listen, self.api, peers, Timing(leader_wait_ms=leader_wait_ms),
            join=join, extra=extra, token_ttl=600))

    def start(self) -> None:  # type: ignore[override]  # the cluster waits for them all
        self.launch()

    def ready(self) -> dict[str, Any] | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"{self.name} exited: {self.output()[-3000:]}")
        response = httpx.get(f"{self.url}/ready", timeout=2)
        body: dict[str, Any] = response.json()
        return body if response.status_code == 200 and body.get("leader") else None

    def stop(self, timeout: float = 20) -> None:  # type: ignore[override]
        """SIGTERM (graceful: a leader hands over first); kill -9 if it hangs."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._close_log()

    def get(self, path: str, auth: dict[str, str], **kw: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers=auth, timeout=kw.pop("timeout", 10), **kw)


class Cluster:
    """Members node-1…node-N (all founders), plus any added later with :meth:`new`."""

    def __init__(self, root: Path, size: int = 3, *, extra: str = "",
                 leader_wait_ms: int = 30_000) -> None:
        self.root = root
        self.extra = extra
        self.leader_wait_ms = leader_wait_ms
        names = [f"node-{i}" for i in range(1, size + 1)]
        ports = free_ports(2 * size)
        self.members = {n: Member(root, n, ports[i], ports[size + i])
                        for i, n in enumerate(names)}
        for m in self.members.values():
            m.configure({o.name: o.listen for o in self.members.values() if o is not m},
                        extra=extra, leader_wait_ms=leader_wait_ms)
        self._auth: dict[str, str] | None = None

    def __getitem__(self, name: str) -> Member:
        return self.members[name]

    def start(self) -> None:
        for m in self.members.values():
            m.start()

    def new(self, name: str) -> Member:
        """A node that joins (not started): peers = the current members."""
        api, raft = free_ports(2)
        member = Member(self.root, name, api, raft)
        member.configure({m.name: m.listen for m in self.members.values()}, join=True,
                         extra=self.extra, leader_wait_ms=self.leader_wait_ms)
        self.members[name] = member
        return member

    def live(self) -> list[Member]:
        return [m for m in self.members.values() if m.alive]

    def leader(self, seconds: float = 40, among: list[Member] | None = None) -> Member:
        """Wait until every live member (or ``among``) is ready and names one leader."""
        group = among if among is not None else self.live()

        def agreed() -> str | None:
            seen = [m.ready() for m in group]
            names = {s["leader"] for s in seen if s}
            return names.pop() if all(seen) and len(names) == 1 else None

        return self.members[until("one leader agreed on by all", agreed, seconds)]

    def auth(self) -> dict[str, str]:
        if self._auth is None:
            url = self.live()[0].url

            def attempt() -> str | None:
                r = httpx.post(f"{url}/login", timeout=10,
                               json={"username": "admin", "password": PASSWORD})
                return r.json()["access_token"] if r.status_code == 200 else None

            self._auth = {"Authorization": f"Bearer {until('login', attempt, 30)}"}
        return self._auth

    def token(self) -> str:
        return self.auth()["Authorization"].split()[1]

    def cli(self, *args: str, url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [aether(), "cluster", *args, "--url", url], timeout=120, capture_output=True,
            text=True, env={**os.environ, "AETHER_TOKEN": self.token()})

    def stop_all(self) -> str:
        """Stop every node; returns their logs (checked for secrets and tracebacks)."""
        for m in self.members.values():
            m.stop()
        outputs = "".join(m.output() for m in self.members.values())
        for secret in SECRETS:
            assert secret not in outputs, "a secret is in a node's log"
        assert "Traceback" not in outputs, outputs[outputs.index("Traceback"):][:5000]
        return outputs
