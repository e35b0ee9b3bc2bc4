"""The pure Raft core, in the shape of etcd-io/raft's ``raft.go`` + ``rawnode.go``.

``step(message)`` and ``tick()`` change state; ``ready()`` hands back what to persist,
what to send and what to apply; ``advance(ready)`` says it was done. The core reads no
clock (time is ticks), opens no socket or file, starts no thread, and draws random
numbers only from the ``random.Random`` it is given — so a seed replays a whole
cluster exactly.

The contract of a :class:`Ready` (the caller's side of the durability rule):

1. persist ``hard_state``, ``snapshot`` and ``entries`` and fsync them;
2. only then send ``messages`` (a vote or an acknowledgement promises what is on disk);
3. restore ``snapshot`` into the state machine if ``restore``, then apply ``committed``
   in order, answer ``reads`` once the state machine has applied their index;
4. call ``advance(ready)``. No ``step``/``tick``/propose between ``ready`` and ``advance``.

Features: pre-vote, check-quorum with a leader lease on votes, a no-op entry at the
start of each term, commit only of current-term entries by counting replicas,
conflict hints, pipelining and batching (proposals between two ``ready`` calls share
one persist and one AppendEntries per peer), snapshots sent in chunks, single-server
membership changes with learners, leader removal, leader transfer, ReadIndex.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from aether_raft.messages import (
    AppendEntries,
    AppendResponse,
    ConfState,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    Snapshot,
    SnapshotMeta,
    SnapshotResponse,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
    encode_conf,
)
from aether_raft.raftlog import RaftLog


class Role(StrEnum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class RaftError(Exception):
    """A request the core refuses; nothing changed."""


class NotLeader(RaftError):
    def __init__(self, leader: str | None) -> None:
        super().__init__(f"not the leader (leader: {leader or 'unknown'})")
        self.leader = leader


class ProposalDropped(RaftError):
    """The leader is handing over leadership or is being removed; retry elsewhere."""


class ConfChangeRejected(RaftError):
    """A membership change that is not allowed now (another pending, not caught up …)."""


class ConfChangeOp(StrEnum):
    ADD_LEARNER = "add-learner"
    ADD_VOTER = "add-voter"  # promotes a caught-up learner (or adds a voter directly)
    REMOVE = "remove"


@dataclass(frozen=True)
class RaftConfig:
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    max_entries_per_message: int = 256
    max_inflight: int = 64
    snapshot_chunk_bytes: int = 64 * 1024
    pre_vote: bool = True
    check_quorum: bool = True
    #: A learner is promoted only when its log is within this many entries of the commit.
    promote_lag: int = 0


@dataclass(frozen=True)
class PlantedBugs:
    """Test-only switches that break Raft on purpose, so the simulator proves its checks."""

    vote_not_persisted: bool = False
    commit_old_terms: bool = False


@dataclass(frozen=True)
class HardState:
    term: int
    vote: str | None


@dataclass
class DurableState:
    """What a node finds on disk when it starts."""

    term: int = 0
    vote: str | None = None
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)


def bootstrap(conf: ConfState) -> DurableState:
    """The state every founding member of a new cluster starts from (identical on all)."""
    return DurableState(term=1, entries=[Entry(1, 1, EntryKind.CONF, encode_conf(conf))])


EMPTY_META = SnapshotMeta(0, 0, ConfState())


@dataclass(frozen=True)
class ReadState:
    """A linearizable read may be served once the state machine applied ``index``."""

    ctx: int
    index: int


@dataclass
class Ready:
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    #: True: the snapshot came from the leader and replaces the state machine's state.
    restore: bool = False
    messages: list[Message] = field(default_factory=list)
    committed: list[Entry] = field(default_factory=list)
    reads: list[ReadState] = field(default_factory=list)
    #: Read contexts that will never be answered here (leadership lost); retry them.
    dropped_reads: list[int] = field(default_factory=list)


class ProgressState(StrEnum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@dataclass
class Progress:
    """The leader's view of one follower (etcd's tracker.Progress)."""

    next: int
    match: int = 0
    state: ProgressState = ProgressState.PROBE
    paused: bool = False
    inflight: deque[int] = field(default_factory=deque)
    recent_active: bool = False
    snap_index: int = 0
    snap_offset: int = 0

    def maybe_update(self, index: int) -> bool:
        """The follower has everything up to ``index``; whether that is news."""
        self.next = max(self.next, index + 1)
        if index > self.match:
            self.match = index
            return True
        return False

    def become_probe(self) -> None:
        self.state = ProgressState.PROBE
        self.next = self.match + 1
        self.paused = False
        self.inflight.clear()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.paused = False
        self.inflight.clear()


@dataclass
class _PendingRead:
    seq: int
    ctx: int
    index: int
    requester: str


class RaftCore:
    def __init__(
        self,
        node_id: str,
        state: DurableState,
        rng: random.Random,
        config: RaftConfig | None = None,
        *,
        applied: int = 0,
        bugs: PlantedBugs | None = None,
    ) -> None:
        self.id = node_id
        self.cfg = config or RaftConfig()
        self.bugs = bugs or PlantedBugs()
        self.rng = rng
        self.term = state.term
        self.vote = state.vote
        meta = state.snapshot.meta if state.snapshot else EMPTY_META
        self.snapshot = state.snapshot
        self.log = RaftLog(meta, state.entries)
        if applied < meta.index:
            raise ValueError(
                f"applied index {applied} is behind the snapshot at {meta.index}: "
                "restore the snapshot into the state machine first"
            )
        self.commit = applied
        self.applied = applied
        self.conf = self.log.conf_at(self.log.last_index())
        self.role = Role.FOLLOWER
        self.leader: str | None = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = self._random_timeout()
        self.votes: dict[str, bool] = {}
        self.progress: dict[str, Progress] = {}
        self.transferee: str | None = None
        self.transfer_elapsed = 0
        self.msgs: list[Message] = []
        self._persisted = HardState(self.term, self.vote)
        self._bcast_pending = False
        self._snapshot_to_save: Snapshot | None = None
        self._restore = False
        self._read_seq = 0
        self._pending_reads: deque[_PendingRead] = deque()
        self._reads_before_commit: list[tuple[int, str]] = []
        self._read_acks: dict[str, int] = {}
        self._ready_reads: list[ReadState] = []
        self._dropped_reads: list[int] = []
        self._receiving: tuple[SnapshotMeta, bytearray] | None = None

    # -- queries ---------------------------------------------------------------------

    def promotable(self) -> bool:
        return self.id in self.conf.voters

    def _quorum(self) -> int:
        return len(self.conf.voters) // 2 + 1

    def _random_timeout(self) -> int:
        return self.cfg.election_ticks + self.rng.randrange(self.cfg.election_ticks)

    def status(self) -> dict[str, object]:
        return {
            "id": self.id,
            "role": self.role.value,
            "term": self.term,
            "vote": self.vote,
            "leader": self.leader,
            "commit": self.commit,
            "applied": self.applied,
            "last_index": self.log.last_index(),
            "voters": list(self.conf.voters),
            "learners": list(self.conf.learners),
        }

    # -- client operations -----------------------------------------------------------

    def propose(self, data: bytes) -> int:
        """Append a command to the log; returns its index (commit is not yet known)."""
        return self._propose(EntryKind.NORMAL, data)

    def _propose(self, kind: EntryKind, data: bytes) -> int:
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if self.transferee is not None:
            raise ProposalDropped(f"leadership is being transferred to {self.transferee}")
        if self.id not in self.conf.voters:
            raise ProposalDropped("this leader is being removed from the cluster")
        index = self.log.last_index() + 1
        self.log.append([Entry(self.term, index, kind, data)])
        self._bcast_pending = True
        if len(self.conf.voters) == 1:
            self._maybe_commit()
        return index

    def propose_conf_change(self, op: ConfChangeOp, node: str, address: str | None = None
                            ) -> int:
        """One server at a time: refused while an earlier change is uncommitted.

        ``address``: where the node listens, kept in the configuration for everyone."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if self.log.last_conf_index() > self.commit:
            raise ConfChangeRejected("another membership change is not committed yet")
        if self.log.term(self.commit) != self.term:
            # Ongaro's fix for single-server changes: first commit an entry of this term.
            raise ConfChangeRejected("the leader has not committed an entry of its term yet")
        voters, learners = list(self.conf.voters), list(self.conf.learners)
        if op is ConfChangeOp.ADD_LEARNER:
            if node in voters or node in learners:
                raise ConfChangeRejected(f"{node} is already a member")
            learners.append(node)
        elif op is ConfChangeOp.ADD_VOTER:
            if node in voters:
                raise ConfChangeRejected(f"{node} is already a voter")
            if node in learners:
                pr = self.progress[node]
                if pr.match + self.cfg.promote_lag < self.commit:
                    raise ConfChangeRejected(
                        f"learner {node} has not caught up (match {pr.match}, commit {self.commit})"
                    )
                learners.remove(node)
            voters.append(node)
        else:
            if node not in voters and node not in learners:
                raise ConfChangeRejected(f"{node} is not a member")
            if voters == [node]:
                raise ConfChangeRejected("cannot remove the last voter")
            if node in voters:
                voters.remove(node)
            else:
                learners.remove(node)
        addresses = dict(self.conf.addresses)
        if op is ConfChangeOp.REMOVE:
            addresses.pop(node, None)
        elif address is not None:
            addresses[node] = address
        new = ConfState(tuple(voters), tuple(learners), tuple(sorted(addresses.items())))
        index = self._propose(EntryKind.CONF, encode_conf(new))
        self._set_conf(new)
        return index

    def transfer_leadership(self, target: str) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if target == self.id or target not in self.conf.voters:
            raise ConfChangeRejected(f"{target} is not another voter")
        self.transferee = target
        self.transfer_elapsed = 0
        if self.progress[target].match == self.log.last_index():
            self._send(TimeoutNow(src=self.id, dst=target, term=self.term))
        else:
            self._send_append(target)

    def read_index(self, ctx: int) -> None:
        """Ask for a read index; it comes back in a later ``Ready.reads`` under ``ctx``."""
        if self.role is Role.LEADER:
            self._leader_read(ctx, self.id)
        elif self.leader is not None:
            self._send(ReadIndexRequest(src=self.id, dst=self.leader, term=self.term, ctx=ctx))
        else:
            raise NotLeader(None)

    def campaign(self) -> None:
        """Start an election now (as if the election timeout fired)."""
        if self.promotable() and self.role is not Role.LEADER:
            self._campaign(pre=self.cfg.pre_vote)

    def compact(self, index: int, data: bytes) -> None:
        """The state machine's snapshot at applied ``index``: the log is compacted to it."""
        if index > self.applied or index <= self.log.snapshot.index:
            raise ValueError(f"cannot snapshot at {index} (applied {self.applied})")
        term = self.log.term(index)
        assert term is not None
        meta = SnapshotMeta(index, term, self.log.conf_at(index))
        self.log.compact(meta)
        self.snapshot = Snapshot(meta, data)
        self._snapshot_to_save = self.snapshot
        self._restore = False

    # -- ready / advance ---------------------------------------------------------------

    def _hard_state(self) -> HardState:
        vote = None if self.bugs.vote_not_persisted else self.vote
        return HardState(self.term, vote)

    def has_ready(self) -> bool:
        return bool(
            self.msgs
            or self._bcast_pending
            or self.log.stable < self.log.last_index()
            or self._hard_state() != self._persisted
            or self._snapshot_to_save is not None
            or self.commit > self.applied
            or self._ready_reads
            or self._dropped_reads
        )

    def ready(self) -> Ready:
        if self._bcast_pending:
            self._bcast_pending = False
            if self.role is Role.LEADER:
                self._bcast_append()
        hs = self._hard_state()
        rd = Ready(
            hard_state=hs if hs != self._persisted else None,
            entries=self.log.unstable(),
            snapshot=self._snapshot_to_save,
            restore=self._restore,
            messages=self.msgs,
            reads=self._ready_reads,
            dropped_reads=self._dropped_reads,
        )
        base = self.applied
        if rd.snapshot is not None and rd.restore:
            base = max(base, rd.snapshot.meta.index)
        if self.commit > base:
            rd.committed = self.log.slice(base + 1, self.commit)
        self.msgs, self._ready_reads, self._dropped_reads = [], [], []
        return rd

    def advance(self, rd: Ready) -> None:
        if rd.hard_state is not None:
            self._persisted = rd.hard_state
        if rd.entries:
            last = rd.entries[-1]
            if self.log.term(last.index) == last.term:
                self.log.stable = max(self.log.stable, last.index)
        if rd.snapshot is not None:
            if self._snapshot_to_save is rd.snapshot:
                self._snapshot_to_save = None
                self._restore = False
            if rd.restore:
                self.applied = max(self.applied, rd.snapshot.meta.index)
        if rd.committed:
            self.applied = max(self.applied, rd.committed[-1].index)
        if self.role is Role.LEADER:
            self._maybe_commit()

    # -- time --------------------------------------------------------------------------

    def tick(self) -> None:
        self.election_elapsed += 1
        if self.role is Role.LEADER:
            self.heartbeat_elapsed += 1
            if self.transferee is not None:
                self.transfer_elapsed += 1
                if self.transfer_elapsed >= self.cfg.election_ticks:
                    self.transferee = None
            if self.election_elapsed >= self.cfg.election_ticks:
                self.election_elapsed = 0
                if self.cfg.check_quorum and not self._quorum_active():
                    self._become_follower(self.term, None)
                    return
            if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks:
                self.heartbeat_elapsed = 0
                self._bcast_heartbeat()
        elif self.promotable() and self.election_elapsed >= self.randomized_timeout:
            self.election_elapsed = 0
            self._campaign(pre=self.cfg.pre_vote)

    def _quorum_active(self) -> bool:
        active = 0
        for voter in self.conf.voters:
            if voter == self.id or ((pr := self.progress.get(voter)) and pr.recent_active):
                active += 1
        for pr in self.progress.values():
            pr.recent_active = False
        return active >= self._quorum()

    # -- role changes ------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.leader = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = self._random_timeout()
        self.votes = {}
        self.transferee = None
        self.progress = {}
        self._drop_reads()

    def _become_follower(self, term: int, leader: str | None) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader = leader

    def _campaign(self, *, pre: bool, transfer: bool = False) -> None:
        if pre:
            self._reset(self.term)
            self.role = Role.PRE_CANDIDATE
            term = self.term + 1
        else:
            self._reset(self.term + 1)
            self.role = Role.CANDIDATE
            self.vote = self.id
            term = self.term
        self.votes = {self.id: True}
        if self._tally() >= self._quorum():
            if pre:
                self._campaign(pre=False)
            else:
                self._become_leader()
            return
        for voter in self.conf.voters:
            if voter != self.id:
                self._send(
                    VoteRequest(
                        src=self.id,
                        dst=voter,
                        term=term,
                        last_index=self.log.last_index(),
                        last_term=self.log.last_term(),
                        pre=pre,
                        transfer=transfer,
                    )
                )

    def _tally(self) -> int:
        return sum(1 for v in self.conf.voters if self.votes.get(v))

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader = self.id
        last = self.log.last_index()
        for member in self.conf.members():
            if member != self.id:
                self.progress[member] = Progress(next=last + 1, recent_active=True)
        self._read_acks = {}
        self.log.append([Entry(self.term, last + 1, EntryKind.NOOP)])
        self._bcast_pending = True
        if len(self.conf.voters) == 1:
            self._maybe_commit()

    def _set_conf(self, conf: ConfState) -> None:
        self.conf = conf
        if self.role is not Role.LEADER:
            return
        last = self.log.last_index()
        for member in conf.members():
            if member != self.id and member not in self.progress:
                self.progress[member] = Progress(next=last + 1, recent_active=True)
        for member in list(self.progress):
            if member not in conf.members():
                del self.progress[member]
        if self.transferee is not None and self.transferee not in conf.voters:
            self.transferee = None

    # -- messages ----------------------------------------------------------------------

    def _send(self, message: Message) -> None:
        self.msgs.append(message)

    def step(self, m: Message) -> None:
        if m.term > self.term:
            if isinstance(m, VoteRequest):
                in_lease = (
                    self.cfg.check_quorum
                    and self.leader is not None
                    and self.election_elapsed < self.cfg.election_ticks
                )
                if in_lease and not m.transfer:
                    return
                if not m.pre:
                    self._become_follower(m.term, None)
            elif isinstance(m, VoteResponse) and m.pre and m.granted:
                pass  # a granted pre-vote carries the future term; nobody changes term
            elif isinstance(m, AppendEntries | Heartbeat | InstallSnapshot):
                self._become_follower(m.term, m.src)
            else:
                self._become_follower(m.term, None)
        elif m.term < self.term:
            if isinstance(m, AppendEntries | Heartbeat):
                # A stale leader (e.g. back from a partition) learns the newer term.
                self._send(
                    AppendResponse(src=self.id, dst=m.src, term=self.term, success=False, index=0)
                )
            elif isinstance(m, VoteRequest) and m.pre:
                self._send(
                    VoteResponse(src=self.id, dst=m.src, term=self.term, granted=False, pre=True)
                )
            return

        if isinstance(m, VoteRequest):
            self._handle_vote_request(m)
        elif isinstance(m, VoteResponse):
            self._handle_vote_response(m)
        elif isinstance(m, AppendEntries | Heartbeat | InstallSnapshot):
            if self.role is Role.LEADER:
                return  # two leaders in one term cannot happen; ignore defensively
            if self.role is not Role.FOLLOWER or self.leader != m.src:
                self._become_follower(self.term, m.src)
            self.election_elapsed = 0
            if isinstance(m, AppendEntries):
                self._handle_append(m)
            elif isinstance(m, Heartbeat):
                self._handle_heartbeat(m)
            else:
                self._handle_snapshot(m)
        elif isinstance(m, TimeoutNow):
            if self.promotable():
                self._campaign(pre=False, transfer=True)
        elif isinstance(m, ReadIndexRequest):
            if self.role is Role.LEADER:
                self._leader_read(m.ctx, m.src)
            else:
                self._send(
                    ReadIndexResponse(
                        src=self.id, dst=m.src, term=self.term, ctx=m.ctx, index=0, ok=False
                    )
                )
        elif isinstance(m, ReadIndexResponse):
            if m.ok:
                self._ready_reads.append(ReadState(m.ctx, m.index))
            else:
                self._dropped_reads.append(m.ctx)
        elif self.role is Role.LEADER and (pr := self.progress.get(m.src)) is not None:
            pr.recent_active = True
            if isinstance(m, AppendResponse):
                self._handle_append_response(m, pr)
            elif isinstance(m, HeartbeatResponse):
                self._handle_heartbeat_response(m, pr)
            else:
                self._handle_snapshot_response(m, pr)

    def _handle_vote_request(self, m: VoteRequest) -> None:
        can_vote = (
            self.vote == m.src
            or (self.vote is None and self.leader is None)
            or (m.pre and m.term > self.term)
        )
        granted = can_vote and self.log.up_to_date(m.last_index, m.last_term)
        if granted and not m.pre:
            self.vote = m.src
            self.election_elapsed = 0
        term = m.term if (m.pre and granted) else self.term
        self._send(VoteResponse(src=self.id, dst=m.src, term=term, granted=granted, pre=m.pre))

    def _handle_vote_response(self, m: VoteResponse) -> None:
        if m.pre != (self.role is Role.PRE_CANDIDATE):
            return
        if self.role not in (Role.PRE_CANDIDATE, Role.CANDIDATE):
            return
        self.votes.setdefault(m.src, m.granted)
        granted = self._tally()
        rejected = sum(1 for v in self.conf.voters if self.votes.get(v) is False)
        if granted >= self._quorum():
            if m.pre:
                self._campaign(pre=False)
            else:
                self._become_leader()
        elif rejected >= self._quorum():
            self._become_follower(self.term, None)

    def _handle_append(self, m: AppendEntries) -> None:
        if m.prev_index < self.commit:
            self._send(
                AppendResponse(
                    src=self.id, dst=m.src, term=self.term, success=True, index=self.commit
                )
            )
            return
        if not self.log.matches(m.prev_index, m.prev_term):
            hint_index, hint_term = self.log.find_conflict_by_term(m.prev_index, m.prev_term)
            self._send(
                AppendResponse(
                    src=self.id,
                    dst=m.src,
                    term=self.term,
                    success=False,
                    index=m.prev_index,
                    hint_index=hint_index,
                    hint_term=hint_term,
                )
            )
            return
        new: list[Entry] = []
        for i, entry in enumerate(m.entries):
            if self.log.term(entry.index) != entry.term:
                new = list(m.entries[i:])
                break
        if new:
            if new[0].index <= self.commit:
                raise AssertionError(
                    f"{self.id}: entry {new[0].index} conflicts with committed {self.commit}"
                )
            truncates = new[0].index <= self.log.last_index()
            self.log.append(new)
            if truncates or any(e.kind is EntryKind.CONF for e in new):
                self._set_conf(self.log.conf_at(self.log.last_index()))
        last_new = m.prev_index + len(m.entries)
        self.commit = max(self.commit, min(m.commit, last_new))
        self._send(
            AppendResponse(src=self.id, dst=m.src, term=self.term, success=True, index=last_new)
        )

    def _handle_heartbeat(self, m: Heartbeat) -> None:
        self.commit = max(self.commit, min(m.commit, self.log.last_index()))
        self._send(HeartbeatResponse(src=self.id, dst=m.src, term=self.term, ctx=m.ctx))

    # -- leader: replication -------------------------------------------------------------

    def _bcast_append(self) -> None:
        for peer in self.progress:
            self._send_append(peer)

    def _bcast_heartbeat(self) -> None:
        for peer, pr in self.progress.items():
            self._send(
                Heartbeat(
                    src=self.id,
                    dst=peer,
                    term=self.term,
                    commit=min(pr.match, self.commit),
                    ctx=self._read_seq,
                )
            )

    def _send_append(self, peer: str, *, allow_empty: bool = True) -> None:
        """Send what ``peer`` needs: several messages in flight when it is replicating."""
        pr = self.progress[peer]
        while True:
            if pr.state is ProgressState.SNAPSHOT or pr.paused:
                return
            if pr.state is ProgressState.REPLICATE and len(pr.inflight) >= self.cfg.max_inflight:
                return
            prev = pr.next - 1
            prev_term = self.log.term(prev)
            if prev_term is None:
                self._start_snapshot(peer, pr)
                return
            last = self.log.last_index()
            hi = min(last, pr.next + self.cfg.max_entries_per_message - 1)
            entries = tuple(self.log.slice(pr.next, hi)) if pr.next <= last else ()
            if not entries and not allow_empty:
                return
            self._send(
                AppendEntries(
                    src=self.id,
                    dst=peer,
                    term=self.term,
                    prev_index=prev,
                    prev_term=prev_term,
                    entries=entries,
                    commit=self.commit,
                )
            )
            if pr.state is ProgressState.REPLICATE and entries:
                pr.next = entries[-1].index + 1
                pr.inflight.append(entries[-1].index)
                allow_empty = False
                continue
            pr.paused = pr.state is ProgressState.PROBE
            return

    def _handle_append_response(self, m: AppendResponse, pr: Progress) -> None:
        if not m.success:
            if m.index == 0 and m.hint_index == 0:
                return  # the newer-term answer of a stale leader's message: term handled it
            if pr.state is ProgressState.REPLICATE:
                if m.index <= pr.match:
                    return
                pr.become_probe()
            elif pr.state is ProgressState.PROBE:
                if pr.next - 1 != m.index:
                    return  # stale rejection
                probe, _ = self.log.find_conflict_by_term(m.hint_index, m.hint_term)
                pr.next = max(min(m.index, probe + 1), pr.match + 1)
                pr.paused = False
            else:
                return
            self._send_append(m.src)
            return
        while pr.inflight and pr.inflight[0] <= m.index:
            pr.inflight.popleft()
        if pr.maybe_update(m.index):
            if pr.state is ProgressState.PROBE:
                pr.become_replicate()
            elif pr.state is ProgressState.SNAPSHOT and pr.match >= pr.snap_index:
                pr.become_probe()
            if self._maybe_commit():
                self._bcast_pending = True
            if m.src == self.transferee and pr.match == self.log.last_index():
                self._send(TimeoutNow(src=self.id, dst=m.src, term=self.term))
        pr.paused = False
        if self.role is Role.LEADER:
            self._send_append(m.src, allow_empty=False)

    def _handle_heartbeat_response(self, m: HeartbeatResponse, pr: Progress) -> None:
        if pr.state is ProgressState.SNAPSHOT:
            self._send_snapshot_chunk(m.src, pr)
        else:
            pr.paused = False
            if pr.state is ProgressState.REPLICATE and len(pr.inflight) >= self.cfg.max_inflight:
                pr.become_probe()
            if pr.match < self.log.last_index():
                self._send_append(m.src)
        if m.ctx:
            self._read_acks[m.src] = max(self._read_acks.get(m.src, 0), m.ctx)
            self._release_reads()

    def _maybe_commit(self) -> bool:
        matches = sorted(
            (self.log.stable if v == self.id else self._match(v)) for v in self.conf.voters
        )
        if not matches:
            return False
        index = matches[len(matches) - self._quorum()]
        advanced = False
        if index > self.commit and (
            self.bugs.commit_old_terms or self.log.term(index) == self.term
        ):
            self.commit = index
            advanced = True
            if self._reads_before_commit:
                waiting, self._reads_before_commit = self._reads_before_commit, []
                for ctx, requester in waiting:
                    self._leader_read(ctx, requester)
        if self.id not in self.conf.voters and self.commit >= self.log.last_conf_index():
            # Our removal is committed: tell the others the commit index, step down.
            self._bcast_heartbeat()
            self._become_follower(self.term, None)
        return advanced

    def _match(self, peer: str) -> int:
        pr = self.progress.get(peer)
        return pr.match if pr else 0

    # -- snapshots -----------------------------------------------------------------------

    def _start_snapshot(self, peer: str, pr: Progress) -> None:
        if self.snapshot is None:
            return  # nothing compacted without a snapshot; cannot happen
        pr.state = ProgressState.SNAPSHOT
        pr.snap_index = self.snapshot.meta.index
        pr.snap_offset = 0
        pr.inflight.clear()
        self._send_snapshot_chunk(peer, pr)

    def _send_snapshot_chunk(self, peer: str, pr: Progress) -> None:
        snap = self.snapshot
        if snap is None:
            return
        if pr.snap_index != snap.meta.index:
            pr.snap_index, pr.snap_offset = snap.meta.index, 0
        chunk = snap.data[pr.snap_offset : pr.snap_offset + self.cfg.snapshot_chunk_bytes]
        self._send(
            InstallSnapshot(
                src=self.id,
                dst=peer,
                term=self.term,
                meta=snap.meta,
                offset=pr.snap_offset,
                data=chunk,
                done=pr.snap_offset + len(chunk) >= len(snap.data),
            )
        )

    def _handle_snapshot_response(self, m: SnapshotResponse, pr: Progress) -> None:
        if m.done:
            if pr.maybe_update(m.index) and self._maybe_commit():
                self._bcast_pending = True
            if pr.state is ProgressState.SNAPSHOT:
                pr.become_probe()
                self._send_append(m.src)
            return
        if pr.state is ProgressState.SNAPSHOT and m.offset > pr.snap_offset:
            pr.snap_offset = m.offset
            self._send_snapshot_chunk(m.src, pr)

    def _handle_snapshot(self, m: InstallSnapshot) -> None:
        received = self._receiving
        if m.offset == 0:
            received = (m.meta, bytearray())
        if received is None or received[0] != m.meta or m.offset != len(received[1]):
            offset = len(received[1]) if received and received[0] == m.meta else 0
            self._send(
                SnapshotResponse(
                    src=self.id, dst=m.src, term=self.term, index=0, offset=offset, done=False
                )
            )
            return
        received[1].extend(m.data)
        self._receiving = received
        if not m.done:
            self._send(
                SnapshotResponse(
                    src=self.id,
                    dst=m.src,
                    term=self.term,
                    index=0,
                    offset=len(received[1]),
                    done=False,
                )
            )
            return
        self._receiving = None
        meta = m.meta
        if meta.index > self.commit:
            if self.log.matches(meta.index, meta.term):
                self.commit = meta.index  # our log already holds it: just fast-forward
            else:
                self.log.compact(meta)
                self.snapshot = Snapshot(meta, bytes(received[1]))
                self._snapshot_to_save = self.snapshot
                self._restore = True
                self.commit = meta.index
                self._set_conf(self.log.conf_at(self.log.last_index()))
        self._send(
            SnapshotResponse(
                src=self.id, dst=m.src, term=self.term, index=self.commit, offset=0, done=True
            )
        )

    # -- reads ---------------------------------------------------------------------------

    def _leader_read(self, ctx: int, requester: str) -> None:
        if self.log.term(self.commit) != self.term:
            # The commit index of a new leader is only known once its no-op commits.
            self._reads_before_commit.append((ctx, requester))
            return
        if len(self.conf.voters) == 1 and self.id in self.conf.voters:
            self._answer_read(ctx, self.commit, requester)
            return
        self._read_seq += 1
        self._pending_reads.append(_PendingRead(self._read_seq, ctx, self.commit, requester))
        self._bcast_heartbeat()

    def _release_reads(self) -> None:
        while self._pending_reads:
            read = self._pending_reads[0]
            acks = sum(
                1 for v in self.conf.voters if v == self.id or self._read_acks.get(v, 0) >= read.seq
            )
            if acks < self._quorum():
                return
            self._pending_reads.popleft()
            self._answer_read(read.ctx, read.index, read.requester)

    def _answer_read(self, ctx: int, index: int, requester: str) -> None:
        if requester == self.id:
            self._ready_reads.append(ReadState(ctx, index))
        else:
            self._send(
                ReadIndexResponse(
                    src=self.id, dst=requester, term=self.term, ctx=ctx, index=index, ok=True
                )
            )

    def _drop_reads(self) -> None:
        waiting = [(r.ctx, r.requester) for r in self._pending_reads]
        waiting += self._reads_before_commit
        self._pending_reads.clear()
        self._reads_before_commit = []
        for ctx, requester in waiting:
            if requester == self.id:
                self._dropped_reads.append(ctx)
            else:
                self._send(
                    ReadIndexResponse(
                        src=self.id, dst=requester, term=self.term, ctx=ctx, index=0, ok=False
                    )
                )
