"""N ``aether up`` processes on loopback, every peer link through its own fault proxy.

Node A's manifest lists peer B at the address of proxy A→B, which forwards to B's
real listen port; so ``links[("node-1", "node-2")]`` controls exactly what node-1 sends
to node-2 (raft messages and forwarded writes). The proxies run in the caller's event
loop; the nodes are child processes the cluster owns (kill -9, SIGSTOP/SIGCONT,
restart on the same data directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from aether_core.testing.processes import AetherProcess, free_ports
from aether_raft.testing.proxy import LinkProxy

PASSWORD = "raft-faults-admin-password"
SIGNING_KEY = "raft-faults-signing-key-0123456789abcdef"
CLUSTER_SECRET = "raft-faults-cluster-secret-0123456789"


#: How uvicorn ends a request still running at the end of its graceful shutdown.
SHUTDOWN_CANCEL = "CancelledError: Task cancelled, timeout graceful shutdown exceeded"


def tracebacks(output: str) -> list[str]:
    """Each traceback in a node's output, up to the line naming the exception."""
    found = []
    for part in output.split("Traceback (most recent call last):")[1:]:
        lines = part.splitlines()
        end = next((i for i, line in enumerate(lines[1:], 1)
                    if line and not line.startswith(" ")), len(lines) - 1)
        found.append("\n".join(lines[:end + 1]))
    return found


class ClusterError(AssertionError):
    """The cluster did not reach a state in time (a test failure, with the reason)."""


@dataclass
class Timing:
    election_timeout_ms: int = 1000
    heartbeat_interval_ms: int = 100
    #: The default. It also bounds a node's start-up (the admin bootstrap is a write):
    #: at 3 s a node of 5 started on this loaded machine sometimes gave up while the
    #: first elections settled. Clients give up sooner anyway (``op_timeout``).
    leader_wait_ms: int = 15_000


def raft_manifest(name: str, listen: str, api_port: int, peers: dict[str, str],
                  timing: Timing, *, join: bool = False, extra: str = "",
                  token_ttl: int = 86400) -> str:
    """A raft node's manifest: SQLite, the admin API on ``api_port``, secrets from the
    environment (``AETHER_CLUSTER_SECRET``, ``AETHER_SIGNING_KEY``); ``extra`` goes
    into the ``[transport]`` table."""
    listed = ", ".join(f'"{n}" = "{a}"' for n, a in sorted(peers.items()))
    return f"""
[node]
name = "{name}"
data_dir = "data"

[storage]
use = "sqlite"

[transport]
use = "raft"
listen = "{listen}"
peers = {{ {listed} }}
cluster_secret = "${{env:AETHER_CLUSTER_SECRET}}"
election_timeout_ms = {timing.election_timeout_ms}
heartbeat_interval_ms = {timing.heartbeat_interval_ms}
leader_wait_ms = {timing.leader_wait_ms}
join = {"true" if join else "false"}
{extra}

[auth]
use = "jwt"
signing_key = "${{env:AETHER_SIGNING_KEY}}"
token_ttl = {token_ttl}

[[services]]
use = "admin"
listen = "127.0.0.1:{api_port}"
"""


class Member(AetherProcess):
    def __init__(self, root: Path, name: str, api_port: int, raft_port: int) -> None:
        super().__init__(root / name, url=f"http://127.0.0.1:{api_port}",
                         env={"AETHER_ADMIN_PASSWORD": PASSWORD,
                              "AETHER_SIGNING_KEY": SIGNING_KEY,
                              "AETHER_CLUSTER_SECRET": CLUSTER_SECRET})
        self.name = name
        self.api_port = api_port
        self.raft_port = raft_port
        self.listen = f"127.0.0.1:{raft_port}"
        self.paused = False

    def configure(self, peers: dict[str, str], timing: Timing, *, join: bool = False) -> None:
        self.write_manifest(raft_manifest(self.name, self.listen, self.api_port, peers, timing,
                                          join=join))

    def start(self) -> None:  # type: ignore[override]  # the cluster waits for them all
        if not self.alive:
            self.launch()
        self.paused = False

    def kill(self) -> None:
        """kill -9 (a crash: nothing is flushed that was not fsync'd)."""
        super().kill()
        self.paused = False

    def pause(self) -> None:
        super().pause()
        self.paused = True

    def resume(self) -> None:
        if self.alive:
            super().resume()
        self.paused = False

    def stop(self) -> None:  # type: ignore[override]
        """SIGTERM (a paused node is resumed first); kill -9 if it hangs."""
        if self.alive:
            assert self.proc is not None
            self.resume()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._close_log()


