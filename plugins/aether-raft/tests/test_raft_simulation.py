"""The deterministic simulator: many seeds, every safety property after every event.

``AETHER_RAFT_SEEDS`` (default 300) and ``AETHER_RAFT_EVENTS`` (default 3000) scale the
run; ``scripts/raft_sim.py`` (in this package) runs thousands and prints a summary.
A failure names its seed; ``Simulator(seed, cfg).run()`` replays it exactly.
"""

from __future__ import annotations

import os

import pytest
from aether_raft.core import PlantedBugs, RaftConfig
from aether_raft.sim import SafetyViolation, SimConfig, Simulator

SEEDS = int(os.environ.get("AETHER_RAFT_SEEDS", "300"))
EVENTS = int(os.environ.get("AETHER_RAFT_EVENTS", "3000"))


def run_many(make: object, seeds: range) -> list[str]:
    failures = []
    for seed in seeds:
        try:
            Simulator(seed, make()).run()  # type: ignore[operator]
        except SafetyViolation as exc:
            failures.append(str(exc))
    return failures


@pytest.mark.slow
def test_three_nodes_stay_safe() -> None:
    assert run_many(lambda: SimConfig(events=EVENTS), range(SEEDS)) == []


@pytest.mark.slow
def test_five_nodes_stay_safe() -> None:
    assert run_many(lambda: SimConfig(nodes=5, events=EVENTS), range(SEEDS // 8)) == []


def test_a_seed_replays_exactly() -> None:
    a, b = Simulator(11, SimConfig(events=800)), Simulator(11, SimConfig(events=800))
    a.run()
    b.run()
    assert a.history == b.history and a.stats == b.stats
    assert {n: x.core.status() for n, x in a.nodes.items()} == {
        n: x.core.status() for n, x in b.nodes.items()
    }


def test_the_simulation_does_real_work() -> None:
    sim = Simulator(3, SimConfig(events=EVENTS, nemesis=0.0))
    sim.run()
    assert len(sim.acked_writes) > 20
    assert sim.stats["crashes"] > 0 and sim.stats["elections"] >= 1
    assert any(op.op == "get" for op in sim.history)


def test_flapping_node_never_disrupts_with_pre_vote() -> None:
    assert run_many(lambda: SimConfig(flapping=True, events=1500), range(15)) == []


# -- planted bugs: each must be found, proving the checks can fail ---------------------


def first_failure(make: object, limit: int = 1000) -> str:
    """The first failing seed's message; it must replay exactly from its seed."""
    for seed in range(limit):
        try:
            Simulator(seed, make()).run()  # type: ignore[operator]
        except SafetyViolation as exc:
            print(f"found at seed {seed}: {exc}")
            with pytest.raises(SafetyViolation) as again:
                Simulator(seed, make()).run()  # type: ignore[operator]
            assert str(again.value) == str(exc)
            return str(exc)
    raise AssertionError("the planted bug went unnoticed")


def seed_of(found: str) -> int:
    return int(found.split(",")[0].removeprefix("seed "))


def test_finds_a_vote_that_was_not_persisted() -> None:
    found = first_failure(
        lambda: SimConfig(bugs=PlantedBugs(vote_not_persisted=True), risky_crash=0.5)
    )
    assert "election safety" in found


def test_finds_no_pre_vote_with_a_flapping_node() -> None:
    found = first_failure(
        lambda: SimConfig(flapping=True, events=1500, raft=RaftConfig(pre_vote=False))
    )
    assert "disruption" in found


def test_finds_acknowledge_before_fsync() -> None:
    found = first_failure(lambda: SimConfig(ack_before_fsync=True, reboot=0.03, risky_crash=0.5))
    assert "seed" in found


def test_finds_commit_by_counting_old_term_entries() -> None:
    """Figure 8 of the Raft paper, reached by the nemesis seeds, not by a script."""
    found = first_failure(lambda: SimConfig(bugs=PlantedBugs(commit_old_terms=True)))
    assert "leader completeness" in found or "committed index" in found
    # The same seeds with the switch off: the failure is the bug's, not the nemesis'.
    assert run_many(SimConfig, range(seed_of(found) + 1)) == []


def test_some_seeds_run_the_nemesis() -> None:
    armed = [Simulator(seed, SimConfig()).nemesis for seed in range(200)]
    assert 20 < sum(armed) < 80
    sim = Simulator(next(s for s, a in enumerate(armed) if a), SimConfig())
    assert sim.cfg.raft.max_entries_per_message <= 2
