"""A deterministic cluster simulator over real :class:`RaftCore` instances.

One ``random.Random(seed)`` drives everything — message loss, delay (messages wait in
a pool and leave it in random order, so they are also reordered), duplication,
partitions of whole groups and of single links, crashes (volatile state lost; durable
state kept only as far as it was persisted, the last write possibly torn) and
restarts, membership changes, client puts/compare-and-sets/reads — so a failing seed
replays exactly. After every event the simulator checks the safety properties of
Raft; at the end it heals the cluster and checks liveness, that every acknowledged
write is applied on every live member, and that the client history is linearizable.

Durable state lives in :class:`MemoryDurable` (the on-disk store is proven separately
by its crash-point test); the state machine is a small key-value map.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from aether_raft.core import (
    ConfChangeOp,
    DurableState,
    NotLeader,
    PlantedBugs,
    RaftConfig,
    RaftCore,
    RaftError,
    Ready,
    Role,
    bootstrap,
)
from aether_raft.linearizability import UNKNOWN, Operation, check_kv
from aether_raft.messages import (
    ConfState,
    Entry,
    EntryKind,
    InstallSnapshot,
    Message,
    Snapshot,
    VoteResponse,
)


class SafetyViolation(AssertionError):
    """A Raft property failed; the message names the seed that replays it."""


class KvOp(msgspec.Struct, frozen=True, array_like=True):
    op_id: int
    op: str
    key: str
    value: int | None = None
    expected: int | None = None


_kv_encoder = msgspec.msgpack.Encoder()
_kv_decoder = msgspec.msgpack.Decoder(KvOp)
_snap_decoder = msgspec.msgpack.Decoder(tuple[dict[str, int], int])


@dataclass
class MemoryDurable:
    """What survives a crash: term, vote, snapshot and the persisted log."""

    term: int = 0
    vote: str | None = None
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    def save(self, rd: Ready, *, torn: int | None = None) -> None:
        """Persist a ready; ``torn``: only the first ``torn`` entries reach the disk."""
        if rd.hard_state is not None:
            self.term, self.vote = rd.hard_state.term, rd.hard_state.vote
        if rd.snapshot is not None:
            meta = rd.snapshot.meta
            self.snapshot = rd.snapshot
            keep = [e for e in self.entries if e.index > meta.index]
            if rd.restore and not any(
                e.index == meta.index and e.term == meta.term for e in self.entries
            ):
                keep = []
            self.entries = keep
        entries = rd.entries if torn is None else rd.entries[:torn]
        self.append(entries)

    def append(self, entries: list[Entry]) -> None:
        if not entries:
            return
        first = entries[0].index
        base = self.snapshot.meta.index + 1 if self.snapshot else 1
        del self.entries[max(0, first - base) :]
        self.entries.extend(entries)

    def state(self) -> DurableState:
        return DurableState(self.term, self.vote, self.snapshot, list(self.entries))


@dataclass
class SimConfig:
    nodes: int = 3
    events: int = 3000
    drop: float = 0.05
    duplicate: float = 0.03
    delay: float = 0.05
    crash: float = 0.004
    reboot: float = 0.004  # crash and restart at once: volatile state lost
    crash_in_ready: float = 0.0005  # crash while persisting a ready: a torn tail
    leader_bias: float = 0.3  # how often a crash picks the leader
    #: Crash right after granting a vote or winning an election: the moments where
    #: what reached the disk decides safety.
    risky_crash: float = 0.05
    commit_crash: float = 0.01  # a leader crashes right after advancing its commit index
    #: The share of seeds that run under the nemesis (see :meth:`Simulator.arm_nemesis`).
    nemesis: float = 0.2
    nemesis_crash: float = 0.75  # its chance to crash a new leader, a voter, a commit advance
    partition: float = 0.006
    membership: float = 0.004
    client: float = 0.35
    snapshot_every: int = 25
    snapshot_chunk: int = 48
    #: One node is cut off and reconnected again and again; nothing else fails, and the
    #: leader must never be disrupted by it (what pre-vote + check-quorum guarantee).
    flapping: bool = False
    bugs: PlantedBugs = field(default_factory=PlantedBugs)
    #: Test-only: acknowledge entries before they are durable (persisted one ready late).
    ack_before_fsync: bool = False
    raft: RaftConfig = field(
        default_factory=lambda: RaftConfig(snapshot_chunk_bytes=48, max_entries_per_message=8)
    )


@dataclass
class _Pending:
    op: KvOp
    client: int
    called: int
    node: str
    index: int = 0  # log index (writes) or read index once known


class SimNode:
    def __init__(self, sim: Simulator, node_id: str, durable: MemoryDurable) -> None:
        self.sim = sim
        self.id = node_id
        self.durable = durable
        self.unsynced: list[Entry] = []
        self.restart()

    def restart(self) -> None:
        state = self.durable.state()
        self.kv: dict[str, int] = {}
        applied = 0
        if state.snapshot is not None:
            self.kv, applied = _snap_decoder.decode(state.snapshot.data)
            self.kv = dict(self.kv)
        self.core = RaftCore(
            self.id,
            state,
            random.Random(self.sim.rng.getrandbits(32)),
            self.sim.cfg.raft,
            applied=applied,
            bugs=self.sim.cfg.bugs,
        )
        self.unsynced = []
        self.up = True
        self.max_commit = self.core.commit
        self.last_term = self.core.term
        self.leader_mark: tuple[int, int, int] | None = None

    def apply(self, entry: Entry) -> None:
        sim = self.sim
        seen = sim.applied_log.get(entry.index)
        if seen is None:
            sim.applied_log[entry.index] = (entry.term, entry.kind, entry.data)
            if entry.kind is EntryKind.NORMAL:
                sim.first_applied[_kv_decoder.decode(entry.data).op_id] = sim.now
        elif seen != (entry.term, entry.kind, entry.data):
            sim.fail(f"state machine safety: {self.id} applied a different entry {entry.index}")
        if entry.kind is not EntryKind.NORMAL:
            return
        op = _kv_decoder.decode(entry.data)
        result: Any = None
        if op.op == "put":
            assert op.value is not None
            self.kv[op.key] = op.value
        elif op.op == "cas":
            result = self.kv.get(op.key) == op.expected
            if result:
                assert op.value is not None
                self.kv[op.key] = op.value
        pending = sim.pending.get(op.op_id)
        if pending is not None and pending.node == self.id:
            sim.complete(op.op_id, result)

    def handle_ready(self, *, crash_inside: bool = False, crash_sending: bool = False) -> None:
        """Persist, send, apply; ``crash_sending``: die after sending some of the messages."""
        core = self.core
        if not core.has_ready():
            return
        rd = core.ready()
        sim = self.sim
        if crash_inside:
            torn = sim.rng.randrange(len(rd.entries) + 1)
            if rd.hard_state is not None and sim.rng.random() < 0.5:
                self.durable.save(Ready(hard_state=rd.hard_state))
                rd.hard_state = None
            self.durable.append(self.unsynced)
            if rd.snapshot is not None:
                if sim.rng.random() < 0.5:
                    self.durable.save(Ready(snapshot=rd.snapshot, restore=rd.restore))
                else:
                    torn = 0  # entries follow the snapshot on disk, never precede it
            self.durable.save(Ready(entries=rd.entries), torn=torn)
            sim.crash(self)
            return
        if sim.cfg.ack_before_fsync:
            # The planted bug: last ready's entries reach the disk only now.
            self.durable.append(self.unsynced)
            self.unsynced = list(rd.entries)
            self.durable.save(
                Ready(hard_state=rd.hard_state, snapshot=rd.snapshot, restore=rd.restore)
            )
        else:
            self.durable.save(rd)
        if crash_sending:
            # Persisted, then the messages go out one by one until the crash.
            for message in rd.messages[: sim.rng.randrange(len(rd.messages) + 1)]:
                sim.send(message)
            sim.crash(self)
            return
        voted = False
        for message in rd.messages:
            sim.send(message)
            voted = voted or (isinstance(message, VoteResponse) and message.granted)
        risky = sim.cfg.nemesis_crash if sim.churn else sim.cfg.risky_crash
        if voted and risky and sim.rng.random() < risky:
            sim.crash(self)  # right after a vote went out: only the disk remembers it
            self.restart()
            return
        if rd.snapshot is not None and rd.restore:
            kv, _ = _snap_decoder.decode(rd.snapshot.data)
            self.kv = dict(kv)
        for entry in rd.committed:
            self.apply(entry)
        core.advance(rd)
        for read in rd.reads:
            sim.read_ready(self, read.ctx, read.index)
        for ctx in rd.dropped_reads:
            sim.pending.pop(ctx, None)
        sim.serve_reads(self)
        if core.applied - core.log.snapshot.index >= sim.cfg.snapshot_every:
            core.compact(core.applied, _kv_encoder.encode((self.kv, core.applied)))
            self.handle_ready()


class Simulator:
    def __init__(self, seed: int, cfg: SimConfig | None = None) -> None:
        self.seed = seed
        self.cfg = cfg or SimConfig()
        if self.cfg.flapping:  # nothing but the flapping node may fail
            self.cfg.risky_crash = self.cfg.commit_crash = self.cfg.crash_in_ready = 0.0
        self.rng = random.Random(seed)
        self.nemesis = not self.cfg.flapping and self.rng.random() < self.cfg.nemesis
        self.churn = self.nemesis  # until the cluster heals
        if self.nemesis:
            self.arm_nemesis()
        self.now = 0
        self.names = [f"n{i + 1}" for i in range(self.cfg.nodes)]
        conf = ConfState(tuple(self.names))
        self.nodes = {
            name: SimNode(self, name, MemoryDurable(**vars(bootstrap(conf)))) for name in self.names
        }
        self.pool: list[Message] = []
        self.delayed: list[Message] = []
        self.cut: set[frozenset[str]] = set()
        self.leaders: dict[int, str] = {}
        self.first_applied: dict[int, int] = {}  # op id -> when first applied anywhere
        self.applied_log: dict[int, tuple[int, EntryKind, bytes]] = {}
        self.committed: dict[int, int] = {}  # index -> term, of every entry seen committed
        self.pending: dict[int, _Pending] = {}
        self.history: list[Operation] = []
        self.acked_writes: dict[int, int] = {}  # op id -> log index
        self.op_seq = 0
        self.values = 0
        self.flapper: str | None = None
        self.stable_term: int | None = None
        self.stats = {
            "elections": 0,
            "crashes": 0,
            "conf_changes": 0,
            "snapshots_sent": 0,
            "nemesis": int(self.nemesis),
        }

    def arm_nemesis(self) -> None:
        """Aim the faults at leadership changes, the moments where the commit rule matters.

        Figure 8 of the Raft paper needs a leader that brings an entry of an older term
        to a majority and dies before an entry of its own term follows, while a node with
        a newer but shorter log can still win. Random faults spread evenly over a run
        almost never line that up, so some seeds crash new leaders, voters and leaders
        that just advanced their commit index most of the time (each crash cutting the
        outgoing messages at a random point), and send small AppendEntries, so that a
        catching-up follower's match index stops at every entry rather than jumping to the
        leader's last one. It is still a random search: nothing here knows the bug.

        Such a seed commits little before it heals (leadership churns all the time), so it
        is cheap, and the other seeds keep the client workload. Churn phases inside
        ordinary seeds were tried and found the bug an order of magnitude less often:
        the Figure 8 interleaving grows out of several uncommitted terms in a row.
        """
        batch = self.rng.choice((1, 2))
        self.cfg = dataclasses.replace(
            self.cfg, raft=dataclasses.replace(self.cfg.raft, max_entries_per_message=batch)
        )

    # -- failures -----------------------------------------------------------------------

    def fail(self, what: str) -> None:
        raise SafetyViolation(f"seed {self.seed}, event {self.now}: {what}")

    # -- network ------------------------------------------------------------------------

    def send(self, m: Message) -> None:
        if frozenset((m.src, m.dst)) in self.cut:
            return
        if self.cfg.flapping:
            self.pool.append(m)
            return
        if self.rng.random() < self.cfg.drop:
            return
        if self.rng.random() < self.cfg.delay:
            self.delayed.append(m)
        else:
            self.pool.append(m)
        if self.rng.random() < self.cfg.duplicate:
            self.delayed.append(m)

    def deliver_one(self) -> None:
        self.now += 1
        # Mostly in order, with a window of reordering; delayed messages re-enter later.
        window = 1 if self.cfg.flapping else 4  # flapping: a perfect network otherwise
        m = self.pool.pop(self.rng.randrange(min(len(self.pool), window)))
        node = self.nodes[m.dst]
        if not node.up or frozenset((m.src, m.dst)) in self.cut:
            return
        if isinstance(m, InstallSnapshot):
            self.stats["snapshots_sent"] += 1
        node.core.step(m)
        self.after(node)

    def partition(self) -> None:
        if self.rng.random() < 0.5:
            a, b = self.rng.sample(self.names, 2)
            self.cut.add(frozenset((a, b)))
        else:
            side = set(self.rng.sample(self.names, self.rng.randrange(1, len(self.names))))
            for a in side:
                for b in self.names:
                    if b not in side:
                        self.cut.add(frozenset((a, b)))

    # -- nodes --------------------------------------------------------------------------

    def crash(self, node: SimNode) -> None:
        node.up = False
        self.stats["crashes"] += 1
        for op_id, p in list(self.pending.items()):
            if p.node == node.id:
                self.unknown(op_id)

    def after(self, node: SimNode) -> None:
        if (
            self.cfg.crash_in_ready
            and self.rng.random() < self.cfg.crash_in_ready
            and node.core.has_ready()
        ):
            node.handle_ready(crash_inside=True)  # a torn, partly persisted ready
            if self.rng.random() < 0.5:
                node.restart()
            return
        core = node.core
        cfg = self.cfg
        p = 0.0
        if core.role is Role.LEADER:
            # ``check`` has not seen this step yet: its marks tell what just changed.
            if node.leader_mark is None or node.leader_mark[0] != core.term:
                # dies before its first entries spread
                p = cfg.nemesis_crash if self.churn else cfg.risky_crash
            elif core.commit > node.max_commit:
                # dies before followers learn the commit
                p = cfg.nemesis_crash if self.churn else cfg.commit_crash
        if p and self.rng.random() < p:
            self.check(node)
            node.handle_ready(crash_sending=True)
            if self.rng.random() < 0.5:
                node.restart()  # a reboot: back at once with only its disk
            return
        node.handle_ready()
        self.check(node)

    def victim(self) -> SimNode:
        leader = self.leader()
        if leader is not None and self.rng.random() < self.cfg.leader_bias:
            return leader
        return self.nodes[self.rng.choice(self.names)]

    def crash_one(self) -> None:
        node = self.victim()
        if node.up:
            self.crash(node)  # whatever was not persisted is lost with it

    def reboot_one(self) -> None:
        node = self.victim()
        if node.up:
            self.crash(node)
        node.restart()

    def restart_one(self) -> None:
        for node in self.nodes.values():
            if not node.up:
                node.restart()
                return

    def check(self, node: SimNode) -> None:
        core = node.core
        if core.term < node.last_term:
            self.fail(f"{node.id}: term went back from {node.last_term} to {core.term}")
        node.last_term = core.term
        if core.commit < node.max_commit:
            self.fail(f"{node.id}: commit went back from {node.max_commit} to {core.commit}")
        log = core.log
        for index in range(max(node.max_commit, log.snapshot.index) + 1, core.commit + 1):
            term = log.term(index)
            if term is None:
                continue
            known = self.committed.setdefault(index, term)
            if known != term:
                self.fail(f"{node.id}: committed index {index} has term {term}, not {known}")
        node.max_commit = core.commit
        if core.role is Role.LEADER:
            mark = node.leader_mark
            if mark is None or mark[0] != core.term:
                self.new_leader(node)
            else:
                _, last_index, last_term = mark
                t = log.term(last_index)
                if (t is not None and t != last_term) or log.last_index() < last_index:
                    self.fail(f"leader append-only: {node.id} rewrote its log at {last_index}")
            node.leader_mark = (core.term, log.last_index(), log.last_term())
        else:
            node.leader_mark = None

    def new_leader(self, node: SimNode) -> None:
        core = node.core
        other = self.leaders.setdefault(core.term, node.id)
        if other != node.id:
            self.fail(f"election safety: {other} and {node.id} both lead term {core.term}")
        self.stats["elections"] += 1
        log = core.log
        for index, term in self.committed.items():
            if index > log.snapshot.index and log.term(index) != term:
                self.fail(
                    f"leader completeness: leader {node.id} of term {core.term} lacks "
                    f"committed entry {index} (term {term})"
                )
        if self.cfg.flapping:
            if self.stable_term is None:
                self.stable_term = core.term
                self.flapper = self.rng.choice([n for n in self.names if n != node.id])
            else:
                self.fail(
                    f"disruption: leadership changed (term {core.term}) "
                    f"while only {self.flapper} was flapping"
                )

    def check_log_matching(self) -> None:
        live = [n for n in self.nodes.values() if n.up]
        for i, a in enumerate(live):
            for b in live[i + 1 :]:
                la, lb = a.core.log, b.core.log
                hi = min(la.last_index(), lb.last_index())
                lo = max(la.snapshot.index, lb.snapshot.index) + 1
                same = False
                for index in range(hi, lo - 1, -1):
                    ta, tb = la.term(index), lb.term(index)
                    if same or ta == tb:
                        if not same:
                            same = True
                        ea, eb = la.slice(index, index), lb.slice(index, index)
                        if ea != eb:
                            self.fail(f"log matching: {a.id} and {b.id} differ at {index}")

    # -- clients ------------------------------------------------------------------------

    def client_op(self) -> None:
        node = self.nodes[self.rng.choice(self.names)]
        if not node.up:
            return
        self.op_seq += 1
        op_id = self.op_seq
        key = f"k{self.rng.randrange(6)}"
        kind = self.rng.choice(("put", "put", "cas", "get", "get"))
        self.values += 1
        if kind == "get":
            op = KvOp(op_id, "get", key)
        elif kind == "put":
            op = KvOp(op_id, "put", key, self.values)
        else:
            op = KvOp(op_id, "cas", key, self.values, self.rng.choice([None, self.values - 1]))
        # Like a client library: ask any node, follow its redirect to the leader once.
        for _ in range(2):
            pending = _Pending(op, self.rng.randrange(5), self.now, node.id)
            try:
                if kind == "get":
                    self.pending[op_id] = pending
                    node.core.read_index(op_id)
                else:
                    pending.index = node.core.propose(_kv_encoder.encode(op))
                    self.pending[op_id] = pending
            except NotLeader as exc:
                self.pending.pop(op_id, None)  # refused before anything happened
                if exc.leader is None or not self.nodes[exc.leader].up:
                    return
                node = self.nodes[exc.leader]
                continue
            except RaftError:
                self.pending.pop(op_id, None)
                return
            self.after(node)
            return

    def read_ready(self, node: SimNode, ctx: int, index: int) -> None:
        if (p := self.pending.get(ctx)) is not None:
            p.index = index

    def serve_reads(self, node: SimNode) -> None:
        for op_id, p in list(self.pending.items()):
            ready = p.op.op == "get" and p.node == node.id and p.index
            if ready and node.core.applied >= p.index:
                self.complete(op_id, node.kv.get(p.op.key), node.core.applied + 0.5)

    def complete(self, op_id: int, result: Any, order: float | None = None) -> None:
        p = self.pending.pop(op_id)
        op = p.op
        self.history.append(
            Operation(
                p.client,
                p.called,
                self.now,
                op.op,
                op.key,
                op.value,
                op.expected,
                result if op.op != "put" else None,
                id=op_id,
                order=order if order is not None else p.index,
            )
        )
        if op.op != "get":
            self.acked_writes[op_id] = p.index

    def unknown(self, op_id: int) -> None:
        p = self.pending.pop(op_id)
        if p.op.op != "get":  # a read that never answered had no effect
            op = p.op
            self.history.append(
                Operation(
                    p.client,
                    p.called,
                    None,
                    op.op,
                    op.key,
                    op.value,
                    op.expected,
                    UNKNOWN,
                    id=op_id,
                    order=p.index,
                )
            )

    # -- membership -----------------------------------------------------------------------

    def membership(self) -> None:
        leader = self.leader()
        if leader is None:
            return
        conf = leader.core.conf
        outside = [n for n in self.names if n not in conf.members()]
        choice = self.rng.random()
        try:
            if conf.learners and choice < 0.6:
                leader.core.propose_conf_change(ConfChangeOp.ADD_VOTER, conf.learners[0])
            elif outside and choice < 0.8:
                leader.core.propose_conf_change(ConfChangeOp.ADD_LEARNER, outside[0])
            elif len(conf.voters) > 3 or (len(conf.voters) == 3 and self.cfg.nodes == 3):
                victim = self.rng.choice(conf.voters)
                leader.core.propose_conf_change(ConfChangeOp.REMOVE, victim)
            else:
                return
        except RaftError:
            return
        self.stats["conf_changes"] += 1
        self.after(leader)

    def leader(self) -> SimNode | None:
        best = None
        for node in self.nodes.values():
            if (
                node.up
                and node.core.role is Role.LEADER
                and (best is None or node.core.term > best.core.term)
            ):
                best = node
        return best

    # -- the run --------------------------------------------------------------------------

    def tick_all(self) -> None:
        self.now += 1
        if self.delayed:
            keep: list[Message] = []
            for m in self.delayed:
                (self.pool if self.rng.random() < 0.3 else keep).append(m)
            self.delayed = keep
        for node in self.nodes.values():
            if node.up:
                node.core.tick()
                self.after(node)

    def step(self) -> None:
        self.now += 1
        cfg = self.cfg
        r = self.rng.random()
        # Deliver more often as messages pile up, so latency stays bounded.
        if self.pool and r * (len(self.pool) + 2) < len(self.pool):
            self.deliver_one()
            return
        r = self.rng.random()
        if cfg.flapping:
            self.flap(r)
            return
        for weight, action in (
            (cfg.crash, self.crash_one),
            (cfg.reboot, self.reboot_one),
            (cfg.crash * 3, self.restart_one),
            (cfg.partition, self.partition),
            (cfg.partition * 2, self.cut.clear),
            (cfg.membership, self.membership),
            (cfg.client, self.client_op),
        ):
            if r < weight:
                action()
                return
            r -= weight
        self.tick_all()
        if self.now % 64 == 0:
            self.check_log_matching()

    def flap(self, r: float) -> None:
        if self.flapper is not None and r < 0.02:
            if self.cut:
                self.cut.clear()
            else:
                for other in self.names:
                    if other != self.flapper:
                        self.cut.add(frozenset((self.flapper, other)))
        elif r < 0.15:
            self.client_op()
            return
        self.drain()  # a fast, perfect network apart from the flapping node
        self.tick_all()

    def run(self) -> dict[str, Any]:
        for _ in range(self.cfg.events):
            self.step()
        self.heal_and_settle()
        return self.stats

    def heal_and_settle(self) -> None:
        self.cut.clear()
        for node in self.nodes.values():
            if not node.up:
                node.restart()
        election = self.cfg.raft.election_ticks
        self.cfg.drop = self.cfg.duplicate = self.cfg.delay = self.cfg.crash_in_ready = 0.0
        self.cfg.risky_crash = self.cfg.commit_crash = 0.0  # healed: no more crashes
        self.churn = False
        self.pool.extend(self.delayed)
        self.delayed = []
        ticks = 0
        while True:
            leader = self.leader()
            if leader is not None and leader.core.log.term(leader.core.commit) == leader.core.term:
                break
            ticks += 1
            if ticks > 10 * election:
                self.fail(f"no leader within {10 * election} ticks after healing")
            self.drain()
            self.tick_all()
            self.drain()
        # Everything acknowledged must reach every member; pending writes get resolved.
        for _ in range(20 * election):
            self.drain()
            leader = self.leader()
            if leader is not None and not self.pool:
                members = [self.nodes[n] for n in leader.core.conf.members()]
                if all(n.core.applied >= leader.core.commit for n in members):
                    break
            self.tick_all()
        self.check_log_matching()
        leader = self.leader()
        if leader is None:
            self.fail("lost the leader while settling")
            return
        for name in leader.core.conf.members():
            node = self.nodes[name]
            if node.core.applied < leader.core.commit:
                self.fail(f"{name} did not catch up: applied {node.core.applied}")
            if node.kv != leader.kv:
                self.fail(f"{name} state differs from the leader's")
        for op_id, index in self.acked_writes.items():
            term_data = self.applied_log.get(index)
            if term_data is None or _kv_decoder.decode(term_data[2]).op_id != op_id:
                self.fail(f"acknowledged write {op_id} is not the entry at {index}")
            if index > leader.core.commit:
                self.fail(f"acknowledged write {op_id} at {index} is above the commit")
        for op_id in list(self.pending):
            self.unknown(op_id)
        # The simulator knows what the clients do not: a write missing from the applied
        # log never took effect, and one in it took effect before its entry was first
        # applied. Using that keeps the search small and makes the check stricter.
        self.history = [
            op
            if op.returned is not None
            else dataclasses.replace(op, returned=self.first_applied[op.id])
            for op in self.history
            if op.returned is not None or op.id in self.first_applied
        ]
        result = check_kv(self.history)
        if not result.ok:
            self.fail(f"history not linearizable on key {result.key}")

    def drain(self, limit: int = 500) -> None:
        while self.pool and limit:
            limit -= 1
            self.deliver_one()


def run_seed(seed: int, cfg_factory: Callable[[], SimConfig] = SimConfig) -> dict[str, Any]:
    """Run one seed; raises :class:`SafetyViolation` naming the seed on any failure."""
    return Simulator(seed, cfg_factory()).run()
