"""One fault run: clients and watch streams against every node, one fault injected and
healed, then the verdicts.

Clients are asyncio tasks, each doing puts and linearizable gets of a few keys through
the admin API of a node chosen at random per operation, paced to a target rate. Every
operation is recorded for the linearizability checker: a put whose answer did not come
(timeout, reset, 5xx) has an unknown outcome (``returned=None``); a request that never
reached the node (connection refused) did nothing and is left out; a failed get says
nothing and is left out. Each node also serves one SSE watch stream, resumed with
``Last-Event-ID`` whenever it breaks.

After the fault is healed, a run passes when:
- the measured rate of operations with a known outcome is at least ``min_rate`` (a
  slower run is invalid, not passed);
- the history (final reads included) is linearizable;
- no acknowledged write is lost: each one is listed, at the version and revision it
  was acknowledged with, by the node that served a final linearizable read of its key,
  and the final read sees the value of the highest acknowledged-or-later version;
- every node's store digest (``/cluster/state``) is the same;
- every watch stream delivered revisions start+1 … final, each exactly once, in order,
  across its resumes, and every stream carried the same event at each revision.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from aether_raft.linearizability import Operation, check_kv
from aether_raft.testing.cluster import ClusterError, FaultCluster, Member
from aether_raft.testing.faults import Fault


@dataclass
class RunConfig:
    prefix: str  #: the keys of this run: ``PREFIX/k00`` …
    seconds: float = 11.0  #: of client load
    fault_at: float = 2.5  #: seconds into the load
    fault_for: float = 4.0
    #: Many, because during a fault a client may wait ``op_timeout`` for one answer.
    clients: int = 24
    keys: int = 16
    rate: float = 200.0  #: the pace clients aim at, all together (ops/s)
    min_rate: float = 50.0  #: below this the run is invalid
    write_ratio: float = 0.5
    op_timeout: float = 2.0
    #: ``stale`` makes the clients' gets skip the read barrier: the negative control,
    #: whose history a partition must make non-linearizable. Final reads stay
    #: linearizable.
    read_consistency: str = "linearizable"
    settle_seconds: float = 30.0
    seed: int = 0


@dataclass
class Acked:
    key: str
    version: int
    revision: int
    token: str
    node: str


@dataclass
class RunReport:
    fault: str
    done: str = ""  #: what the fault did
    seconds: float = 0.0  #: of load
    ops: int = 0  #: with a known outcome, during the load
    rate: float = 0.0
    writes_acked: int = 0
    writes_unknown: int = 0
    writes_not_sent: int = 0
    reads_ok: int = 0
    reads_failed: int = 0
    linearizable: bool | None = None
    check_seconds: float = 0.0
    lost: list[str] = field(default_factory=list)
    converged: bool = False
    revision: int = 0
    stream_resumes: int = 0
    problems: list[str] = field(default_factory=list)
    total_seconds: float = 0.0

    min_rate: float = 50.0

    @property
    def valid(self) -> bool:
        return self.ops > 0 and self.rate >= self.min_rate

    @property
    def correct(self) -> bool:
        """Every guarantee held (whatever the rate)."""
        return (self.linearizable is True and not self.lost and self.converged
                and not self.problems)

    @property
    def ok(self) -> bool:
        return self.valid and self.correct

    def summary(self) -> str:
        verdict = "ok" if self.ok else ("INVALID" if not self.valid else "FAILED")
        lin = {True: "yes", False: "NO", None: "-"}[self.linearizable]
        return (f"{self.fault:<17} {verdict:<7} {self.rate:6.1f} ops/s  ops {self.ops:5d}  "
                f"acked {self.writes_acked:4d}  unknown {self.writes_unknown:3d}  "
                f"linearizable {lin:<3}  lost {len(self.lost)}  "
                f"converged {'yes' if self.converged else 'NO'}  "
                f"resumes {self.stream_resumes}  {self.total_seconds:4.1f} s  ({self.done})")

    def explain(self) -> str:
        lines = [self.summary()]
        if not self.valid:
            lines.append(f"invalid: {self.rate:.1f} ops/s is under {self.min_rate:g}")
        lines += [f"lost: {x}" for x in self.lost[:20]]
        lines += [f"problem: {x}" for x in self.problems[:20]]
        return "\n".join(lines)


class StreamWatch:
    """One node's ``/watch`` stream from ``since``, resumed with Last-Event-ID."""

    def __init__(self, cluster: FaultCluster, member: Member, since: int) -> None:
        self.cluster = cluster
        self.member = member
        self.since = since
        self.last = since
        self.revisions: list[int] = []  #: every id received, duplicates included
        self.events: dict[int, tuple[str, int, Any]] = {}  #: revision → name, version, value
        self.opened = 0  #: streams opened (the first, then one per resume)
        self.errors: list[str] = []

    async def run(self) -> None:
        while True:
            try:
                headers = {**self.cluster.auth(), "Last-Event-ID": str(self.last)}
                async with self.cluster.http.stream(
                        "GET", f"{self.member.url}/watch", headers=headers,
                        timeout=httpx.Timeout(3.0, read=30.0)) as response:
                    if response.status_code != 200:
                        self.errors.append(f"{self.member.name}: /watch answered "
                                           f"{response.status_code}")
                    else:
                        self.opened += 1
                        await self._read(response)
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)

    async def _read(self, response: httpx.Response) -> None:
        fields: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line:
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
                continue
            if fields.get("event") == "error":
                self.errors.append(f"{self.member.name}: stream error {fields.get('data')}")
                return
            if "id" in fields and "data" in fields:
                event = json.loads(fields["data"])
                revision = int(fields["id"])
                self.revisions.append(revision)
                value = event.get("value")
                self.events[revision] = (event["name"], event["version"],
                                         value.get("t") if isinstance(value, dict) else value)
                self.last = revision
            fields = {}

    def problems(self, final: int) -> list[str]:
        return stream_problems(self.member.name, self.since, final, self.revisions)


