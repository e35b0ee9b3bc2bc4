"""The faults a run injects, one at a time: each picks its victim when injected
(the leader at that moment, a follower, the leader's link to a follower) and undoes
exactly what it did when healed."""

from __future__ import annotations

import random
import time
from typing import ClassVar

from aether_raft.testing.cluster import FaultCluster, Member
from aether_raft.testing.proxy import LinkProxy


class Fault:
    name: ClassVar[str] = "none"

    async def inject(self, cluster: FaultCluster, rng: random.Random) -> str:
        """Do the damage; returns what was done (for the report)."""
        return "nothing"

    async def heal(self, cluster: FaultCluster) -> None:
        """Undo it (restart, SIGCONT, heal links)."""


async def _follower(cluster: FaultCluster, leader: Member, rng: random.Random) -> Member:
    others = sorted((m for m in cluster.live() if m is not leader), key=lambda m: m.name)
    return rng.choice(others)


class KillLeader(Fault):
    name = "kill-leader"

    async def inject(self, cluster: FaultCluster, rng: random.Random) -> str:
        self.victim = await cluster.leader()
        self.victim.kill()
        return f"kill -9 {self.victim.name} (leader)"

    async def heal(self, cluster: FaultCluster) -> None:
        self.victim.start()


class KillFollower(Fault):
    name = "kill-follower"

    async def inject(self, cluster: FaultCluster, rng: random.Random) -> str:
        self.victim = await _follower(cluster, await cluster.leader(), rng)
        self.victim.kill()
        return f"kill -9 {self.victim.name} (follower)"

    async def heal(self, cluster: FaultCluster) -> None:
        self.victim.start()


class PauseLeader(Fault):
    name = "pause-leader"

    async def inject(self, cluster: FaultCluster, rng: random.Random) -> str:
        self.victim = await cluster.leader()
        self.victim.pause()
        return f"SIGSTOP {self.victim.name} (leader)"

    async def heal(self, cluster: FaultCluster) -> None:
        self.victim.resume()


class PartitionLeader(Fault):
    """Every link to and from the leader blackholed: it keeps running and serving HTTP,
    but hears nobody and nobody hears it."""

    name = "partition-leader"

    async def inject(self, cluster: FaultCluster, rng: random.Random) -> str:
        leader = await cluster.leader()
        self.cut = cluster.links_of(leader.name)
        for proxy in self.cut:
            proxy.blackhole()
        return f"blackhole every link of {leader.name} (leader)"

    async def heal(self, cluster: FaultCluster) -> None:
        for proxy in self.cut:
            proxy.heal()


class _OneLink(Fault):
    """The leader's link to one follower (what the leader sends it)."""

    async def _link(self, cluster: FaultCluster, rng: random.Random) -> LinkProxy:
        leader = await cluster.leader()
        follower = await _follower(cluster, leader, rng)
        self.proxy = cluster.link(leader.name, follower.name)
        return self.proxy

    async def heal(self, cluster: FaultCluster) -> None:
        self.proxy.heal()


class DropLink(_OneLink):
    name = "drop-link"

    async def inject(self, cluster: FaultCluster, rng: random.Random) -> str:
        proxy = await self._link(cluster, rng)
        proxy.drop()
        return f"drop {proxy.name} (leader to follower)"


class DelayLink(_OneLink):
    name = "delay-link"
    #: Well under the election timeout (1 s), so the follower is slow, not leaderless.
    seconds = 0.3
    jitter = 0.1

    async def inject(self, cluster: FaultCluster, rng: random.Random) -> str:
        proxy = await self._link(cluster, rng)
        proxy.delay(self.seconds, self.jitter)
        return f"delay {proxy.name} by {self.seconds * 1000:g} ± {self.jitter * 1000:g} ms"


class AddRemoveNode(Fault):
    """A new node is started (``join = true``) and added through a follower's admin API
    (a learner, then a voter once caught up); healing removes it through another
    follower and stops it. The cluster is one node larger for the fault's duration."""

    name = "add-remove-node"

    async def inject(self, cluster: FaultCluster, rng: random.Random) -> str:
        self.joined: Member | None = None
        via = await _follower(cluster, await cluster.leader(), rng)
        self.joined = await cluster.new_member(cluster.next_name())
        self.joined.start()
        started = time.monotonic()
        body = await cluster.add_member(self.joined, via)
        return (f"add {self.joined.name} through {via.name}: a voter of "
                f"{len(body.get('voters', ()))} in {time.monotonic() - started:.1f} s")

    async def heal(self, cluster: FaultCluster) -> None:
        if self.joined is None or self.joined.name not in cluster.members:
            return
        name = self.joined.name
        others = sorted((m for m in cluster.live() if m.name != name), key=lambda m: m.name)
        await cluster.remove_member(name, others[-1])


FAULTS: dict[str, type[Fault]] = {f.name: f for f in (
    Fault, KillLeader, KillFollower, PauseLeader, PartitionLeader, DropLink, DelayLink,
    AddRemoveNode)}
