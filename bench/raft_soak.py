"""Soak a raft cluster of real ``aether up`` processes with rotating faults.

    .venv/bin/python bench/raft_soak.py --minutes 10 --nodes 3 --seed 1

Starts N nodes on loopback with a fault proxy on every peer link (the harness of
``plugins/aether-raft/tests/test_raft_faults.py``, ``aether_raft.testing``) and runs one
fault after another — the order drawn from ``--seed`` — until the time is up. Every
run is checked as in the tests: rate >= 50 ops/s (else INVALID), linearizable history,
no acknowledged write lost, equal store digests, gap-free watch streams. Prints a line
per run and a table per fault; exits 1 if any run FAILED (an INVALID run is reported,
not failed). ``--keep`` keeps the nodes' directories (logs, data) for a post-mortem.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from aether_raft.testing.cluster import FaultCluster
from aether_raft.testing.faults import FAULTS
from aether_raft.testing.workload import RunConfig, RunReport, run_fault

DEFAULT_FAULTS = ["kill-leader", "kill-follower", "pause-leader", "partition-leader",
                  "drop-link", "delay-link", "add-remove-node"]


def _table(reports: list[RunReport]) -> str:
    lines = [f"{'fault':<17} {'runs':>4} {'ok':>3} {'invalid':>7} {'failed':>6} "
             f"{'ops/s mean':>10} {'min':>6} {'linearizable':>12} {'lost':>4} "
             f"{'unknown':>7}"]
    for name in sorted({r.fault for r in reports}):
        rs = [r for r in reports if r.fault == name]
        rates = [r.rate for r in rs]
        lines.append(
            f"{name:<17} {len(rs):>4} {sum(r.ok for r in rs):>3} "
            f"{sum(not r.valid for r in rs):>7} {sum(not r.correct for r in rs):>6} "
            f"{sum(rates) / len(rates):>10.1f} {min(rates):>6.1f} "
            f"{sum(r.linearizable is True for r in rs):>5}/{len(rs):<6} "
            f"{sum(len(r.lost) for r in rs):>4} {sum(r.writes_unknown for r in rs):>7}")
    return "\n".join(lines)


async def soak(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="aether-soak-"))
    rng = random.Random(args.seed)
    faults = args.faults.split(",") if args.faults else DEFAULT_FAULTS
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        print(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}",
              file=sys.stderr)
        return 2
    print(f"# {args.nodes} nodes, {args.minutes:g} min, seed {args.seed}, faults "
          f"{','.join(faults)}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; data in {root}", flush=True)
    cluster = FaultCluster(root, args.nodes)
    reports: list[RunReport] = []
    started = time.monotonic()
    await cluster.start()
    try:
        await cluster.agreed_leader(120)
        await cluster.login()
        deck: list[str] = []
        run = 0
        while time.monotonic() - started < args.minutes * 60:
            if not deck:  # every fault once per round, in a seeded order
                deck = list(faults)
                rng.shuffle(deck)
            name = deck.pop()
            run += 1
            config = RunConfig(prefix=f"soak-{run}", seed=rng.randrange(1 << 30),
                               seconds=args.run_seconds, fault_at=args.run_seconds * 0.25,
                               fault_for=args.run_seconds * 0.4, clients=args.clients,
                               rate=args.rate)
            report = await run_fault(cluster, FAULTS[name](), config)
            reports.append(report)
            print(f"{run:4d} {report.summary()}", flush=True)
            if not report.ok:
                print("     " + report.explain().replace("\n", "\n     "), flush=True)
                if not report.correct and args.stop_on_failure:
                    break
    finally:
        problems = await cluster.close()
        hung = cluster.hung_at_shutdown()
    print()
    if reports:
        print(_table(reports))
    elapsed = time.monotonic() - started
    failed = sum(not r.correct for r in reports)
    invalid = sum(not r.valid for r in reports)
    print(f"\n{len(reports)} runs in {elapsed / 60:.1f} min: {failed} failed, {invalid} "
          f"invalid (< 50 ops/s); all linearizable: "
          f"{'yes' if all(r.linearizable for r in reports) else 'NO'}; "
          f"requests hung at shutdown: {hung}")
    for p in problems:
        print(f"log problem: {p[:500]}")
    if args.keep or failed or problems:
        print(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed or problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--nodes", type=int, default=3, choices=(3, 5))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--faults", default="",
                        help=f"comma-separated, from: {', '.join(FAULTS)}")
    parser.add_argument("--run-seconds", type=float, default=15.0, help="load per run")
    parser.add_argument("--clients", type=int, default=24)
    parser.add_argument("--rate", type=float, default=200.0, help="pace aimed at (ops/s)")
    parser.add_argument("--keep", action="store_true", help="keep the nodes' directories")
    parser.add_argument("--stop-on-failure", action="store_true")
    sys.exit(asyncio.run(soak(parser.parse_args())))


if __name__ == "__main__":
    main()