class FaultCluster:
    """``size`` nodes named node-1…node-N; see the module docstring."""

    def __init__(self, root: Path, size: int, *, timing: Timing | None = None) -> None:
        self.root = root
        self.timing = timing or Timing()
        self.members: dict[str, Member] = {}
        self.retired: list[Member] = []  #: removed members (their logs are still checked)
        self.links: dict[tuple[str, str], LinkProxy] = {}
        self.http = httpx.AsyncClient(timeout=5.0)
        self.token: str | None = None
        names = [f"node-{i}" for i in range(1, size + 1)]
        ports = free_ports(2 * size)
        for i, name in enumerate(names):
            self.members[name] = Member(root, name, ports[i], ports[size + i])

    # -- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        for name in self.members:
            await self._wire(name)
        for name, member in self.members.items():
            member.configure(self._peer_addresses(name), self.timing)
        for member in self.members.values():
            member.start()

    async def _wire(self, name: str) -> None:
        """Proxies for every link between ``name`` and the other members, both ways."""
        for other in list(self.members):
            for src, dst in ((name, other), (other, name)):
                if src != dst and (src, dst) not in self.links:
                    proxy = await self._proxy(f"{src}->{dst}", self.members[dst].listen)
                    self.links[(src, dst)] = proxy

    async def _proxy(self, name: str, target: str) -> LinkProxy:
        """A started proxy whose port is none of the members' ports: those were only
        probed free (the nodes bind them later), so the OS may hand one out again."""
        reserved = {p for m in self.members.values() for p in (m.api_port, m.raft_port)}
        held = []
        try:
            while True:
                proxy = LinkProxy(name, target)
                await proxy.start()
                if proxy.port not in reserved:
                    return proxy
                held.append(proxy)  # keep it bound while trying again, then let it go
        finally:
            for proxy in held:
                await proxy.close()

    def _peer_addresses(self, name: str) -> dict[str, str]:
        return {dst: proxy.address for (src, dst), proxy in self.links.items()
                if src == name and dst in self.members}

    async def close(self) -> list[str]:
        """Stop every node and proxy; returns problems seen in the nodes' logs."""
        # All at once: each may wait out uvicorn's graceful timeout for hung requests.
        await asyncio.gather(*(asyncio.to_thread(m.stop) for m in self.members.values()))
        for proxy in self.links.values():
            await proxy.close()
        await self.http.aclose()
        problems = []
        for member in [*self.members.values(), *self.retired]:
            out = member.output()
            for secret in (CLUSTER_SECRET, PASSWORD, SIGNING_KEY):
                if secret in out:
                    problems.append(f"{member.name}: a secret is in its log")
            for trace in tracebacks(out):
                if not trace.rstrip().endswith(SHUTDOWN_CANCEL):
                    problems.append(f"{member.name}: traceback in its log: {trace[-3000:]}")
        return problems

    def hung_at_shutdown(self) -> int:
        """Requests the nodes were still serving when they stopped (uvicorn cancels them
        after its graceful timeout and logs each one)."""
        return sum(trace.rstrip().endswith(SHUTDOWN_CANCEL)
                   for m in [*self.members.values(), *self.retired]
                   for trace in tracebacks(m.output()))

    # -- membership (aether cluster add/remove, through the admin API) ----------------

    def next_name(self) -> str:
        """A name no member ever had (a removed node's data directory stays behind)."""
        taken = [int(n.rpartition("-")[2]) for n in [*self.members, *(
            m.name for m in self.retired)]]
        return f"node-{max(taken) + 1}"

    async def new_member(self, name: str) -> Member:
        """A node not started yet whose manifest joins the cluster, dialling every member
        through a proxy of its own. Members dial it directly: the replicated configuration
        holds one address per added node, the same for every member."""
        api, raft = free_ports(2)
        member = Member(self.root, name, api, raft)
        others = list(self.members.items())
        self.members[name] = member  # first, so its ports are kept from the proxies
        for other, target in others:
            self.links[(name, other)] = await self._proxy(f"{name}->{other}", target.listen)
        member.configure(self._peer_addresses(name), self.timing, join=True)
        return member

    async def add_member(self, member: Member, via: Member, seconds: float = 40.0
                         ) -> dict[str, Any]:
        """``POST /cluster/members`` through ``via`` until ``member`` is a voter (202
        means still a learner: asking again resumes the promotion)."""
        async def attempt() -> dict[str, Any] | None:
            try:
                r = await self.http.post(f"{via.url}/cluster/members", headers=self.auth(),
                                         json={"node": member.name, "address": member.listen},
                                         timeout=30)
            except httpx.HTTPError:
                return None
            if r.status_code == 201:
                body: dict[str, Any] = r.json()
                return body
            if r.status_code in (202, 409, 503):  # learner, change in flight, no leader
                return None
            raise ClusterError(f"adding {member.name}: {r.status_code} {r.text[:300]}")

        added: dict[str, Any] = await self.until(f"{member.name} added as a voter", attempt,
                                                 seconds)
        return added

    async def remove_member(self, name: str, via: Member, seconds: float = 40.0) -> None:
        """``DELETE /cluster/members/NAME`` through ``via``; then the node is stopped and
        forgotten (its proxies closed)."""
        async def attempt() -> bool:
            try:
                r = await self.http.delete(f"{via.url}/cluster/members/{name}",
                                           headers=self.auth(), timeout=30)
            except httpx.HTTPError:
                return False
            if r.status_code in (200, 404):  # 404: already gone (an earlier try landed)
                return True
            if r.status_code in (409, 503):
                return False
            raise ClusterError(f"removing {name}: {r.status_code} {r.text[:300]}")

        await self.until(f"{name} removed", attempt, seconds)
        member = self.members.pop(name)
        await asyncio.to_thread(member.stop)
        self.retired.append(member)
        for key in [k for k in self.links if name in k]:
            await self.links.pop(key).close()

    # -- views -------------------------------------------------------------------------

    def live(self) -> list[Member]:
        return [m for m in self.members.values() if m.alive and not m.paused]

    def link(self, src: str, dst: str) -> LinkProxy:
        return self.links[(src, dst)]

    def links_of(self, name: str) -> list[LinkProxy]:
        return [p for (src, dst), p in self.links.items() if name in (src, dst)]

    def auth(self) -> dict[str, str]:
        assert self.token is not None, "login() first"
        return {"Authorization": f"Bearer {self.token}"}

    async def _get(self, member: Member, path: str, *, timeout: float = 3.0
                   ) -> httpx.Response | None:
        headers = self.auth() if self.token else {}
        try:
            return await self.http.get(f"{member.url}{path}", headers=headers,
                                       timeout=timeout)
        except httpx.HTTPError:
            return None

    async def ready(self, member: Member) -> str | None:
        """The leader ``member`` knows, if it is ready."""
        if member.proc is not None and member.proc.poll() is not None:
            raise ClusterError(f"{member.name} exited: {member.output()[-3000:]}")
        r = await self._get(member, "/ready")
        if r is None or r.status_code != 200:
            return None
        leader: str | None = r.json().get("leader")
        return leader

    async def until(self, what: str, check: Any, seconds: float) -> Any:
        deadline = time.monotonic() + seconds
        last: Any = None
        while time.monotonic() < deadline:
            last = await check()
            if last:
                return last
            await asyncio.sleep(0.1)
        raise ClusterError(f"{what} within {seconds:g} s (last: {last!r})")

    async def agreed_leader(self, seconds: float = 30.0) -> str:
        """Wait until every member is ready and names the same leader."""
        async def check() -> str | None:
            names = {await self.ready(m) for m in self.members.values()}
            return names.pop() if len(names) == 1 else None

        leader: str = await self.until("every node ready with one leader", check, seconds)
        return leader

    async def leader(self, seconds: float = 30.0) -> Member:
        """The member that says it is the leader (among live ones)."""
        async def check() -> Member | None:
            for m in self.live():
                r = await self._get(m, "/cluster")
                if r is not None and r.status_code == 200 and r.json().get("role") == "leader":
                    return m
            return None

        found: Member = await self.until("a leader", check, seconds)
        return found

    async def login(self) -> None:
        async def attempt() -> str | None:
            for m in self.live():
                try:
                    r = await self.http.post(f"{m.url}/login", timeout=10, json={
                        "username": "admin", "password": PASSWORD})
                except httpx.HTTPError:
                    continue
                if r.status_code == 200:
                    token: str = r.json()["access_token"]
                    return token
            return None

        self.token = await self.until("an admin login", attempt, 30)

    async def states(self) -> dict[str, dict[str, Any] | None]:
        """Every member's ``/cluster/state`` (None when it does not answer)."""
        out: dict[str, dict[str, Any] | None] = {}
        for m in self.members.values():
            r = await self._get(m, "/cluster/state", timeout=10)
            out[m.name] = r.json() if r is not None and r.status_code == 200 else None
        return out

    async def converged(self, seconds: float = 30.0) -> dict[str, Any]:
        """Wait until every member's store digest is the same; returns that state."""
        async def check() -> dict[str, Any] | None:
            seen = await self.states()
            values = list(seen.values())
            if any(v is None for v in values):
                return None
            if len({(v["sha256"], v["revision"]) for v in values if v}) == 1:
                return values[0]
            return None

        try:
            state: dict[str, Any] = await self.until("every node's state digest equal",
                                                     check, seconds)
        except ClusterError:
            raise ClusterError(f"nodes did not converge: {await self.states()}") from None
        return state

    def heal_all(self) -> None:
        """Every link healed, every member running (resumed or restarted)."""
        for proxy in self.links.values():
            proxy.heal()
        for m in self.members.values():
            if m.paused:
                m.resume()
            if not m.alive:
                m.start()

    async def __aenter__(self) -> FaultCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self.close()
