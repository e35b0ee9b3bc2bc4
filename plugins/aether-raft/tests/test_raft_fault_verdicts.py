"""The fault runs' verdicts on their own: a watch stream with a gap, a duplicate or a
reordering is caught, and a run is valid only at the rate floor."""

from __future__ import annotations

from aether_raft.testing.workload import RunReport, stream_problems


def test_a_stream_must_carry_each_revision_once_in_order() -> None:
    assert stream_problems("n1", 10, 14, [11, 12, 13, 14]) == []
    assert stream_problems("n1", 10, 10, []) == []
    gap = stream_problems("n1", 10, 14, [11, 12, 14])
    assert gap and "1 missing (first [13])" in gap[0]
    dupe = stream_problems("n1", 10, 14, [11, 12, 12, 13, 14])
    assert dupe and "1 duplicates" in dupe[0] and "1 out of order" in dupe[0]
    swapped = stream_problems("n1", 10, 14, [11, 13, 12, 14])
    assert swapped and "0 missing" in swapped[0] and "1 out of order" in swapped[0]
    short = stream_problems("n1", 10, 14, [11, 12, 13])  # never reached the final revision
    assert short and "first [14]" in short[0]
    early = stream_problems("n1", 10, 12, [10, 11, 12])  # replayed what it had seen
    assert early and "1 outside the range (first [10])" in early[0]


def test_a_run_under_the_rate_floor_is_invalid_not_passed() -> None:
    good = RunReport(fault="x", ops=600, rate=60.0, linearizable=True, converged=True)
    assert good.valid and good.correct and good.ok
    slow = RunReport(fault="x", ops=400, rate=40.0, linearizable=True, converged=True)
    assert slow.correct and not slow.valid and not slow.ok
    assert "INVALID" in slow.summary() and "under 50" in slow.explain()
    lost = RunReport(fault="x", ops=600, rate=60.0, linearizable=True, converged=True,
                     lost=["k v1"])
    assert lost.valid and not lost.ok and "FAILED" in lost.summary()
    for broken in (RunReport(fault="x", ops=600, rate=60.0, linearizable=False,
                             converged=True),
                   RunReport(fault="x", ops=600, rate=60.0, linearizable=True,
                             converged=False),
                   RunReport(fault="x", ops=600, rate=60.0, linearizable=True,
                             converged=True, problems=["n2: 1 missing"])):
        assert not broken.ok
