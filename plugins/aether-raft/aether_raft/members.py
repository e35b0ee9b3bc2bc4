"""Cluster membership at run time: ``aether cluster add|remove|transfer-leader``.

The leader runs every operation; a follower forwards it over the peer connection (as it
does writes) and answers with the leader's result, so any node's admin API takes them.

Adding a node follows etcd's learner flow: the node is added as a *learner* (it gets
the log, or a snapshot, but does not vote, so a slow new node cannot cost the cluster
its quorum), the leader waits until its log has caught up with the commit index, then
promotes it to voter — one configuration change at a time, each committed before the
next. If it does not catch up in time the answer says ``role: learner``; running the
same ``add`` again resumes the promotion.

The address of an added node is part of the replicated configuration, so every node
(and any later leader) can reach it; each node connects to the members of the current
configuration, and drops a removed one (whose later connections are refused).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aether_core.errors import AetherError, BadRequest, NotFound, Unavailable
from aether_raft.core import ConfChangeOp, ConfChangeRejected, Role
from aether_raft.network import PeerNetwork, split_address

if TYPE_CHECKING:
    from aether_raft.driver import RaftDriver

NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class MembershipConflict(AetherError):
    """The change conflicts with the membership now (another change pending, already a
    member, a learner that has not caught up …)."""

    status, code, title = 409, "membership-conflict", "Membership change conflict"


#: How a forwarded operation's HTTP status turns back into the same error.
ERRORS: dict[int, type[AetherError]] = {
    400: BadRequest, 404: NotFound, 409: MembershipConflict, 503: Unavailable}


#: A removed member stays connected this long: the leader's last heartbeat (the commit
#: of its removal) and the answer to its own ``remove`` request still reach it.
REMOVED_GRACE_SECONDS = 3.0


class MemberNetwork(PeerNetwork):
    """The peer network, plus connecting to (and refusing) members as they change."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._leaving: dict[str, asyncio.TimerHandle] = {}

    def set_peers(self, peers: dict[str, str]) -> None:
        """Dial the members in ``peers`` (new ones and moved addresses), forget the rest
        (after a grace period)."""
        loop = asyncio.get_running_loop()
        for name in [n for n in self.peers if n not in peers and n not in self._leaving]:
            self._leaving[name] = loop.call_later(REMOVED_GRACE_SECONDS, self._forget, name)
        for name, address in peers.items():
            if (timer := self._leaving.pop(name, None)) is not None:
                timer.cancel()
            if self.peers.get(name) == address:
                continue
            if name in self.peers:
                self._stop_dialling(name)
            self.peers[name] = address
            self._queues[name] = asyncio.Queue(self._queue_size)
            self._spawn(self._dial_loop(name), f"raft-dial-{name}")

    async def close(self) -> None:
        for timer in self._leaving.values():
            timer.cancel()
        await super().close()

    def _forget(self, name: str) -> None:
        self._leaving.pop(name, None)
        self.peers.pop(name, None)  # its inbound connections are refused from now on
        self._queues.pop(name, None)
        self.connected.discard(name)
        self._stop_dialling(name)

    def _stop_dialling(self, name: str) -> None:
        for task in list(self._tasks):
            if task.get_name() == f"raft-dial-{name}":
                task.cancel()

    @property
    def _queue_size(self) -> int:
        sizes = [q.maxsize for q in self._queues.values()]
        return max(sizes) if sizes else 1024


def check_node(node: str) -> None:
    if not NODE_NAME.match(node):
        raise BadRequest(f"{node!r} is not a node name (letters, digits, '.', '_', '-'; "
                         "at most 63 characters)")


def check_address(address: str) -> None:
    try:
        split_address(address)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