def stream_problems(node: str, since: int, final: int, revisions: list[int]) -> list[str]:
    """What is wrong with a stream that should have carried since+1 … final once each,
    in order (its resumes included): nothing, or one line saying what."""
    expected = list(range(since + 1, final + 1))
    if revisions == expected:
        return []
    dupes = len(revisions) - len(set(revisions))
    missing = sorted(set(expected) - set(revisions))
    extra = sorted(set(revisions) - set(expected))
    disorder = sum(1 for a, b in itertools.pairwise(revisions) if b <= a)
    return [f"{node}: watch stream from {since + 1} to {final}: {len(missing)} missing "
            f"(first {missing[:5]}), {dupes} duplicates, {disorder} out of order, "
            f"{len(extra)} outside the range (first {extra[:5]})"]


class Run:
    def __init__(self, cluster: FaultCluster, fault: Fault, config: RunConfig) -> None:
        self.cluster = cluster
        self.fault = fault
        self.config = config
        self.rng = random.Random(config.seed)
        self.history: list[Operation] = []
        self.acked: list[Acked] = []
        self.report = RunReport(fault=fault.name, min_rate=config.min_rate)
        self.keys = [f"{config.prefix}/k{i:02d}" for i in range(config.keys)]
        self.nodes = list(cluster.members.values())
        self._ids = 0

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    # -- operations --------------------------------------------------------------------

    async def put(self, client: int, member: Member, key: str, token: str) -> None:
        r = self.report
        called = time.monotonic()
        try:
            response = await self.cluster.http.put(
                f"{member.url}/configs/{key}", headers=self.cluster.auth(),
                json={"value": {"t": token}}, timeout=self.config.op_timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            r.writes_not_sent += 1  # never reached the node: nothing happened
            return
        except httpx.HTTPError:
            self._unknown(client, called, key, token)
            return
        returned = time.monotonic()
        if response.status_code in (200, 201):
            body = response.json()
            self.history.append(Operation(
                client=client, called=called, returned=returned, op="put", key=key,
                value=token, output=None, id=self._next_id(), order=body["revision"]))
            self.acked.append(Acked(key, body["version"], body["revision"], token,
                                    member.name))
            r.writes_acked += 1
            return
        if response.status_code < 500:
            r.problems.append(f"put {key} on {member.name}: {response.status_code} "
                              f"{response.text[:200]}")
        self._unknown(client, called, key, token)

    def _unknown(self, client: int, called: float, key: str, token: str) -> None:
        self.report.writes_unknown += 1
        self.history.append(Operation(client=client, called=called, returned=None, op="put",
                                      key=key, value=token, id=self._next_id()))

    async def get(self, client: int, member: Member, key: str,
                  consistency: str = "linearizable") -> bool:
        called = time.monotonic()
        try:
            response = await self.cluster.http.get(
                f"{member.url}/configs/{key}", headers=self.cluster.auth(),
                params={"consistency": consistency}, timeout=self.config.op_timeout)
        except httpx.HTTPError:
            self.report.reads_failed += 1
            return False
        returned = time.monotonic()
        if response.status_code == 200:
            body = response.json()
            output, order = body["value"]["t"], body["revision"] + 0.5
        elif response.status_code == 404:
            output, order = None, 0.0
        else:
            if response.status_code < 500:
                self.report.problems.append(f"get {key} on {member.name}: "
                                            f"{response.status_code} {response.text[:200]}")
            self.report.reads_failed += 1
            return False
        self.history.append(Operation(client=client, called=called, returned=returned,
                                      op="get", key=key, output=output,
                                      id=self._next_id(), order=order))
        self.report.reads_ok += 1
        return True

    async def client(self, index: int, stop: asyncio.Event) -> None:
        rng = random.Random(f"{self.config.seed}-{index}")
        interval = self.config.clients / self.config.rate
        next_at = time.monotonic()
        seq = 0
        while not stop.is_set():
            wait = next_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            # After a stall, catch up by at most one interval (no burst of stored ops).
            next_at = max(next_at + interval, time.monotonic() - interval)
            # The members now: a node added during the run takes requests too.
            member = rng.choice(list(self.cluster.members.values()))
            key = rng.choice(self.keys)
            if rng.random() < self.config.write_ratio:
                seq += 1
                await self.put(index, member, key, f"{self.config.prefix}-c{index}-{seq}")
            else:
                await self.get(index, member, key, self.config.read_consistency)

    # -- the run -----------------------------------------------------------------------

    async def execute(self) -> RunReport:
        started = time.monotonic()
        r = self.report
        cluster = self.cluster
        base = await cluster.converged(self.config.settle_seconds)
        watches = [StreamWatch(cluster, m, base["revision"]) for m in self.nodes]
        watch_tasks = [asyncio.create_task(w.run()) for w in watches]
        try:
            await self._load()
            await self._settle(watches)
        except ClusterError as exc:
            r.problems.append(str(exc))
        finally:
            for task in watch_tasks:
                task.cancel()
            await asyncio.gather(*watch_tasks, return_exceptions=True)
            cluster.heal_all()  # whatever happened, leave the cluster whole
        r.stream_resumes = sum(max(0, w.opened - 1) for w in watches)
        for w in watches:
            r.problems += w.errors
        checked = time.monotonic()
        result = await asyncio.to_thread(check_kv, self.history)
        r.check_seconds = time.monotonic() - checked
        r.linearizable = result.ok
        if not result.ok:
            r.problems.append(f"not linearizable: key {result.key}")
        r.total_seconds = time.monotonic() - started
        return r

    async def _load(self) -> None:
        r = self.report
        stop = asyncio.Event()
        t0 = time.monotonic()
        clients = [asyncio.create_task(self.client(i, stop))
                   for i in range(self.config.clients)]

        async def fault() -> None:
            await asyncio.sleep(self.config.fault_at)
            r.done = await self.fault.inject(self.cluster, self.rng)
            await asyncio.sleep(self.config.fault_for)
            await self.fault.heal(self.cluster)

        injector = asyncio.create_task(fault())
        try:
            await asyncio.sleep(self.config.seconds)
        finally:
            stop.set()
            await asyncio.gather(*clients, return_exceptions=True)
            r.seconds = time.monotonic() - t0
            # A fault may outlast the load (a node added, then removed): let it finish.
            await asyncio.wait([injector], timeout=self.config.settle_seconds)
            if not injector.done():
                injector.cancel()
            outcome = (await asyncio.gather(injector, return_exceptions=True))[0]
            if isinstance(outcome, BaseException) and not isinstance(
                    outcome, asyncio.CancelledError):
                r.problems.append(f"the fault failed: {outcome!r}")
        for task in clients:
            if task.exception() is not None:
                r.problems.append(f"a client failed: {task.exception()!r}")
        r.ops = r.writes_acked + r.reads_ok
        r.rate = r.ops / r.seconds if r.seconds else 0.0

    async def _settle(self, watches: list[StreamWatch]) -> None:
        r = self.report
        cluster = self.cluster
        cluster.heal_all()  # covers a fault cut short; a no-op after a clean heal
        await cluster.agreed_leader(self.config.settle_seconds)
        await self._final_reads()
        state = await cluster.converged(self.config.settle_seconds)
        r.converged = True
        r.revision = final = int(state["revision"])

        async def streams_done() -> bool:
            return all(w.last >= final for w in watches)

        try:
            await cluster.until("every watch stream at the final revision",
                                streams_done, self.config.settle_seconds)
        except ClusterError as exc:
            r.problems.append(f"{exc}: {[(w.member.name, w.last) for w in watches]}")
        for w in watches:
            r.problems += w.problems(final)
        reference = watches[0].events
        for w in watches[1:]:
            differ = [rev for rev in reference if w.events.get(rev) != reference[rev]]
            if differ:
                r.problems.append(f"{w.member.name}'s stream differs from "
                                  f"{watches[0].member.name}'s at revisions {differ[:5]}")
        for a in self.acked:
            if reference.get(a.revision) != (a.key, a.version, a.token):
                r.lost.append(f"{a.key} v{a.version} r{a.revision} ({a.token}, acked by "
                              f"{a.node}) is not in the watch stream "
                              f"(found {reference.get(a.revision)})")

    async def _final_reads(self) -> None:
        """A linearizable read of every key (into the history), then the versions list
        from the node that served it: every acknowledged write must be there."""
        by_key: dict[str, list[Acked]] = {}
        for a in self.acked:
            by_key.setdefault(a.key, []).append(a)
        deadline = time.monotonic() + self.config.settle_seconds
        for key in self.keys:
            while True:
                member = self.rng.choice(self.cluster.live())
                if await self.get(-1, member, key):
                    break
                if time.monotonic() > deadline:
                    raise ClusterError(f"a final read of {key} within "
                                       f"{self.config.settle_seconds:g} s")
                await asyncio.sleep(0.1)
            acked = by_key.get(key, [])
            if not acked:
                continue
            response = await self.cluster.http.get(
                f"{member.url}/configs/{key}/versions", headers=self.cluster.auth(),
                timeout=10)
            if response.status_code != 200:
                self.report.lost.append(f"{key}: versions answered {response.status_code}")
                continue
            listed = {(v["version"], v["revision"]) for v in response.json()["versions"]}
            for a in acked:
                if (a.version, a.revision) not in listed:
                    self.report.lost.append(
                        f"{key} v{a.version} r{a.revision} ({a.token}, acked by {a.node}) "
                        f"is not in {member.name}'s versions after a linearizable read")


async def run_fault(cluster: FaultCluster, fault: Fault, config: RunConfig) -> RunReport:
    """One run: load, ``fault`` at ``config.fault_at`` for ``config.fault_for``, heal,
    settle, check. The cluster is left whole (healed, every node running)."""
    return await Run(cluster, fault, config).execute()
