#!/usr/bin/env python3
"""Run the Raft simulator over many seeds and print a summary.

Usage: .venv/bin/python plugins/aether-raft/scripts/raft_sim.py [seeds=10000] [nodes=3]
       [events=3000] [first-seed=0]
A failure prints its seed; ``Simulator(seed, SimConfig(nodes=..., events=...)).run()``
replays it exactly.
"""

from __future__ import annotations

import sys
import time
from collections import Counter

from aether_raft.sim import SafetyViolation, SimConfig, Simulator


def main() -> None:
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    nodes = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    events = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
    first = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    totals: Counter[str] = Counter()
    failures: list[str] = []
    start = time.perf_counter()
    for seed in range(first, first + seeds):
        sim = Simulator(seed, SimConfig(nodes=nodes, events=events))
        try:
            totals.update(sim.run())
        except SafetyViolation as exc:
            failures.append(str(exc))
            print(f"FAIL {exc}", flush=True)
        totals["acked_writes"] += len(sim.acked_writes)
        totals["history_ops"] += len(sim.history)
    elapsed = time.perf_counter() - start
    print(
        f"seeds={seeds} nodes={nodes} events={events} failures={len(failures)} "
        f"seconds={elapsed:.0f} " + " ".join(f"{k}={v}" for k, v in sorted(totals.items()))
    )
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