class ClusterOps:
    """The operations as the leader runs them."""

    def __init__(self, driver: RaftDriver, *, leader_wait: float, catch_up_wait: float,
                 transfer_wait: float, peers: dict[str, str],
                 removed: Callable[[str], None] | None = None) -> None:
        self.driver = driver
        #: Called with a node's name once its removal is committed (to tell it).
        self.removed = removed
        self.leader_wait = leader_wait
        self.transfer_wait = transfer_wait
        self.catch_up_wait = catch_up_wait
        self.peers = peers  # the manifest's (founders' addresses)

    def _members(self) -> dict[str, Any]:
        core = self.driver.core
        conf = core.conf
        addresses = {**dict(conf.addresses), **self.peers}
        return {
            "voters": {n: addresses.get(n) for n in conf.voters},
            "learners": {n: addresses.get(n) for n in conf.learners},
        }

    async def run(self, op: str, node: str = "", address: str = "") -> dict[str, Any]:
        try:
            if op == "add":
                return await self.add(node, address)
            if op == "remove":
                return await self.remove(node)
            if op == "transfer":
                return await self.transfer(node or None)
        except ConfChangeRejected as exc:
            raise MembershipConflict(str(exc)) from None
        raise BadRequest(f"unknown cluster operation {op!r}")

    async def add(self, node: str, address: str) -> dict[str, Any]:
        check_node(node)
        check_address(address)
        core = self.driver.core
        known = dict(core.conf.addresses)
        if node in core.conf.voters:
            raise MembershipConflict(f"{node} is already a voter")
        if node in core.conf.learners:
            if known.get(node, address) != address:
                raise MembershipConflict(f"{node} is a learner at {known[node]}, not {address}")
        else:
            await self._committed_term()
            await self.driver.change_membership(ConfChangeOp.ADD_LEARNER, node, address)
        if not await self._caught_up(node):
            return {"node": node, "address": address, "role": "learner", **self._members(),
                    "detail": f"{node} has not caught up with the log in "
                              f"{self.catch_up_wait:g} s; start it (join = true), then run "
                              "the same add again to promote it"}
        await self.driver.change_membership(ConfChangeOp.ADD_VOTER, node)
        return {"node": node, "address": address, "role": "voter", **self._members()}

    async def remove(self, node: str) -> dict[str, Any]:
        check_node(node)
        core = self.driver.core
        if node not in core.conf.members():
            raise NotFound(f"{node} is not a member of the cluster")
        await self._committed_term()
        await self.driver.change_membership(ConfChangeOp.REMOVE, node)
        if self.removed is not None and node != core.id:
            self.removed(node)
        return {"node": node, "removed": True, **self._members()}

    async def transfer(self, target: str | None) -> dict[str, Any]:
        core = self.driver.core
        if target is None:
            target = self.best_successor()
            if target is None:
                raise MembershipConflict("there is no other voter to transfer leadership to")
        check_node(target)
        if target == core.id:
            return {"leader": core.id, "term": core.term, "transferred": False}
        if target not in core.conf.members():
            raise NotFound(f"{target} is not a member of the cluster")
        if target not in core.conf.voters:
            raise MembershipConflict(f"{target} is a learner; only a voter can lead")
        await self.driver.transfer_leadership(target)
        try:
            async with asyncio.timeout(self.transfer_wait):
                # Polled: the core changes inside the driver task, which has no events.
                while core.leader in (core.id, None) or core.role is Role.LEADER:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise Unavailable(f"leadership did not move to {target} in "
                              f"{self.transfer_wait:g} s "
                              "(it may be behind or unreachable); try again") from None
        return {"leader": core.leader, "term": core.term, "transferred": True}

    def best_successor(self) -> str | None:
        """The other voter whose log is furthest ahead (it takes over fastest)."""
        core = self.driver.core
        others = [v for v in core.conf.voters if v != core.id and v in core.progress]
        if not others:
            return None
        return max(others, key=lambda v: (core.progress[v].match, v))

    async def _committed_term(self) -> None:
        """A new leader changes membership only after committing an entry of its term."""
        core = self.driver.core
        try:
            async with asyncio.timeout(self.leader_wait):
                while core.role is Role.LEADER and core.log.term(core.commit) != core.term:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise Unavailable("the leader has not committed an entry of its term yet") from None

    async def _caught_up(self, node: str) -> bool:
        core = self.driver.core
        try:
            async with asyncio.timeout(self.catch_up_wait):
                while True:
                    if core.role is not Role.LEADER:
                        raise Unavailable("leadership changed while adding the node; "
                                          "run the same add again")
                    pr = core.progress.get(node)
                    if pr is not None and pr.match >= core.commit:
                        return True
                    await asyncio.sleep(0.05)
        except TimeoutError:
            return False
