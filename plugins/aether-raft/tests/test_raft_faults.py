"""Fault injection against real ``aether up`` processes (issue 5).

A 3-node and a 5-node cluster on loopback, every peer link through its own fault proxy
(``aether_raft.testing``). Each run drives >= 50 ops/s of puts and linearizable gets
through the admin APIs of random nodes, with one SSE watch stream per node, injects one
fault, heals it, and then requires: the rate was met (else the run is invalid), the
history is linearizable, no acknowledged write is lost, every node's store digest is
equal, and every watch stream delivered each revision exactly once, in order. A
control run with stale reads must be caught as not linearizable.
One cluster serves all the runs of its size (each run has its own keys), so a run also
starts from whatever the previous fault left behind. ``bench/raft_soak.py`` runs the
same faults for as long as you like.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aether_raft.testing.cluster import FaultCluster
from aether_raft.testing.faults import FAULTS
from aether_raft.testing.workload import RunConfig, RunReport, run_fault

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


def _config(fault: str, prefix: str, seed: int) -> RunConfig:
    if fault == "add-remove-node":
        # Starting the new node takes ~4 s here and adding it ~1 s; it serves for 2 s
        # more, then is removed, all under load.
        return RunConfig(prefix=prefix, seed=seed, seconds=12.0, fault_at=1.5, fault_for=2.0)
    # Short runs: the load lasts 9 s, the fault 3.5 s of it; settling and checks add ~2 s.
    return RunConfig(prefix=prefix, seed=seed, seconds=9.0, fault_at=2.0, fault_for=3.5)


async def _cluster(root: Path, size: int) -> AsyncIterator[FaultCluster]:
    cluster = FaultCluster(root, size)
    await cluster.start()
    try:
        await cluster.agreed_leader(90)
        await cluster.login()
        yield cluster
    finally:
        problems = await cluster.close()
        hung = cluster.hung_at_shutdown()
        if hung:
            print(f"{size} nodes: {hung} requests still hung at shutdown")
        assert problems == [], "\n".join(problems)


# Class scope: the 3-node cluster is stopped before the 5-node one starts.
@pytest_asyncio.fixture(scope="class", loop_scope="module")
async def three(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FaultCluster]:
    async for cluster in _cluster(tmp_path_factory.mktemp("faults3"), 3):
        yield cluster


@pytest_asyncio.fixture(scope="class", loop_scope="module")
async def five(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FaultCluster]:
    async for cluster in _cluster(tmp_path_factory.mktemp("faults5"), 5):
        yield cluster


async def _run(cluster: FaultCluster, fault: str, prefix: str, seed: int) -> RunReport:
    """A valid run of ``fault``: one under the rate floor is invalid (neither passed nor
    failed) and is run once more on this busy 2-core machine; a run that broke a
    guarantee is returned at once, whatever its rate."""
    for attempt in range(2):
        report = await run_fault(cluster, FAULTS[fault](),
                                 _config(fault, f"{prefix}-{attempt}", seed + attempt))
        print(report.summary())
        if report.valid or not report.correct:
            break
    return report


class TestThreeNodes:
    @pytest.mark.parametrize("fault", ["kill-leader", "kill-follower", "pause-leader",
                                       "partition-leader", "drop-link", "delay-link",
                                       "add-remove-node"])
    async def test_three_nodes_survive_one_fault(self, three: FaultCluster, fault: str
                                                 ) -> None:
        report = await _run(three, fault, f"three-{fault}", len(fault))
        assert report.ok, report.explain()

    async def test_the_control_stale_reads_through_a_partition_are_caught(
        self, three: FaultCluster,
    ) -> None:
        """The checks can fail: the same partition run with clients reading
        ``?consistency=stale`` (no read barrier) lets the cut-off old leader answer from
        its own, aging copy, and the checker must find the history not linearizable.
        Everything else still holds: nothing acknowledged is lost, the nodes converge,
        the streams are whole."""
        for attempt in range(2):  # an invalid (too slow) run is run once more
            config = _config("partition-leader", f"three-stale-{attempt}", 3 + attempt)
            config.read_consistency = "stale"
            report = await run_fault(three, FAULTS["partition-leader"](), config)
            print(report.summary())
            if report.valid:
                break
        assert report.valid, report.explain()
        assert report.linearizable is False, report.explain()
        assert report.lost == [] and report.converged, report.explain()
        assert [p for p in report.problems if not p.startswith("not linearizable")] == []


class TestFiveNodes:
    async def test_five_nodes_survive_a_leader_kill(self, five: FaultCluster) -> None:
        report = await _run(five, "kill-leader", "five-kill-leader", 5)
        assert report.ok, report.explain()
