"""Staged config rollout in the kernel: stable, monotone fractions; promote; automatic
rollback on a nack or a failed health signal; bad input refused with nothing changed."""

from __future__ import annotations

import pytest

from aether_core import ConfigManager
from aether_core.errors import BadRequest, NotFound, ValidationFailed, VersionConflict
from aether_core.rollout import BUCKETS, PROMOTED, ROLLED_BACK, ROLLOUT, RUNNING, bucket

CLIENTS = [f"client-{i}" for i in range(2000)]


async def served(manager: ConfigManager, name: str) -> dict[str, int]:
    return {c: (await manager.get_for_client(name, c)).version for c in CLIENTS}


async def test_fraction_is_stable_and_widening_never_moves_a_client_out(
        manager: ConfigManager) -> None:
    await manager.put("app/db", {"pool": 5})
    state = await manager.rollouts.start("app/db", {"pool": 10}, 0.1)
    assert (state.state, state.fraction, state.candidate_version) == (RUNNING, 1000, 2)
    first = await served(manager, "app/db")
    # Stable: asking again gives each client the same answer.
    assert await served(manager, "app/db") == first
    inside = {c for c, v in first.items() if v == 2}
    assert inside == {c for c in CLIENTS if bucket("app/db", c) < 1000}
    assert 140 <= len(inside) <= 260  # ~10 % of 2000
    # Everyone else, and plain get(), still see the promoted version 1.
    assert (await manager.get("app/db")).value == {"pool": 5}
    candidate = await manager.get_for_client("app/db", next(iter(inside)))
    assert candidate.value == {"pool": 10} and candidate.meta["candidate"] is True

    previous = inside
    for fraction in (0.25, 0.5, 0.9):
        await manager.rollouts.widen("app/db", fraction)
        now = {c for c, v in (await served(manager, "app/db")).items() if v == 2}
        assert previous <= now and len(now) > len(previous)
        previous = now
    assert 0.85 * len(CLIENTS) <= len(previous) <= 0.95 * len(CLIENTS)


async def test_promote_makes_the_candidate_everyones(manager: ConfigManager) -> None:
    await manager.put("app/db", {"pool": 5})
    await manager.rollouts.start("app/db", {"pool": 10}, 0.2)
    state = await manager.rollouts.promote("app/db")
    assert (state.state, state.fraction) == (PROMOTED, BUCKETS)
    head = await manager.get("app/db")
    assert (head.version, head.value) == (2, {"pool": 10})
    assert set((await served(manager, "app/db")).values()) == {2}
    # The rollout is closed: a new one may start from version 2.
    await manager.rollouts.start("app/db", {"pool": 20}, 0.5)


async def test_a_nack_rolls_the_rollout_back(manager: ConfigManager) -> None:
    await manager.put("app/db", {"pool": 5})
    await manager.rollouts.start("app/db", {"pool": 10}, 0.5)
    inside = [c for c in CLIENTS if bucket("app/db", c) < 5000]
    await manager.rollouts.report("app/db", inside[0], 2, "ack")
    await manager.rollouts.report("app/db", inside[1], 2, "ack")
    # A report of another version does not concern the rollout.
    assert await manager.rollouts.report("app/db", inside[2], 1, "nack") is None
    state = await manager.rollouts.report("app/db", inside[3], 2, "nack", "pool too big")
    assert state is not None
    assert (state.state, state.acks, state.nacks) == (ROLLED_BACK, 2, 1)
    assert inside[3] in state.reason and "pool too big" in state.reason
    assert set((await served(manager, "app/db")).values()) == {1}
    assert (await manager.get("app/db")).version == 1
    with pytest.raises(NotFound, match=r"no rollout .* is running"):
        await manager.rollouts.promote("app/db")


async def test_a_failed_health_signal_rolls_back(manager: ConfigManager) -> None:
    await manager.put("app/db", {"pool": 5})
    await manager.rollouts.start("app/db", {"pool": 10}, 1.0)
    assert (await manager.rollouts.health("app/db", True)).state == RUNNING
    assert set((await served(manager, "app/db")).values()) == {2}
    state = await manager.rollouts.health("app/db", False, "error rate 12%")
    assert state.state == ROLLED_BACK and "error rate 12%" in state.reason
    assert set((await served(manager, "app/db")).values()) == {1}


async def rollout_history(manager: ConfigManager, name: str) -> int:
    return len(await manager.storage.history(ROLLOUT, name))


async def test_bad_input_is_a_clear_error_and_changes_nothing(manager: ConfigManager) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        await manager.rollouts.start("missing", {"a": 1}, 0.1)
    assert await rollout_history(manager, "missing") == 0
    await manager.put("app/db", {"pool": 5})
    with pytest.raises(NotFound, match="no rollout"):
        await manager.rollouts.promote("app/db")
    with pytest.raises(NotFound, match="no rollout"):
        await manager.rollouts.widen("app/db", 0.5)
    for fraction in (0, -0.1, 1.5, float("nan")):
        with pytest.raises(BadRequest, match="fraction"):
            await manager.rollouts.start("app/db", {"pool": 6}, fraction)
    assert await rollout_history(manager, "app/db") == 0

    await manager.rollouts.start("app/db", {"pool": 10}, 0.3)
    before = await manager.storage.revision()
    with pytest.raises(BadRequest, match=r"above the current 0\.3"):
        await manager.rollouts.widen("app/db", 0.2)
    with pytest.raises(BadRequest, match="above the current"):
        await manager.rollouts.widen("app/db", 0.3)
    with pytest.raises(VersionConflict, match="still running"):
        await manager.rollouts.start("app/db", {"pool": 11}, 0.1)
    with pytest.raises(BadRequest, match="ack or nack"):
        await manager.rollouts.report("app/db", "c", 2, "maybe")
    assert await manager.storage.revision() == before
    assert (await manager.rollouts.status("app/db")).fraction == 3000

    # The config moved under the rollout: promotion is refused, nothing is written.
    await manager.put("app/db", {"pool": 7})
    before = await manager.storage.revision()
    with pytest.raises(VersionConflict, match="moved to version 2"):
        await manager.rollouts.promote("app/db")
    assert await manager.storage.revision() == before
    assert (await manager.get("app/db")).value == {"pool": 7}
    # ... and the candidate is no longer served on top of a version it did not replace.
    assert set((await served(manager, "app/db")).values()) == {2}


async def test_a_candidate_that_breaks_the_schema_is_refused(manager: ConfigManager) -> None:
    await manager.put_schema("db", {"type": "object", "properties": {
        "pool": {"type": "integer", "maximum": 50}}}, bind=["app/"])
    await manager.put("app/db", {"pool": 5})
    with pytest.raises(ValidationFailed, match="app/db"):
        await manager.rollouts.start("app/db", {"pool": 500}, 0.5)
    assert await rollout_history(manager, "app/db") == 0
