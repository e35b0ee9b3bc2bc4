"""Scenario files (etcd-io/raft's ``testdata`` style) replayed by one test.

Each file in ``testdata/`` is a list of blocks::

    command arg key=value
    ----
    expected output

Run with ``AETHER_RAFT_REWRITE=1`` to regenerate the expected output, then read the
diff: it is the behaviour being pinned.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from aether_raft.core import (
    ConfChangeOp,
    PlantedBugs,
    RaftConfig,
    RaftCore,
    RaftError,
    Role,
    bootstrap,
)
from aether_raft.messages import (
    AppendEntries,
    AppendResponse,
    ConfState,
    Entry,
    EntryKind,
    Heartbeat,
    InstallSnapshot,
    Message,
    SnapshotResponse,
    VoteRequest,
    VoteResponse,
)
from aether_raft.sim import MemoryDurable

TESTDATA = Path(__file__).parent / "testdata"
REWRITE = os.environ.get("AETHER_RAFT_REWRITE") == "1"


def fmt_entry(e: Entry) -> str:
    if e.kind is EntryKind.NOOP:
        return f"{e.term}/{e.index} noop"
    if e.kind is EntryKind.CONF:
        return f"{e.term}/{e.index} conf"
    return f"{e.term}/{e.index} {e.data.decode()}"


def fmt_msg(m: Message) -> str:
    head = f"{m.src}->{m.dst} {type(m).__name__} term={m.term}"
    if isinstance(m, VoteRequest):
        return f"{head} last={m.last_term}/{m.last_index}" + (" pre" if m.pre else "")
    if isinstance(m, VoteResponse):
        return f"{head} granted={m.granted}" + (" pre" if m.pre else "")
    if isinstance(m, AppendEntries):
        entries = ", ".join(fmt_entry(e) for e in m.entries)
        return f"{head} prev={m.prev_term}/{m.prev_index} [{entries}] commit={m.commit}"
    if isinstance(m, AppendResponse):
        if m.success:
            return f"{head} ok index={m.index}"
        return f"{head} reject index={m.index} hint={m.hint_term}/{m.hint_index}"
    if isinstance(m, Heartbeat):
        return f"{head} commit={m.commit}" + (f" ctx={m.ctx}" if m.ctx else "")
    if isinstance(m, InstallSnapshot):
        return f"{head} snap={m.meta.term}/{m.meta.index} offset={m.offset} done={m.done}"
    if isinstance(m, SnapshotResponse):
        return f"{head} offset={m.offset} done={m.done} index={m.index}"
    return head


class Cluster:
    def __init__(self) -> None:
        self.cores: dict[str, RaftCore] = {}
        self.durable: dict[str, MemoryDurable] = {}
        self.applied: dict[str, list[str]] = {}
        self.inbox: list[Message] = []
        self.cut: set[frozenset[str]] = set()
        self.down: set[str] = set()
        self.config = RaftConfig()
        self.bugs = PlantedBugs()
        self.committed: dict[int, tuple[int, str]] = {}
        self.out: list[str] = []

    def core(self, name: str) -> RaftCore:
        return self.cores[name]

    def start(self, name: str, durable: MemoryDurable) -> None:
        self.durable[name] = durable
        applied = durable.snapshot.meta.index if durable.snapshot else 0
        self.cores[name] = RaftCore(
            name,
            durable.state(),
            random.Random(name),
            self.config,
            applied=applied,
            bugs=self.bugs,
        )
        self.applied.setdefault(name, [])

    def process_ready(self, name: str) -> bool:
        core = self.cores[name]
        if name in self.down or not core.has_ready():
            return False
        rd = core.ready()
        self.durable[name].save(rd)
        if rd.snapshot is not None and rd.restore:
            data = rd.snapshot.data.decode()
            self.applied[name] = data.split(",") if data else []
        for m in rd.messages:
            if frozenset((m.src, m.dst)) not in self.cut:
                self.inbox.append(m)
        for e in rd.committed:
            if e.kind is EntryKind.NORMAL:
                self.applied[name].append(e.data.decode())
        for read in rd.reads:
            self.out.append(f"{name}: read ctx={read.ctx} index={read.index}")
        for ctx in rd.dropped_reads:
            self.out.append(f"{name}: read ctx={ctx} dropped")
        core.advance(rd)
        self.check(name)
        return True

    def check(self, name: str) -> None:
        core = self.cores[name]
        for index in range(core.log.snapshot.index + 1, core.commit + 1):
            entry = core.log.slice(index, index)[0]
            seen = self.committed.setdefault(index, (entry.term, name))
            if seen[0] != entry.term:
                self.out.append(
                    f"SAFETY VIOLATION: index {index} committed with term {seen[0]} "
                    f"by {seen[1]}, now term {entry.term} on {name}"
                )
                self.committed[index] = (entry.term, name)

    def deliver(self, to: set[str] | None = None) -> int:
        keep, sent = [], 0
        for m in self.inbox:
            if to is not None and m.dst not in to:
                keep.append(m)
                continue
            if m.dst in self.down or frozenset((m.src, m.dst)) in self.cut:
                continue
            self.out.append(fmt_msg(m))
            self.cores[m.dst].step(m)
            sent += 1
        self.inbox = keep
        return sent

    def stabilize(self) -> None:
        while True:
            busy = False
            for name in sorted(self.cores):
                busy |= self.process_ready(name)
            if not self.inbox and not busy:
                return
            self.deliver()

    def status(self, names: list[str]) -> None:
        for name in names or sorted(self.cores):
            c = self.cores[name]
            if name in self.down:
                self.out.append(f"{name}: down")
                continue
            self.out.append(
                f"{name}: {c.role.value} term={c.term} leader={c.leader} commit={c.commit} "
                f"last={c.log.last_index()} voters={','.join(c.conf.voters)}"
                + (f" learners={','.join(c.conf.learners)}" if c.conf.learners else "")
            )

    def run(self, cmd: str, args: list[str], kv: dict[str, str]) -> None:
        names = args
        if cmd == "add-nodes":
            self.config = RaftConfig(
                pre_vote=kv.get("pre_vote", "true") == "true",
                check_quorum=kv.get("check_quorum", "true") == "true",
                max_entries_per_message=int(kv.get("max_entries", "256")),
                snapshot_chunk_bytes=int(kv.get("chunk", "65536")),
            )
            self.bugs = PlantedBugs(commit_old_terms=kv.get("bug") == "commit_old_terms")
            count = int(args[0])
            founders = [f"n{i + 1}" for i in range(count)]
            for name in founders:
                self.start(name, MemoryDurable(**vars(bootstrap(ConfState(tuple(founders))))))
            self.status([])
        elif cmd == "add-empty-node":  # a new machine, to be added by a conf change
            self.start(args[0], MemoryDurable())
        elif cmd == "campaign":
            self.core(args[0]).campaign()
        elif cmd == "tick":
            for _ in range(int(kv.get("count", "1"))):
                for name in names or sorted(self.cores):
                    if name not in self.down:
                        self.core(name).tick()
                if kv.get("stabilize") == "true":  # let the network keep up with time
                    self.stabilize()
        elif cmd == "process-ready":
            for name in names or sorted(self.cores):
                self.process_ready(name)
        elif cmd == "deliver-msgs":
            self.deliver(set(names) if names else None)
        elif cmd == "drop-msgs":
            self.inbox = [m for m in self.inbox if names and m.dst not in names]
        elif cmd == "stabilize":
            self.stabilize()
        elif cmd == "status":
            self.status(names)
        elif cmd == "log":
            c = self.core(args[0])
            snap = c.log.snapshot
            self.out.append(
                f"{args[0]}: snapshot={snap.term}/{snap.index} "
                f"entries=[{', '.join(fmt_entry(e) for e in c.log.entries)}]"
            )
            self.out.append(f"{args[0]}: applied={self.applied[args[0]]}")
        elif cmd == "propose":
            try:
                index = self.core(args[0]).propose(args[1].encode())
                self.out.append(f"{args[0]}: proposed at {index}")
            except RaftError as exc:
                self.out.append(f"{args[0]}: refused: {exc}")
        elif cmd == "partition":  # partition a b | c d   (links across the bar are cut)
            bar = args.index("|")
            for a in args[:bar]:
                for b in args[bar + 1 :]:
                    self.cut.add(frozenset((a, b)))
        elif cmd == "heal":
            self.cut.clear()
        elif cmd == "crash":
            self.down.add(args[0])
            self.inbox = [m for m in self.inbox if m.dst != args[0]]
        elif cmd == "restart":
            self.down.discard(args[0])
            self.start(args[0], self.durable[args[0]])
        elif cmd == "compact":
            c = self.core(args[0])
            data = ",".join(self.applied[args[0]]).encode()
            c.compact(int(args[1]), data)
            self.process_ready(args[0])
        elif cmd == "conf-change":
            try:
                index = self.core(args[0]).propose_conf_change(ConfChangeOp(args[1]), args[2])
                self.out.append(f"{args[0]}: conf change at {index}")
            except RaftError as exc:
                self.out.append(f"{args[0]}: refused: {exc}")
        elif cmd == "transfer":
            try:
                self.core(args[0]).transfer_leadership(args[1])
            except RaftError as exc:
                self.out.append(f"{args[0]}: refused: {exc}")
        elif cmd == "read-index":
            try:
                self.core(args[0]).read_index(int(args[1]))
            except RaftError as exc:
                self.out.append(f"{args[0]}: refused: {exc}")
        elif cmd == "leader":
            leaders = [
                n
                for n, c in sorted(self.cores.items())
                if c.role is Role.LEADER and n not in self.down
            ]
            self.out.append(f"leaders: {leaders}")
        else:
            raise ValueError(f"unknown command {cmd!r}")


def parse(text: str) -> list[tuple[str, str, str]]:
    """Blocks of (comment lines, command, expected output)."""
    blocks = []
    for chunk in text.strip().split("\n\n"):
        all_lines = chunk.splitlines()
        comments = [line for line in all_lines if line.startswith("#")]
        lines = [line for line in all_lines if not line.startswith("#")]
        if not lines:
            continue
        expected = "\n".join(lines[2:]) if len(lines) > 1 and lines[1] == "----" else ""
        blocks.append(("".join(c + "\n" for c in comments), lines[0], expected))
    return blocks


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("*.txt")), ids=lambda p: p.stem)
def test_scenario(path: Path) -> None:
    cluster = Cluster()
    rendered = []
    failures = []
    for comments, command, expected in parse(path.read_text()):
        words = command.split()
        args = [w for w in words[1:] if "=" not in w]
        kv = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        cluster.out = []
        cluster.run(words[0], args, kv)
        got = "\n".join(cluster.out) or "ok"
        rendered.append(f"{comments}{command}\n----\n{got}")
        if got != expected:
            failures.append(f"{path.name}: {command}\n--- expected\n{expected}\n--- got\n{got}")
    if REWRITE:
        path.write_text("\n\n".join(rendered) + "\n")
    elif failures:
        pytest.fail(failures[0])
