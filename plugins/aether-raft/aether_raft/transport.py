"""``[transport] use = "raft"``: the kernel's Transport over the driver and the network.

Writes proposed on a follower are forwarded to the leader over the peer connection:
the leader appends the command and replies with (index, term); the follower then
waits until it applied that entry itself and returns its own apply result, so a client
reading from the node it wrote to sees its write. While no leader is known a proposal
waits (bounded) for one, then fails with ``Unavailable`` (503). Reads are linearizable
through ReadIndex (a follower asks the leader for the commit index, then waits until
it applied it), so any node serves them.

A write or read that failed *certainly without effect* because leadership moved (the
leader refused it, or another leader's entry took its log slot) is retried against the
new leader within the same ``leader_wait_ms``; only an outcome that is unknown (a
forwarded write whose answer was lost) reaches the client as 503. A leader that stops
gracefully hands leadership to the most up-to-date voter first. Together these make a
rolling restart invisible to clients (docs/raft.md, "Operations").
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import structlog
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from aether_core.commands import Command, encode
from aether_core.errors import AetherError, Unavailable
from aether_core.providers import NodeInfo
from aether_core.records import CommitResult
from aether_core.statemachine import StateMachine
from aether_core.transport.base import LeaderInfo, Transport, TransportSettings
from aether_raft import tls as peer_tls
from aether_raft.core import RaftConfig, Role
from aether_raft.driver import NotApplied, RaftDriver
from aether_raft.forward import (
    ClusterOp,
    ClusterOpReply,
    Forward,
    ForwardReply,
    PeerFrame,
    Removed,
)
from aether_raft.logstore import LogStore
from aether_raft.members import ERRORS, ClusterOps, MemberNetwork, MembershipConflict
from aether_raft.messages import ConfState, Message
from aether_raft.network import PeerNetwork, split_address
from aether_raft.node import RaftNode

log = structlog.get_logger("aether.raft")

FORWARD_SECONDS = 10.0
#: How long ``cluster add`` waits for a new learner to catch up before promoting it.
CATCH_UP_SECONDS = 60.0


class RaftSettings(TransportSettings):
    """``[transport] use = "raft"``."""

    #: Where this node accepts peer connections (bind to loopback or a private network).
    listen: str = "127.0.0.1:7401"
    #: The other members, by node name: ``{ node-2 = "127.0.0.1:7402", … }``. None: a
    #: one-node cluster (no peer port is opened).
    peers: dict[str, str] = Field(default_factory=dict)
    #: A follower that hears no leader for this long (randomised up to twice) campaigns.
    election_timeout_ms: int = Field(default=1000, ge=50, le=60_000)
    #: How often a leader heartbeats; also the driver's tick.
    heartbeat_interval_ms: int = Field(default=100, ge=5, le=10_000)
    #: The shared secret peers prove with an HMAC challenge; a reference only
    #: (``${env:…}``/``${file:…}``), at least 16 bytes. Required when there are peers
    #: and no TLS; with TLS it is checked as well (defence in depth).
    cluster_secret: SecretStr | None = None
    #: Mutual TLS between peers: this node's certificate (PEM, intermediates after it),
    #: the path of its private key file (a path only, never the key itself), and the
    #: cluster CA every peer's certificate must chain to. Each certificate must name its
    #: node as a DNS subjectAltName (``DNS:node-1``). All three or none; relative paths
    #: are next to the manifest.
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_ca_file: str | None = None
    #: How long a request (or the node's start-up) waits for a leader before 503.
    leader_wait_ms: int = Field(default=15_000, ge=100, le=600_000)
    #: Messages queued per peer before new ones are dropped (Raft retransmits).
    send_queue: int = Field(default=1024, ge=16, le=1_000_000)
    #: Start as a new member of an existing cluster (``aether cluster add`` it first):
    #: ``peers`` lists the current members; this node never bootstraps a cluster of its own.
    join: bool = False
    #: Snapshot the state machine and compact the log every this many applied entries.
    snapshot_every: int = Field(default=10_000, ge=2, le=100_000_000)

    @field_validator("cluster_secret", mode="before")
    @classmethod
    def _reference_only(cls, value: Any, info: ValidationInfo) -> Any:
        raw = (info.context or {}).get("raw")
        written = raw.get("cluster_secret") if isinstance(raw, dict) else None
        if isinstance(written, str) and "${" not in written:
            raise ValueError('write the secret as a reference ("${env:NAME}" or '
                             '"${file:PATH}"), never inline in the manifest')
        return value

    @field_validator("tls_cert_file", "tls_key_file", "tls_ca_file")
    @classmethod
    def _a_readable_path(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if "-----BEGIN" in value or "\n" in value:
            # Never echo it: this may be key material pasted (or ${file:}-read) inline.
            raise ValueError("give the path of a PEM file, not its contents")
        path = Path(value).expanduser()
        base = (info.context or {}).get("manifest_path")
        if not path.is_absolute() and base is not None:
            path = Path(base).parent / path
        if not path.is_file():
            raise ValueError(f"no such file: {path}")
        return str(path)

    @field_validator("listen")
    @classmethod
    def _address(cls, value: str) -> str:
        split_address(value)
        return value

    @field_validator("peers")
    @classmethod
    def _peer_addresses(cls, value: dict[str, str]) -> dict[str, str]:
        for address in value.values():
            split_address(address)
        return value

    @model_validator(mode="after")
    def _secret_with_peers(self) -> RaftSettings:
        files = (self.tls_cert_file, self.tls_key_file, self.tls_ca_file)
        if any(f is not None for f in files) and None in files:
            raise ValueError("tls_cert_file, tls_key_file and tls_ca_file go together "
                             "(all three, or none for no TLS)")
        if self.peers:
            if self.cluster_secret is None and self.tls is None:
                raise ValueError("cluster_secret is required when there are peers and no "
                                 "TLS (peers never talk unauthenticated)")
            if (self.cluster_secret is not None
                    and len(self.cluster_secret.get_secret_value().encode()) < 16):
                raise ValueError("cluster_secret must be at least 16 bytes")
            if self.tls is not None:
                peer_tls.load(*self.tls)  # a bad file fails the manifest, not the start
        if self.election_timeout_ms < 3 * self.heartbeat_interval_ms:
            raise ValueError("election_timeout_ms must be at least 3 times heartbeat_interval_ms")
        return self

    @property
    def tls(self) -> tuple[str, str, str] | None:
        """(cert, key, ca) when TLS is configured."""
        if self.tls_cert_file and self.tls_key_file and self.tls_ca_file:
            return self.tls_cert_file, self.tls_key_file, self.tls_ca_file
        return None


class RaftTransport(Transport):
    name: ClassVar[str] = "raft"
    Settings = RaftSettings
    supports_shared_storage = False
    keeps_durable_log = True

    def __init__(self, settings: RaftSettings, node: NodeInfo) -> None:
        self.settings = settings
        self.node_name = node.name
        self.data_dir = Path(node.data_dir) / "raft"
        if node.name in settings.peers:
            raise ValueError(f"[transport] peers lists this node ({node.name!r}) itself")
        if settings.join and not settings.peers:
            raise ValueError("[transport] join = true needs peers: the members to join")
        self.driver: RaftDriver | None = None
        self.network: PeerNetwork | None = None
        self._store: LogStore | None = None
        self._forwards: dict[int, asyncio.Future[ForwardReply]] = {}
        self._ops: dict[int, asyncio.Future[ClusterOpReply]] = {}
        self.cluster_ops: ClusterOps | None = None
        self._next_id = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._leader_wait = settings.leader_wait_ms / 1000

    @classmethod
    def from_settings(cls, settings: RaftSettings, node: NodeInfo) -> RaftTransport:
        return cls(settings, node)

    async def start(self, state_machine: StateMachine) -> None:
        s = self.settings
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._store = LogStore(str(self.data_dir))
        ticks = max(3, s.election_timeout_ms // s.heartbeat_interval_ms)
        config = RaftConfig(election_ticks=ticks, heartbeat_ticks=1)
        # Every founder writes the same bootstrap configuration: all names, sorted. A
        # joining node writes none: it waits for the leader's log (or snapshot).
        founders = None if s.join else ConfState(tuple(sorted({self.node_name, *s.peers})))
        raft = RaftNode(self.node_name, self._store, state_machine, self._send,
                        rng=random.Random(), config=config)
        await raft.start(founders)
        self.driver = RaftDriver(raft.core, self._store, state_machine, self._send,
                                 tick_seconds=s.heartbeat_interval_ms / 1000,
                                 snapshot_every=s.snapshot_every, on_conf=self._conf_changed)
        self.cluster_ops = ClusterOps(
            self.driver, leader_wait=self._leader_wait, catch_up_wait=CATCH_UP_SECONDS,
            transfer_wait=4 * s.election_timeout_ms / 1000, peers=s.peers,
            removed=self._tell_removed)
        # With a secret (or TLS) but no peers, a one-node cluster still listens, so that
        # `aether cluster add` can grow it.
        if s.peers or s.cluster_secret is not None or s.tls is not None:
            secret = s.cluster_secret
            self.network = MemberNetwork(
                self.node_name, s.listen, s.peers,
                None if secret is None else secret.get_secret_value().encode(), self._receive,
                tls=None if s.tls is None else peer_tls.load(*s.tls), queue_size=s.send_queue)
            await self.network.start()
            self._conf_changed(raft.core.conf)
        self.driver.start()
        log.info("raft.started", node=self.node_name, peers=sorted(s.peers),
                 listen=s.listen if s.peers else None, term=raft.core.term)

    def _send(self, message: Message) -> None:
        if self.network is not None:
            self.network.send(message)

    def _conf_changed(self, conf: ConfState) -> None:
        """Connect to the members of ``conf`` (the manifest's peers until a joining node
        has learnt the configuration). This node's manifest wins over the address a
        member was added with: it says how *this* node reaches it (a proxy, a NAT)."""
        if not isinstance(self.network, MemberNetwork) or not conf.members():
            return
        known = {**dict(conf.addresses), **self.settings.peers}
        self.network.set_peers({m: known[m] for m in conf.members()
                                if m != self.node_name and m in known})

    def _tell_removed(self, node: str) -> None:
        if self.network is not None and self.driver is not None:
            self.network.send(Removed(src=self.node_name, dst=node, term=self.driver.core.term))

    def _driver(self) -> RaftDriver:
        if self.driver is None:
            raise Unavailable("the raft transport is not started")
        return self.driver

    async def propose(self, command: Command) -> CommitResult:
        driver = self._driver()
        deadline = asyncio.get_running_loop().time() + self._leader_wait
        while True:
            leader = await self._await_leader()
            try:
                if leader == self.node_name:
                    return await driver.propose(command)
                return await self._forward(leader, encode(command))
            except NotApplied:
                # Certainly not applied (leadership moved): the next leader may take it.
                if asyncio.get_running_loop().time() >= deadline:
                    raise
                await self._pause()

    async def _pause(self) -> None:
        await asyncio.sleep(self.settings.heartbeat_interval_ms / 2000)

    async def _await_leader(self) -> str:
        driver = self._driver()
        driver.check()  # a stopped (or removed) node forwards nothing either
        try:
            async with asyncio.timeout(self._leader_wait):
                while driver.core.leader is None:
                    driver.check()
                    await self._pause()
        except TimeoutError:
            raise Unavailable("no raft leader is known; retry shortly") from None
        leader = driver.core.leader
        assert leader is not None
        return leader

    async def _forward(self, leader: str, data: bytes) -> CommitResult:
        driver = self._driver()
        assert self.network is not None
        self._next_id += 1
        request_id = self._next_id
        reply: asyncio.Future[ForwardReply] = asyncio.get_running_loop().create_future()
        self._forwards[request_id] = reply
        self.network.send(Forward(src=self.node_name, dst=leader, id=request_id, data=data))
        try:
            async with asyncio.timeout(FORWARD_SECONDS):
                answer = await reply
        except TimeoutError:
            # The write may still commit: say so, a client must not assume either way.
            raise Unavailable(f"the leader {leader} did not answer a forwarded write in "
                              f"{FORWARD_SECONDS:g} s; its fate is unknown") from None
        finally:
            self._forwards.pop(request_id, None)
        if answer.error is not None:
            # The leader appended nothing: safe to retry with whoever leads next.
            raise NotApplied(f"the leader refused a forwarded write: {answer.error}",
                             leader=answer.leader)
        try:
            async with asyncio.timeout(FORWARD_SECONDS):
                return await driver.wait_applied(answer.index, answer.term)
        except TimeoutError:
            raise Unavailable(f"a forwarded write (log index {answer.index}) was not applied "
                              f"here within {FORWARD_SECONDS:g} s; its fate is unknown"
                              ) from None

    def _receive(self, message: PeerFrame) -> None:
        if isinstance(message, Forward):
            self._spawn(self._serve_forward(message))
        elif isinstance(message, ForwardReply):
            waiting = self._forwards.get(message.id)
            if waiting is not None and not waiting.done():
                waiting.set_result(message)
        elif isinstance(message, Removed):
            driver = self.driver
            # Only the leader we know, in our term or later, can tell us.
            if driver is not None and message.term >= driver.core.term \
                    and message.src == driver.core.leader:
                log.warning("raft.removed", by=message.src, term=message.term)
                driver.halt(Unavailable(f"{self.node_name} was removed from the cluster; "
                                        "use another node"))
        elif isinstance(message, ClusterOp):
            self._spawn(self._serve_op(message))
        elif isinstance(message, ClusterOpReply):
            op_waiting = self._ops.get(message.id)
            if op_waiting is not None and not op_waiting.done():
                op_waiting.set_result(message)
        elif self.driver is not None:
            self.driver.deliver(message)

    async def _serve_forward(self, request: Forward) -> None:
        driver = self._driver()
        reply = ForwardReply(src=self.node_name, dst=request.src, id=request.id)
        try:
            index, term = await driver.append(request.data)
        except Unavailable as exc:
            reply = msgspec.structs.replace(reply, error=exc.detail, leader=driver.core.leader)
        else:
            reply = msgspec.structs.replace(reply, index=index, term=term)
        if self.network is not None:
            self.network.send(reply)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def read_barrier(self) -> None:
        deadline = asyncio.get_running_loop().time() + self._leader_wait
        while True:
            await self._await_leader()
            try:
                await self._driver().read_barrier(
                    timeout=2 * self.settings.election_timeout_ms / 1000)
                return
            except NotApplied:  # the leader changed under the read: ask the next one
                if asyncio.get_running_loop().time() >= deadline:
                    raise
                await self._pause()

    # -- membership ----------------------------------------------------------------------

    async def cluster_op(self, op: str, node: str = "", address: str = "") -> dict[str, Any]:
        """``add`` / ``remove`` / ``transfer``, run by the leader (forwarded from here if
        this node is a follower). Errors are the API's: 400, 404, 409, 503."""
        self._driver()
        if self.cluster_ops is None or self.network is None:
            raise MembershipConflict("this node was started without a peer network "
                                      "(set listen and cluster_secret or TLS, and restart)")
        deadline = asyncio.get_running_loop().time() + self._leader_wait
        while True:
            leader = await self._await_leader()
            try:
                if leader == self.node_name:
                    return await self.cluster_ops.run(op, node, address)
                return await self._forward_op(leader, op, node, address)
            except NotApplied:
                if asyncio.get_running_loop().time() >= deadline:
                    raise
                await self._pause()

    async def _forward_op(self, leader: str, op: str, node: str, address: str
                          ) -> dict[str, Any]:
        assert self.network is not None
        self._next_id += 1
        request_id = self._next_id
        reply: asyncio.Future[ClusterOpReply] = asyncio.get_running_loop().create_future()
        self._ops[request_id] = reply
        self.network.send(ClusterOp(src=self.node_name, dst=leader, id=request_id, op=op,
                                    node=node, address=address))
        seconds = CATCH_UP_SECONDS + self._leader_wait + FORWARD_SECONDS
        try:
            async with asyncio.timeout(seconds):
                answer = await reply
        except TimeoutError:
            raise Unavailable(f"the leader {leader} did not answer a forwarded cluster "
                              f"operation in {seconds:g} s; check `cluster status`") from None
        finally:
            self._ops.pop(request_id, None)
        if answer.status == 200:
            return answer.result
        if answer.status == 421:  # it is no longer the leader: nothing was done
            raise NotApplied(answer.detail)
        raise ERRORS.get(answer.status, Unavailable)(answer.detail)

    async def _serve_op(self, request: ClusterOp) -> None:
        reply = ClusterOpReply(src=self.node_name, dst=request.src, id=request.id)
        try:
            if self.cluster_ops is None or self.driver is None \
                    or self.driver.core.leader != self.node_name:
                raise NotApplied(f"{self.node_name} is not the leader")
            result = await self.cluster_ops.run(request.op, request.node, request.address)
        except NotApplied as exc:
            reply = msgspec.structs.replace(reply, status=421, detail=exc.detail)
        except AetherError as exc:
            reply = msgspec.structs.replace(reply, status=exc.status, detail=exc.detail)
        else:
            reply = msgspec.structs.replace(reply, result=result)
        if self.network is not None:
            self.network.send(reply)

    def leader(self) -> LeaderInfo:
        if self.driver is None:
            return LeaderInfo(name=None)
        core = self.driver.core
        name = core.leader
        if name is None:
            return LeaderInfo(name=None, term=core.term)
        address = self.settings.listen if name == self.node_name else self.settings.peers.get(name)
        return LeaderInfo(name=name, address=address, is_self=name == self.node_name,
                          term=core.term)

    def ready(self) -> bool:
        return (self.driver is not None and self.driver.failure is None
                and self.driver.core.leader is not None)

    def status(self) -> dict[str, Any]:
        """What ``cluster status`` shows for this node."""
        if self.driver is None:
            return {"node": self.node_name, "started": False}
        core = self.driver.core
        peers = self.network.peers if self.network is not None else self.settings.peers
        return {
            "node": self.node_name,
            "role": core.role.value,
            "term": core.term,
            "leader": core.leader,
            "commit": core.commit,
            "applied": core.applied,
            **self.driver.status(),
            "peers": {name: {"address": address,
                             "connected": self.network is not None
                             and name in self.network.connected,
                             # On the leader: how far each member's log matches.
                             **({"match": core.progress[name].match}
                                if name in core.progress else {})}
                      for name, address in sorted(peers.items())},
        }

    async def _hand_over(self) -> None:
        """A leader that stops hands leadership to the most up-to-date voter first, so
        the cluster does not wait an election timeout (and no request fails meanwhile)."""
        if self.driver is None or self.cluster_ops is None or self.driver.failure is not None:
            return
        core = self.driver.core
        if core.role is not Role.LEADER or (target := self.cluster_ops.best_successor()) is None:
            return
        if self.network is None or target not in self.network.connected:
            return  # it would not hear us: the others elect a leader without our help
        try:
            await self.cluster_ops.transfer(target)
        except AetherError as exc:
            log.warning("raft.hand_over_failed", target=target, error=exc.detail)
        else:
            log.info("raft.handed_over", to=core.leader, term=core.term)
            # Linger a little: a write forwarded here just before the others learnt of
            # the new leader still gets its refusal (and is retried there), not silence.
            await asyncio.sleep(3 * self.settings.heartbeat_interval_ms / 1000)

    async def close(self) -> None:
        await self._hand_over()
        if self.driver is not None:
            # First the driver: a forwarded write still queued in it fails "stopping" —
            # never appended — and its follower is told so and retries with the next
            # leader, instead of waiting out FORWARD_SECONDS for an answer that never
            # comes. The answers go out before the network closes.
            await self.driver.close()
            await asyncio.sleep(0)
            if self.network is not None:
                await self.network.flush(timeout=0.5)
        for task in list(self._tasks):
            task.cancel()
        for waiting in self._forwards.values():
            if not waiting.done():
                waiting.set_exception(Unavailable("the raft node is stopping"))
        for op_waiting in self._ops.values():
            if not op_waiting.done():
                op_waiting.set_exception(Unavailable("the raft node is stopping"))
        if self.network is not None:
            await self.network.close()
            self.network = None
        if self._store is not None:
            self._store.close()
            self._store = None
